#!/usr/bin/env bash
# Lab test for the HTTP/1.1 server: `bypass serve --root` in bpx-srv, real
# clients in bpx-cli. curl for GET/HEAD, keep-alive, redirects, conditional
# requests, ranges and encodings; raw sockets (http_peer.py) for pipelining,
# a request split byte by byte, malformed and smuggling requests (exact
# status codes) and traversal attempts; wrk for 256 connections with zero
# socket errors; the connection limit answered 503; SIGTERM.
source "$(dirname "$0")/lib.sh"

PEER="$ROOT/tests/lab/http_peer.py"
SITE="$ARTIFACTS/http-site"
rm -rf "$SITE" && cp -r "$ROOT/www" "$SITE"
rm -f "$ARTIFACTS/http-access.log"
# A pre-compressed sibling, a file with a space in its name, and a symlink
# that leaves the root (must never be served).
gzip -9 -k "$SITE/style.css"
echo "spaced out" >"$SITE/hello world.txt"
ln -sf /etc/passwd "$SITE/passwd"
# A 1 GiB file: above the cache limit, so streamed from disk.
head -c 1G /dev/urandom >"$SITE/big.bin"
BIG_SHA=$(sha256sum "$SITE/big.bin" | cut -d' ' -f1)
URL=http://10.99.0.1

hpeer() { cli timeout 60 python3 "$PEER" "$@"; }
# curl_code ARGS...: the status code curl got.
curl_code() { cli curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$@"; }

echo "== http: curl against bypass serve (2 queues)"
"$LAB" up --queues 2 >/dev/null
LOG="$ARTIFACTS/http-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --metrics-path /metrics --metrics-allow 10.99.0.2/32 --stats-interval 1 --reload-interval 1 --access-log "$ARTIFACTS/http-access.log"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "start-up line names the site" grep -q "file(s)" "$LOG"

body=$(cli curl -sS --max-time 10 -D "$ARTIFACTS/http-h1.txt" "$URL/" 2>&1)
check "GET / : the demo page" grep -q "<h1>bypass</h1>" <<<"$body"
check "  ... 200 with text/html and a Date" bash -c "grep -q '^HTTP/1.1 200 OK' '$ARTIFACTS/http-h1.txt' && grep -qi '^content-type: text/html; charset=utf-8' '$ARTIFACTS/http-h1.txt' && grep -qi '^date: ' '$ARTIFACTS/http-h1.txt'"
check "GET /style.css is text/css" bash -c "'$LAB' exec cli curl -s -o /dev/null -w '%{content_type}' $URL/style.css | grep -q '^text/css'"
cli curl -s --max-time 10 -o "$ARTIFACTS/http-png" "$URL/bypass.png"
check "GET /bypass.png byte-exact" cmp "$ARTIFACTS/http-png" "$SITE/bypass.png"
check "GET /hello%20world.txt (percent-encoded)" bash -c "'$LAB' exec cli curl -s $URL/hello%20world.txt | grep -q 'spaced out'"
head_out=$(cli curl -sS --max-time 10 -I "$URL/" 2>&1)
check "HEAD / : 200, the GET's Content-Length, no body" bash -c "grep -q '^HTTP/1.1 200' <<<'$head_out' && grep -qi '^content-length: $(stat -c %s "$SITE/index.html")' <<<'$head_out'"
check "GET /about : 301 to /about/" bash -c "'$LAB' exec cli curl -s -D - -o /dev/null $URL/about | grep -qi '^location: /about/'"
check "GET /about/ : its index.html" bash -c "'$LAB' exec cli curl -s $URL/about/ | grep -q 'About this demo'"
check "GET /missing : 404" test "$(curl_code "$URL/missing")" = 404
check "POST / : 405" test "$(curl_code -X POST -d x "$URL/")" = 405
check "  ... with Allow: GET, HEAD" bash -c "'$LAB' exec cli curl -s -D - -o /dev/null -X DELETE $URL/ | grep -qi '^allow: GET, HEAD'"
check "keep-alive: curl reuses one connection for two requests" bash -c "'$LAB' exec cli curl -sv -o /dev/null -o /dev/null $URL/ $URL/style.css 2>&1 | grep -q 'Re-using existing connection'"
check "HTTP/1.0 without keep-alive: 200, then closed" hpeer status 200 'GET / HTTP/1.0\r\n\r\n'
etag=$(grep -i '^etag:' "$ARTIFACTS/http-h1.txt" | cut -d' ' -f2 | tr -d '\r')
lm=$(grep -i '^last-modified:' "$ARTIFACTS/http-h1.txt" | cut -d' ' -f2- | tr -d '\r')
check "HTTP/1.0 with keep-alive: told so (Connection: keep-alive)" bash -c "'$LAB' exec cli curl -s -0 -H 'Connection: keep-alive' -D - -o /dev/null $URL/ | grep -qi '^connection: keep-alive'"
check "HEAD with a Range: 200, not 206" test "$(curl_code -I -r 0-9 "$URL/")" = 200
check "If-None-Match with the ETag: 304" test "$(curl_code -H "If-None-Match: $etag" "$URL/")" = 304
check "If-None-Match with another ETag: 200" test "$(curl_code -H 'If-None-Match: "nope"' "$URL/")" = 200
check "If-Modified-Since Last-Modified: 304" test "$(curl_code -H "If-Modified-Since: $lm" "$URL/")" = 304
check "Range 0-9: 206 with 10 bytes" bash -c "[ \"\$('$LAB' exec cli curl -s -r 0-9 $URL/ | wc -c)\" = 10 ] && '$LAB' exec cli curl -s -r 0-9 -D - -o /dev/null $URL/ | grep -qi '^content-range: bytes 0-9/'"
check "Range past the end: 416" test "$(curl_code -r 9999999- "$URL/")" = 416
check "Accept-Encoding gzip: the .gz sibling, with Vary" bash -c "'$LAB' exec cli curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' $URL/style.css | tr -d '\r' | grep -qi '^content-encoding: gzip' && '$LAB' exec cli curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' $URL/style.css | grep -qi '^vary: accept-encoding'"
check "  ... which curl --compressed decodes to the file" bash -c "'$LAB' exec cli curl -s --compressed $URL/style.css | cmp - '$SITE/style.css'"
check "a symlink leaving the root is not served (404)" test "$(curl_code "$URL/passwd")" = 404

echo "== http: the site reloads when its files change"
# wait_for SECS CMD...: polls CMD until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}
about_etag=$(cli curl -s -D - -o /dev/null "$URL/about/" | grep -i '^etag:' | cut -d' ' -f2 | tr -d '\r')
cp "$SITE/about/index.html" "$ARTIFACTS/http-about.orig"
sed -i 's/About this demo/About this reloaded demo/' "$SITE/about/index.html"
echo "fresh" >"$SITE/fresh.txt"
rm "$SITE/hello world.txt"
check "an edited page is served within seconds (--reload-interval 1)" wait_for 15 bash -c "'$LAB' exec cli curl -s $URL/about/ | grep -q 'About this reloaded demo'"
check "  ... a new file is found" bash -c "'$LAB' exec cli curl -s $URL/fresh.txt | grep -q fresh"
check "  ... a removed one is gone (404)" test "$(curl_code "$URL/hello%20world.txt")" = 404
check "  ... the page's old ETag no longer matches (200)" test "$(curl_code -H "If-None-Match: $about_etag" "$URL/about/")" = 200
check "  ... and the reload is logged" grep -q "reloaded: .* file(s)" "$LOG"
cp "$ARTIFACTS/http-about.orig" "$SITE/about/index.html"
check "  ... and the page put back is served again" wait_for 15 bash -c "'$LAB' exec cli curl -s $URL/about/ | grep -q 'About this demo'"

echo "== http: raw sockets (pipelining, split requests, exact codes)"
out=$(hpeer pipeline 50 2>&1); if [ $? = 0 ]; then pass "$out"; else fail "pipeline 50" "$out"; fi
out=$(hpeer bytewise 2>&1); if [ $? = 0 ]; then pass "$out"; else fail "bytewise" "$out"; fi
out=$(hpeer keepalive 100 2>&1); if [ $? = 0 ]; then pass "$out"; else fail "keepalive 100" "$out"; fi
out=$(hpeer halfclose 20 2>&1); if [ $? = 0 ]; then pass "$out"; else fail "halfclose 20" "$out"; fi
status_case() { # NAME CODE RAW
  local out
  if out=$(hpeer status "$2" "$3" 2>&1); then pass "$1: $out"; else fail "$1" "$out"; fi
}
status_case "traversal /../" 400 'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'
status_case "traversal %2e%2e" 400 'GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'
status_case "encoded slash %2f" 400 'GET /about%2findex.html HTTP/1.1\r\nHost: x\r\n\r\n'
status_case "encoded NUL" 400 'GET /index.html%00.css HTTP/1.1\r\nHost: x\r\n\r\n'
status_case "no Host on HTTP/1.1" 400 'GET / HTTP/1.1\r\n\r\n'
status_case "two Host fields" 400 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
status_case "Content-Length with Transfer-Encoding" 400 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
status_case "duplicate Content-Length" 400 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx'
status_case "malformed Content-Length" 400 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx'
status_case "bare LF" 400 'GET / HTTP/1.1\nHost: x\n\n'
status_case "space before the colon" 400 'GET / HTTP/1.1\r\nHost : x\r\n\r\n'
status_case "Transfer-Encoding chunked" 501 'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
status_case "unknown method" 501 'BREW / HTTP/1.1\r\nHost: x\r\n\r\n'
status_case "HTTP/2.0 request line" 505 'GET / HTTP/2.0\r\nHost: x\r\n\r\n'
status_case "body too large" 413 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n'
long=$(printf 'a%.0s' $(seq 1 9000))
status_case "9000-byte target" 414 "GET /$long HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
many=$(for i in $(seq 1 120); do printf 'X-%d: y\\r\\n' "$i"; done)
status_case "120 header fields" 431 "GET / HTTP/1.1\\r\\nHost: x\\r\\n${many}\\r\\n"
status_case "a GET with a small body is served" 200 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello'

echo "== http: a 1 GiB file, streamed"
big_sha=$(cli bash -c "curl -s --max-time 120 $URL/big.bin | sha256sum" | cut -d' ' -f1)
check "1 GiB fetched byte-exact (sha256)" test "$big_sha" = "$BIG_SHA"
check "  ... and a range deep inside it (bytes 1000000000-1000000099)" bash -c "[ \"\$('$LAB' exec cli curl -s -r 1000000000-1000000099 $URL/big.bin | sha256sum | cut -d' ' -f1)\" = \"\$(tail -c +1000000001 '$SITE/big.bin' | head -c 100 | sha256sum | cut -d' ' -f1)\" ]"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)
check "  ... with the server's peak RSS bounded (${hwm:-?} KiB < 256 MiB)" test "${hwm:-999999999}" -lt 262144
cached=$(grep -o '[0-9]* bytes cached' "$LOG" | cut -d' ' -f1 | head -n 1)
check "  ... and the file streamed, not cached (${cached:-?} bytes cached)" test "${cached:-2000000000}" -lt 1073741824

echo "== http: metrics and the stats log"
sleep 1.2 # cores publish their counters once a second
metrics=$(cli curl -s --max-time 5 "$URL/metrics")
check "GET /metrics from an allowed address: Prometheus text" grep -q '^# TYPE bypass_http_responses_total counter' <<<"$metrics"
check "  ... with 2xx responses counted per core" grep -Eq '^bypass_http_responses_total\{core="[01]",class="2xx"\} [1-9]' <<<"$metrics"
check "  ... and the stack's counters (frames, TCP connections, retransmits)" bash -c "grep -q '^bypass_rx_frames_total{core=\"0\"} [1-9]' <<<'$metrics' && grep -q '^bypass_tcp_connections{core=' <<<'$metrics' && grep -q '^bypass_tcp_retransmits_total{core=\"0\"} [0-9]' <<<'$metrics'"
cli ip addr add 10.99.0.4/24 dev bpx1 2>/dev/null
check "GET /metrics from another address: 404" test "$(curl_code --interface 10.99.0.4 "$URL/metrics")" = 404
cli ip addr del 10.99.0.4/24 dev bpx1 2>/dev/null
check "a stats line is logged every --stats-interval" grep -q "stats: .* req/s (2xx" "$LOG"

echo "== http: access log rotation (rename, then SIGUSR1)"
ACCESS="$ARTIFACTS/http-access.log"
rm -f "$ACCESS.1"
mv "$ACCESS" "$ACCESS.1"
kill -USR1 "$SERVER_PID"
check "after SIGUSR1 the server writes to a new file by the old name" wait_for 10 bash -c "'$LAB' exec cli curl -s -o /dev/null $URL/rotated; grep -q 'GET /rotated ' '$ACCESS'"
check "  ... says so in its log, and keeps running" bash -c "grep -q 'SIGUSR1: reopening the access log' '$LOG' && kill -0 $SERVER_PID"

echo "== http: load (wrk)"
wrk_out=$(cli timeout 60 wrk -t 2 -c 256 -d 5s "$URL/" 2>&1)
echo "$wrk_out" >"$ARTIFACTS/http-wrk.txt"
reqs=$(grep -o '^ *[0-9]* requests in' <<<"$wrk_out" | grep -o '[0-9]*' | head -1)
check "wrk -c 256 -d 5s: requests served (${reqs:-0})" test "${reqs:-0}" -gt 1000
check "  ... with zero socket errors" bash -c "! grep -q 'Socket errors' <<<'$wrk_out'"
check "  ... and no non-2xx responses" bash -c "! grep -q 'Non-2xx' <<<'$wrk_out'"
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp
check "exit report counts the requests" grep -q "bypass: http: .*http_requests=[1-9]" "$LOG"
check "access log: GET / logged in Common Log Format" grep -Eq '^10\.99\.0\.2 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} \+0000\] "GET / HTTP/1\.1" 200 [0-9]+$' "$ACCESS"
check "  ... with the 404, the 405 and a rejected request (\"-\" 400), before the rotation" bash -c "grep -q '\"GET /missing HTTP/1.1\" 404 ' '$ACCESS.1' && grep -q '\"POST / HTTP/1.1\" 405 ' '$ACCESS.1' && grep -q '\"-\" 400 ' '$ACCESS.1'"
check "  ... a line for every request the server counted, over both files" bash -c "[ \"\$(cat '$ACCESS.1' '$ACCESS' | wc -l)\" = \"\$(grep -o 'http_requests=[0-9]*' '$LOG' | cut -d= -f2)\" ]"

echo "== http: the connection limit"
LOG="$ARTIFACTS/http-limit.log"
for _ in $(seq 1 100); do cat "$ROOT/www/style.css"; done >"$SITE/stream.css"
# Started from a config file this time (the flags as TOML keys).
cat >"$ARTIFACTS/http-limit.toml" <<EOF
iface = "bpx0"
ip = "10.99.0.1/24"
root = "$SITE"
port = [80]
max-connections = 2
# Files above 4 KiB streamed, and no reload: a file cut short on disk must
# be answered 500, not with a truncated body.
max-cached-file = 4096
reload-interval = 0
# A tighter header limit than the default 100.
max-header-fields = 10
# Both queue threads on one CPU: allowed (every queue must be served), and
# said so.
cores = [0, 0]
EOF
start_server "$LOG" --config "$ARTIFACTS/http-limit.toml" || fail "server starts (--config with max-connections = 2)" "$(cat "$LOG")"
codes=$(for i in $(seq 1 10); do curl_code -H 'Connection: close' "$URL/"; echo; done | sort | uniq -c | tr -s ' ')
check "10 requests that the server closes first (then TIME-WAIT) do not use up --max-connections 2 (${codes})" bash -c "grep -q '^ 10 200$' <<<'$codes'"
cli curl -s --max-time 10 -o "$ARTIFACTS/http-stream.css" "$URL/stream.css"
check "a streamed file (above max-cached-file) byte-exact" cmp "$ARTIFACTS/http-stream.css" "$SITE/stream.css"
printf 'X' | dd of="$SITE/stream.css" bs=1 seek=10 conv=notrunc status=none
check "  ... 500 once it is overwritten in place (same length, new mtime)" test "$(curl_code "$URL/stream.css")" = 500
truncate -s 100 "$SITE/stream.css"
check "  ... and once it is cut short" test "$(curl_code "$URL/stream.css")" = 500
few=$(for i in $(seq 1 8); do printf 'X-%d: y\\r\\n' "$i"; done)
status_case "max-header-fields = 10 (from the file): 10 fields served" 200 "GET / HTTP/1.1\\r\\nHost: x\\r\\n${few}Connection: close\\r\\n\\r\\n"
status_case "  ... 11 fields: 431" 431 "GET / HTTP/1.1\\r\\nHost: x\\r\\n${few}X-9: y\\r\\nX-10: y\\r\\n\\r\\n"
check "two queues on one CPU: a warning with the ethtool fix" grep -q "queue threads share CPUs; for one CPU per queue: ethtool -L bpx0 combined 1" "$LOG"
limit_out=$(cli timeout 30 python3 - <<'PY' 2>&1
import socket
held = [socket.create_connection(("10.99.0.1", 80), timeout=10) for _ in range(2)]
for s in held:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(12) == b"HTTP/1.1 200"
third = socket.create_connection(("10.99.0.1", 80), timeout=10)
third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while True:
    b = third.recv(4096)
    if not b:
        break
    data += b
line = data.split(b"\r\n")[0].decode()
assert line == "HTTP/1.1 503 Service Unavailable", line
assert b"\r\nRetry-After: 1\r\n" in data, data
print(line)
PY
)
limit_rc=$?
check "a third connection over --max-connections 2 gets 503 with Retry-After and is closed ($limit_out)" test "$limit_rc" = 0
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0

rm -f "$SITE/big.bin"
finish http
