#!/usr/bin/env bash
# Lab test for automatic HTTPS: bypass gets its certificates from an ACME CA
# by itself. Debian's pebble (the CA) and pebble-challtestsrv (its DNS:
# every name resolves to the stack's 10.99.0.1) run in bpx-cli; bypass's
# ACME thread reaches pebble through the kernel (10.99.0.3 in bpx-srv),
# and pebble validates against the stack: http-01 on port 80, tls-alpn-01
# on 443. Checked: a certificate by http-01, one by tls-alpn-01 with no
# plain port, curl validating the chain with pebble's root, a restart with
# pebble stopped serving the stored certificate at once, an early renewal
# replacing the certificate while a download on another connection goes
# on byte-exact, and the failure paths (CA unreachable, failed validation,
# a rate-limit answer): the site keeps being served, the reason is logged
# and counted, and the attempt is retried.
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/acme-site"
PKI="$ARTIFACTS/acme-pki"
STATE="$ARTIFACTS/acme-state"
rm -rf "$SITE" "$PKI" "$STATE" && cp -r "$ROOT/www" "$SITE" && mkdir -p "$PKI" "$STATE"
head -c 300M /dev/urandom >"$SITE/big.bin"
BIG_SHA=$(sha256sum "$SITE/big.bin" | cut -d' ' -f1)
DIR_URL=https://10.99.0.2:14000/dir
PEBBLE_PID= DNS_PID= PROXY_PID=

# pebble ships no certificate for its own HTTPS: a test CA and a leaf for
# 10.99.0.2. Its issuing root is made anew at each start (/roots/0).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=acme test ca" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign -keyout "$PKI/ca.key" -out "$PKI/ca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=pebble" \
  -keyout "$PKI/pebble.key" -out "$PKI/pebble.csr" >/dev/null 2>&1
openssl x509 -req -in "$PKI/pebble.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 30 -extfile <(printf 'subjectAltName=IP:10.99.0.2\nextendedKeyUsage=serverAuth\n') \
  -out "$PKI/pebble.pem" >/dev/null 2>&1
cat >"$PKI/pebble.json" <<JSON
{"pebble": {"listenAddress": "10.99.0.2:14000", "managementListenAddress": "10.99.0.2:15000",
  "certificate": "$PKI/pebble.pem", "privateKey": "$PKI/pebble.key",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
  "externalAccountBindingRequired": false, "domainBlocklist": ["blocked.test"]}}
JSON

start_dns() {
  "$LAB" exec cli pebble-challtestsrv -dns01 10.99.0.2:8053 -management 10.99.0.2:8055 \
    -defaultIPv4 10.99.0.1 -defaultIPv6 "" -http01 "" -https01 "" -tlsalpn01 "" \
    >"$ARTIFACTS/acme-dns.log" 2>&1 &
  DNS_PID=$!
  for _ in $(seq 1 100); do
    cli curl -s -o /dev/null http://10.99.0.2:8055/ 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
start_pebble() {
  "$LAB" exec cli env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -config "$PKI/pebble.json" -dnsserver 10.99.0.2:8053 >>"$ARTIFACTS/acme-pebble.log" 2>&1 &
  PEBBLE_PID=$!
  for _ in $(seq 1 100); do
    cli curl -s -o /dev/null --cacert "$PKI/ca.pem" "$DIR_URL" && break
    sleep 0.1
  done
  # The root that pebble issues under, to validate what bypass serves.
  cli curl -s --cacert "$PKI/ca.pem" https://10.99.0.2:15000/roots/0 >"$PKI/root.pem"
  grep -q "BEGIN CERTIFICATE" "$PKI/root.pem"
}
stop_pebble() {
  [ -n "$PEBBLE_PID" ] && kill "$PEBBLE_PID" 2>/dev/null && wait "$PEBBLE_PID" 2>/dev/null
  PEBBLE_PID=
  ! cli curl -s -o /dev/null --max-time 2 --cacert "$PKI/ca.pem" "$DIR_URL"
}
acme_cleanup() {
  stop_pebble
  for p in $DNS_PID $PROXY_PID; do kill "$p" 2>/dev/null; done
}
trap 'acme_cleanup; cleanup' EXIT

# wait_log LOG PATTERN SECS: until PATTERN shows in LOG.
wait_log() {
  for _ in $(seq 1 $(($3 * 10))); do
    grep -q "$2" "$1" && return 0
    sleep 0.1
  done
  return 1
}
# served NAME OPTION...: `openssl x509 OPTION...` on the certificate
# served for NAME.
served() {
  local name=$1
  shift
  cli timeout 10 openssl s_client -connect 10.99.0.1:443 -servername "$name" </dev/null 2>/dev/null |
    openssl x509 -noout "$@" 2>/dev/null
}
served_fp() { served "$1" -fingerprint -sha256 | cut -d= -f2; }
validates() { # NAME: curl checks the chain against pebble's root
  cli curl -sS --max-time 10 --cacert "$PKI/root.pem" --resolve "$1:443:10.99.0.1" "https://$1/" | grep -q '<h1>bypass</h1>'
}
metrics() { srv curl -s --max-time 5 http://127.0.0.1:9090/metrics; }

ACME=(--acme-directory "$DIR_URL" --acme-ca-root "$PKI/ca.pem" --acme-email ops@a.test
  --state-dir "$STATE" --acme-retry-base 2 --admin-listen 127.0.0.1:9090)

"$LAB" up >/dev/null
# Not through `check` (a subshell): the PIDs are needed to stop them.
if start_dns; then pass "pebble-challtestsrv (DNS) starts"; else fail "pebble-challtestsrv (DNS) starts" "$(cat "$ARTIFACTS/acme-dns.log")"; fi
if start_pebble; then pass "pebble starts, its root fetched"; else fail "pebble starts, its root fetched" "$(tail -5 "$ARTIFACTS/acme-pebble.log")"; fi

echo "== acme: http-01 on the plain port"
LOG="$ARTIFACTS/acme-http01.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain a.test "${ACME[@]}"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "the site is served on HTTP at once" bash -c "'$LAB' exec cli curl -s --max-time 5 http://10.99.0.1/ | grep -q '<h1>bypass</h1>'"
check "log: ordering with http-01" wait_log "$LOG" "ACME: a.test: ordering with http-01" 10
check "a certificate arrives" wait_log "$LOG" "ACME: a.test: new certificate valid until" 60
check "every core serves it" wait_log "$LOG" "new certificate is served by every core" 5
check "curl validates a.test's chain against pebble's root" validates a.test
check "issued by pebble's intermediate" grep -qi pebble <<<"$(served a.test -issuer)"
KEY="$STATE/acme/10.99.0.2_14000_dir/a.test/key.pem"
check "key file is 0600" test "$(stat -c %a "$KEY")" = 600
check "account file is 0600" test "$(stat -c %a "$STATE/acme/10.99.0.2_14000_dir/account.json")" = 600
m=$(metrics)
check "metrics: issued 1" test "$(metrics_sum 'bypass_acme_certificates_issued_total{name="a.test"}' <<<"$m")" = 1
check "metrics: expiry and next renewal" bash -c "grep -q '^bypass_acme_certificate_expiry_timestamp_seconds{name=\"a.test\"} [0-9]' <<<\"\$1\" && grep -q '^bypass_acme_next_attempt_timestamp_seconds{name=\"a.test\"} [0-9]' <<<\"\$1\"" _ "$m"
FP1=$(served_fp a.test)
kill -HUP "$SERVER_PID"
check "SIGHUP keeps serving the ACME certificate" bash -c "grep -q 'SIGHUP: settings and certificates reloaded' '$LOG' || sleep 1; grep -q 'SIGHUP: settings and certificates reloaded' '$LOG'"
check "  ... the same one" test "$(served_fp a.test)" = "$FP1"
stop_server
check "stops cleanly" test "$SERVER_RC" = 0

echo "== acme: a restart with the CA down serves the stored certificate at once"
if stop_pebble; then pass "pebble stopped"; else fail "pebble stopped"; fi
LOG="$ARTIFACTS/acme-restart.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain a.test "${ACME[@]}"; then pass "server starts without the CA"; else fail "server starts without the CA" "$(cat "$LOG")"; fi
check "the stored certificate is served at once" test "$(served_fp a.test)" = "$FP1"
check "log: stored certificate and its renewal time" grep -q "ACME: a.test: stored certificate valid until" "$LOG"
stop_server

echo "== acme: failure paths (the site stays up; reasons logged; retried)"
# The CA unreachable: a fresh name, nothing listening at the directory.
LOG="$ARTIFACTS/acme-down.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain c.test "${ACME[@]}"; then pass "server starts with the CA down"; else fail "server starts with the CA down" "$(cat "$LOG")"; fi
check "CA down: failure logged as unreachable" wait_log "$LOG" "ACME: c.test: http-01 failed (unreachable)" 20
check "CA down: retried" bash -c "sleep 5; test \$(grep -c 'ACME: c.test: http-01 failed (unreachable)' '$LOG') -ge 2"
check "CA down: HTTPS served meanwhile (self-signed)" bash -c "'$LAB' exec cli curl -sk --max-time 5 --resolve c.test:443:10.99.0.1 https://c.test/ | grep -q '<h1>bypass</h1>'"
m=$(metrics)
check "CA down: counted" test "$(metrics_sum 'bypass_acme_failures_total{name="c.test",reason="unreachable"}' <<<"$m")" -ge 2
check "CA down: last failure's reason in the metrics" grep -q '^bypass_acme_last_failure_timestamp_seconds{name="c.test",reason="unreachable"}' <<<"$m"
if start_pebble; then pass "the CA comes back"; else fail "the CA comes back"; fi
check "  ... and the next retry gets the certificate" wait_log "$LOG" "ACME: c.test: new certificate valid until" 60
stop_server

# A challenge that fails validation: d.test resolves to the kernel's
# 10.99.0.3, where nothing answers on 80 or 443.
cli curl -s -X POST -d '{"host":"d.test.","addresses":["10.99.0.3"]}' http://10.99.0.2:8055/add-a >/dev/null
LOG="$ARTIFACTS/acme-invalid.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain d.test "${ACME[@]}"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "failed validation logged with its reason" wait_log "$LOG" "ACME: d.test: http-01 failed (challenge_failed)" 60
check "  ... then tried with the other challenge (tls-alpn-01)" wait_log "$LOG" "ACME: d.test: tls-alpn-01 failed (challenge_failed)" 60
check "  ... the site served all along" bash -c "'$LAB' exec cli curl -s --max-time 5 http://10.99.0.1/ | grep -q '<h1>bypass</h1>'"
stop_server

# A rate-limit answer: a directory whose newOrder answers 429 with
# Retry-After (pebble has no rate limits; this small HTTPS front does what
# Let's Encrypt does, the rest goes to pebble).
cat >"$PKI/ratelimit.py" <<'PY'
import http.server, json, ssl, sys, urllib.request
pki, upstream = sys.argv[1], "https://10.99.0.2:14000/dir"
ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        d = json.load(urllib.request.urlopen(upstream, context=ctx))
        d["newOrder"] = "https://10.99.0.2:14001/rate-limited"
        body = json.dumps(d).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_HEAD(self): self.do_GET()
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}'
        self.send_response(429); self.send_header("Content-Type", "application/problem+json")
        self.send_header("Retry-After", "7"); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("10.99.0.2", 14001), H)
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(pki + "/pebble.pem", pki + "/pebble.key")
srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
"$LAB" exec cli python3 "$PKI/ratelimit.py" "$PKI" >"$ARTIFACTS/acme-ratelimit.log" 2>&1 &
PROXY_PID=$!
sleep 1
LOG="$ARTIFACTS/acme-ratelimit-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain e.test "${ACME[@]/$DIR_URL/https://10.99.0.2:14001/dir}"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "rate limit logged with its reason" wait_log "$LOG" "ACME: e.test: http-01 failed (rate_limited)" 30
check "  ... the CA's Retry-After (7 s) is honoured over the 2 s backoff" grep -q "rate_limited.*next attempt in 7s" "$LOG"
check "  ... the site served meanwhile" bash -c "'$LAB' exec cli curl -s --max-time 5 http://10.99.0.1/ | grep -q '<h1>bypass</h1>'"
m=$(metrics)
check "  ... counted" test "$(metrics_sum 'bypass_acme_failures_total{name="e.test",reason="rate_limited"}' <<<"$m")" -ge 1
stop_server
kill "$PROXY_PID" 2>/dev/null; PROXY_PID=

echo "== acme: tls-alpn-01 with no plain port"
LOG="$ARTIFACTS/acme-alpn.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 0 --tls-port 443 \
  --acme-domain b.test "${ACME[@]}"; then pass "server starts (HTTPS only)"; else fail "server starts (HTTPS only)" "$(cat "$LOG")"; fi
check "nothing on port 80" bash -c "! '$LAB' exec cli curl -s --max-time 3 http://10.99.0.1/ >/dev/null"
check "log: ordering with tls-alpn-01" wait_log "$LOG" "ACME: b.test: ordering with tls-alpn-01" 10
check "a certificate arrives" wait_log "$LOG" "ACME: b.test: new certificate valid until" 60
sleep 0.5
check "curl validates b.test's chain against pebble's root" validates b.test
check "a client offering only acme-tls/1 gets no site certificate" bash -c "! '$LAB' exec cli timeout 5 openssl s_client -connect 10.99.0.1:443 -servername b.test -alpn acme-tls/1 </dev/null 2>/dev/null | grep -q 'BEGIN CERTIFICATE'"
stop_server

echo "== acme: an early renewal replaces the certificate during a download"
LOG="$ARTIFACTS/acme-renew.log"
rm -rf "$STATE/acme/10.99.0.2_14000_dir/a.test"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --port 80 --tls-port 443 \
  --acme-domain a.test --acme-renew-after 4 "${ACME[@]}"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "first certificate" wait_log "$LOG" "ACME: a.test: new certificate valid until" 60
sleep 0.5
FP_A=$(served_fp a.test)
# A slow download on one connection (limited rate) across the renewal.
cli curl -s --max-time 120 --limit-rate 20M --cacert "$PKI/root.pem" --resolve a.test:443:10.99.0.1 \
  -o "$ARTIFACTS/acme-big" https://a.test/big.bin &
DL=$!
check "renewed while it runs" wait_log "$LOG" "ACME: a.test: renewing with http-01" 15
check "  ... a new certificate stored" bash -c "for _ in \$(seq 1 300); do test \$(grep -c 'ACME: a.test: new certificate valid until' '$LOG') -ge 2 && exit 0; sleep 0.1; done; exit 1"
sleep 0.5
FP_B=$(served_fp a.test)
check "new connections get the new certificate" bash -c "test -n '$FP_B' && test '$FP_A' != '$FP_B'"
check "  ... which validates" validates a.test
wait "$DL"
check "the download across the renewal is byte-exact" test "$(sha256sum "$ARTIFACTS/acme-big" | cut -d' ' -f1)" = "$BIG_SHA"
rm -f "$ARTIFACTS/acme-big" "$SITE/big.bin"
stop_server
check "stops cleanly" test "$SERVER_RC" = 0

acme_cleanup
finish acme
