#!/usr/bin/env bash
# Lab test for the web server's safe defaults: dot-files hidden (and
# served when asked), a client that never reads cut off by the send
# timeout whatever it asked for, and settings that contradict each other
# refused at start.
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/safety-site"
rm -rf "$SITE" && cp -r "$ROOT/www" "$SITE"
echo "SECRET=do-not-serve" >"$SITE/.env"
mkdir -p "$SITE/.git" "$SITE/.well-known" "$SITE/sub/.hidden"
echo "[core]" >"$SITE/.git/config"
echo "Contact: mailto:security@example.test" >"$SITE/.well-known/security.txt"
echo "inner" >"$SITE/sub/.hidden/x.txt"
URL=http://10.99.0.1
code() { cli curl -s -o /dev/null --max-time 10 -w '%{http_code}' --path-as-is "$@"; }

echo "== http safety: dot-files"
"$LAB" up --queues 1 >/dev/null
LOG="$ARTIFACTS/safety-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --send-timeout 3; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "/.env is 404" test "$(code $URL/.env)" = 404
check "/.git/config is 404" test "$(code $URL/.git/config)" = 404
check "/.git/ is 404 (no directory redirect)" test "$(code $URL/.git)" = 404
check "a hidden directory deeper down is 404" test "$(code $URL/sub/.hidden/x.txt)" = 404
check "percent-encoded dots do not get around it" test "$(code $URL/%2eenv)" = 404
check "/.well-known/ is served" test "$(code $URL/.well-known/security.txt)" = 200
check "the rest of the site is served" test "$(code $URL/style.css)" = 200

echo "== http safety: a client that never reads"
# 20,000 pipelined requests for a missing page (404s: no body in flight,
# so only a timeout on stalled output can end it), a tiny receive buffer,
# and nothing read: the server must reset it after --send-timeout.
stall=$(cli timeout 60 python3 - <<'EOF'
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect(("10.99.0.1", 80))
s.setblocking(False)
req = b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n" * 20000
sent, start = 0, time.time()
while sent < len(req) and time.time() - start < 8:
    try:
        sent += s.send(req[sent:])
    except BlockingIOError:
        time.sleep(0.01)
stalled = time.time()
while time.time() - stalled < 20:
    state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    if state == 7:  # TCP_CLOSE: the server reset it
        print(f"reset {time.time() - stalled:.1f}s after sending stopped ({sent} bytes sent)")
        sys.exit(0)
    time.sleep(0.2)
print(f"still open 20s after sending stopped ({sent} bytes sent)")
sys.exit(1)
EOF
)
check "the stalled connection is reset ($stall)" grep -q "^reset" <<<"$stall"
check "other clients are still served" test "$(code $URL/)" = 200
stop_server
check "server exits 0" test "$SERVER_RC" = 0
check "the timeout is counted" bash -c "grep -o 'http_timeouts=[0-9]*' '$LOG' | grep -qv '=0$'"

echo "== http safety: --serve-dotfiles"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --serve-dotfiles; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "/.env is served when asked for" test "$(code $URL/.env)" = 200
stop_server

echo "== http safety: contradicting settings are refused at start"
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --max-request-line 200000 --max-head 400000 2>&1)
check "a request-line limit the send buffer cannot answer" grep -q "must leave room in the 256 KiB send buffer" <<<"$out"
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 443 --tls-port 443 2>&1)
check "a port both plain and TLS" grep -q "both a plain --port and a --tls-port" <<<"$out"
check "no XDP left behind" no_xdp
finish http_safety
