#!/usr/bin/env bash
# Lab test for the application APIs on a real interface: the single-request
# program (the RFC 793 user interface) answers one curl from bpx-cli with
# its page, closes, detaches XDP and exits 0; a second request finds
# nothing listening, and a HEAD and a bad method get the right answers.
source "$(dirname "$0")/lib.sh"

SINGLE="${SINGLE:-$ROOT/target/release/examples/single_request}"
[ -x "$SINGLE" ] || { echo "api lab test: $SINGLE missing: cargo build --release -p bypass-stack --examples" >&2; exit 1; }

# wait_exit: the server exits by itself within 20 s; its exit code goes
# into SERVER_RC ("running" if it did not).
wait_exit() { await_server 20 running; }

echo "== api: the single-request program (RFC 793 user interface, 2 queues)"
"$LAB" up --queues 2 >/dev/null
LOG="$ARTIFACTS/api-single-request.log"
if start_srv "$LOG" "$SINGLE" --iface bpx0 --ip 10.99.0.1; then pass "single_request starts"; else fail "single_request starts" "$(cat "$LOG")"; fi
check "XDP attached while it serves" xdp_attached
body=$(cli curl -sS --max-time 10 -D "$ARTIFACTS/api-headers.txt" http://10.99.0.1/ 2>&1)
check "curl gets the page" grep -q "<h1>Hello from bypass</h1>" <<<"$body"
check "  ... whole (the closing tag arrived)" grep -q "</html>" <<<"$body"
check "  ... with status 200 and HTTP/1.1" grep -q "^HTTP/1.1 200 OK" "$ARTIFACTS/api-headers.txt"
check "  ... and a Content-Length that matches the body" bash -c "grep -qi '^content-length: $(($(printf '%s\n' "$body" | wc -c)))' '$ARTIFACTS/api-headers.txt'"
check "  ... and a Date header" grep -qi "^date: " "$ARTIFACTS/api-headers.txt"
wait_exit
check "the program exits 0 (rc=$SERVER_RC)" test "$SERVER_RC" = 0
check "XDP detached" no_xdp
check "its log says it served one request" grep -q "one request served" "$LOG"
check "  ... and the request line" grep -q "GET / HTTP/1.1" "$LOG"

echo "== api: HEAD and a method it does not serve"
LOG="$ARTIFACTS/api-single-request-head.log"
start_srv "$LOG" "$SINGLE" --iface bpx0 --ip 10.99.0.1 || fail "single_request starts again" "$(cat "$LOG")"
out=$(cli curl -sS --max-time 10 -I http://10.99.0.1/ 2>&1)
check "HEAD: 200 with no body" bash -c "grep -q '^HTTP/1.1 200 OK' <<<'$out' && ! grep -q '<html' <<<'$out'"
wait_exit
check "exits 0 after HEAD (rc=$SERVER_RC)" test "$SERVER_RC" = 0
LOG="$ARTIFACTS/api-single-request-post.log"
start_srv "$LOG" "$SINGLE" --iface bpx0 --ip 10.99.0.1 || fail "single_request starts again" "$(cat "$LOG")"
out=$(cli curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X DELETE http://10.99.0.1/ 2>&1)
check "DELETE: 405 (got $out)" test "$out" = 405
wait_exit
check "exits 0 after the 405 (rc=$SERVER_RC)" test "$SERVER_RC" = 0
check "nothing listens once it is gone (kernel RST or timeout, no page)" bash -c "! '$LAB' exec cli curl -s --max-time 2 http://10.99.0.1/ | grep -q Hello"

finish api
