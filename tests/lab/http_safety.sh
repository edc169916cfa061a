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

echo "== http: preconditions, ranges, Expect and 304 (RFC 9110) with curl"
ALOG="$ARTIFACTS/safety-access.log"
rm -f "$ALOG"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --access-log "$ALOG" \
  --header-timeout 2 --max-connections 2; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
etag=$(cli curl -sI --max-time 5 $URL/style.css | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
check "If-Match with another tag: 412" test "$(code -H 'If-Match: "nope"' $URL/style.css)" = 412
check "If-Match with ours: 200" test "$(code -H "If-Match: $etag" $URL/style.css)" = 200
check "If-Unmodified-Since 1970: 412" test "$(code -H 'If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT' $URL/style.css)" = 412
h=$(cli curl -s --max-time 5 -o /dev/null -D - -H "If-None-Match: $etag" $URL/style.css | tr -d '\r')
check "304 with the ETag" bash -c "grep -q '^HTTP/1.1 304' <<<\"\$1\" && grep -qi '^etag: ' <<<\"\$1\"" _ "$h"
check "  ... and without the representation's other fields" bash -c "! grep -qiE '^(content-length|content-type|last-modified|accept-ranges):' <<<\"\$1\"" _ "$h"
check "Range unit in any case: 206" test "$(code -H 'Range: Bytes=0-9' $URL/style.css)" = 206
h=$(cli curl -s --max-time 5 -D - -r 0-9,20-29 -o "$ARTIFACTS/safety-multi" $URL/style.css | tr -d '\r')
check "two ranges: 206 multipart/byteranges" grep -qi '^content-type: multipart/byteranges; boundary=' <<<"$h"
check "  ... with both parts, byte-exact" bash -c "grep -c 'Content-Range: bytes' '$ARTIFACTS/safety-multi' | grep -qx 2 && grep -aq \"\$(head -c 10 '$SITE/style.css' | head -1)\" '$ARTIFACTS/safety-multi'"
check "17 ranges: the whole file (max ranges)" test "$(code -r 0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30,32-32 $URL/style.css)" = 200
head -c 1000 /dev/zero >"$ARTIFACTS/safety-body"
v=$(cli curl -sv --max-time 5 -X GET -H 'Expect: 100-continue' --data-binary @"$ARTIFACTS/safety-body" -o /dev/null $URL/style.css 2>&1 | tr -d '\r')
check "Expect: 100-continue is answered 100, then 200" bash -c "grep -q '^< HTTP/1.1 100 Continue' <<<\"\$1\" && grep -q '^< HTTP/1.1 200' <<<\"\$1\"" _ "$v"
check "an unknown expectation: 417" test "$(code -H 'Expect: teapot' $URL/style.css)" = 417
# A head that never ends: 408 after --header-timeout, in the access log.
cli timeout 10 python3 -c '
import socket, time
s = socket.create_connection(("10.99.0.1", 80))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
time.sleep(4)
print(s.recv(4096).decode(errors="replace").split("\r\n")[0])' >"$ARTIFACTS/safety-408"
check "an unfinished head gets 408" grep -q "^HTTP/1.1 408" "$ARTIFACTS/safety-408"
# Over --max-connections 2: the third is answered 503.
cli timeout 10 python3 -c '
import socket, time
held = [socket.create_connection(("10.99.0.1", 80)) for _ in range(2)]
time.sleep(0.5)
s = socket.create_connection(("10.99.0.1", 80))
print(s.recv(4096).decode(errors="replace").split("\r\n")[0])' >"$ARTIFACTS/safety-503"
check "over the connection limit: 503" grep -q "^HTTP/1.1 503" "$ARTIFACTS/safety-503"
sleep 1.5 # the cores write their log lines once a second
check "408 and 503 are in the access log" bash -c "grep -q '\" 408 ' '$ALOG' && grep -q '\" 503 ' '$ALOG'"
stop_server
check "server exits 0" test "$SERVER_RC" = 0

echo "== http: the admin endpoint on a kernel socket"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --admin-listen 127.0.0.1:9090; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
cli curl -s -o /dev/null --max-time 5 $URL/ # one request to count
sleep 1.2
check "/healthz from the host: 200 ok" test "$(srv curl -s --max-time 5 http://127.0.0.1:9090/healthz)" = ok
check "/metrics from the host, with the cores' counters" bash -c "'$LAB' exec srv curl -s --max-time 5 http://127.0.0.1:9090/metrics | grep -q '^bypass_http_requests_total{core=\"0\"} [1-9]'"
check "anything else: 404" test "$(srv curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:9090/x)" = 404
check "not on the stack's address" test "$(code $URL/healthz)" = 404
stop_server
check "server exits 0" test "$SERVER_RC" = 0
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --admin-listen 192.0.2.1:9090 2>&1)
check "an admin address that cannot be bound is a start-up error" grep -q "admin-listen 192.0.2.1:9090: cannot listen" <<<"$out"

echo "== http safety: --user drops every privilege after set-up"
id bypass-lab >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin bypass-lab
UDIR=$(mktemp -d /tmp/bypass-user.XXXXXX)
chmod 755 "$UDIR"
cp -r "$SITE" "$UDIR/site" && chmod -R a+rX "$UDIR/site"
mkdir -p "$UDIR/logs" "$UDIR/state" && chown bypass-lab: "$UDIR/logs"
ULOG="$ARTIFACTS/safety-user.log"
if start_server "$ULOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$UDIR/site" --tls-port 443 \
  --state-dir "$UDIR/state" --access-log "$UDIR/logs/access.log" --user bypass-lab; then pass "server starts"; else fail "server starts" "$(cat "$ULOG")"; fi
check "it says it dropped to the user" grep -q "running as user bypass-lab .* with no capabilities" "$ULOG"
check "the process runs as that user" test "$(ps -o user= -p "$SERVER_PID" | tr -d ' ')" = bypass-lab
check "no thread has a capability left" bash -c "for s in /proc/$SERVER_PID/task/*/status; do grep -q '^CapEff:[[:space:]]*0*$' \$s || exit 1; done"
check "HTTP is served" test "$(code $URL/)" = 200
check "HTTPS is served" test "$(cli curl -sk -o /dev/null -w '%{http_code}' --max-time 10 https://10.99.0.1/)" = 200
kill -HUP "$SERVER_PID"
sleep 1
check "SIGHUP reloads as the user (the self-signed key is the user's)" grep -q "SIGHUP: settings and certificates reloaded" "$ULOG"
mv "$UDIR/logs/access.log" "$UDIR/logs/access.log.1"
kill -USR1 "$SERVER_PID"
cli curl -s -o /dev/null --max-time 5 "$URL/?after-rotation"
sleep 1.5
check "the access log is reopened as the user" grep -q "after-rotation" "$UDIR/logs/access.log"
stop_server
check "server exits 0" test "$SERVER_RC" = 0
check "XDP is detached at exit without any capability" no_xdp
rm -rf "$UDIR"
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --user no-such-user-here 2>&1)
check "an unknown --user is a start-up error" grep -q "no-such-user-here: no such user" <<<"$out"

echo "== http safety: contradicting settings are refused at start"
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --max-request-line 200000 --max-head 400000 2>&1)
check "a request-line limit the send buffer cannot answer" grep -q "must leave room in the 256 KiB send buffer" <<<"$out"
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 443 --tls-port 443 2>&1)
check "a port both plain and TLS" grep -q "both a plain --port and a --tls-port" <<<"$out"
check "no XDP left behind" no_xdp
finish http_safety
