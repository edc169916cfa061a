#!/usr/bin/env bash
# Lab test for HTTPS on the stack's cores: `bypass serve --tls-port 443` in
# bpx-srv, real TLS clients in bpx-cli. openssl s_client for TLS 1.3 and
# 1.2 (and 1.1 refused), SNI choosing between two certificates (one in
# certbot's live/ -> archive/ symlink layout), resumption, curl validating
# the chain with --cacert and with -k, 100 MiB byte-exact, wrk with zero
# errors, plaintext HTTP on the TLS port, the metrics; then the self-signed
# default (made, kept 0600, reused on restart) and one-line errors for bad
# certificate files.
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/https-site"
CERTS="$ARTIFACTS/https-certs"
STATE="$ARTIFACTS/https-state"
rm -rf "$SITE" "$CERTS" "$STATE" && cp -r "$ROOT/www" "$SITE" && mkdir -p "$CERTS"
head -c 100M /dev/urandom >"$SITE/big.bin"
BIG_SHA=$(sha256sum "$SITE/big.bin" | cut -d' ' -f1)

# Two certificates: a.test in certbot's layout (live/ symlinks into
# archive/), b.test as plain files.
mkcert() { # NAME DIR
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$1" -addext "subjectAltName=DNS:$1" \
    -keyout "$2/privkey.pem" -out "$2/cert.pem" >/dev/null 2>&1
}
mkdir -p "$CERTS/archive/a.test" "$CERTS/live/a.test" "$CERTS/b"
mkcert a.test "$CERTS/archive/a.test"
mv "$CERTS/archive/a.test/cert.pem" "$CERTS/archive/a.test/fullchain1.pem"
mv "$CERTS/archive/a.test/privkey.pem" "$CERTS/archive/a.test/privkey1.pem"
ln -s ../../archive/a.test/fullchain1.pem "$CERTS/live/a.test/fullchain.pem"
ln -s ../../archive/a.test/privkey1.pem "$CERTS/live/a.test/privkey.pem"
mkcert b.test "$CERTS/b"

ossl() { cli timeout 10 openssl s_client -connect 10.99.0.1:443 "$@" </dev/null 2>&1; }
# subject_of ARGS...: the CN of the certificate the server presents.
subject_of() { ossl "$@" | sed -n 's/^subject=.*CN *= *\([^,]*\).*/\1/p' | head -1; }

echo "== https: bypass serve --tls-port 443 with two certificates"
"$LAB" up --queues 2 >/dev/null
LOG="$ARTIFACTS/https-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --tls-port 443 \
  --cert "$CERTS/live/a.test/fullchain.pem" --key "$CERTS/live/a.test/privkey.pem" \
  --cert "$CERTS/b/cert.pem" --key "$CERTS/b/privkey.pem" \
  --metrics-path /metrics --metrics-allow 10.99.0.2/32; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "start-up names both certificates" bash -c "grep -q 'for a.test' '$LOG' && grep -q 'for b.test' '$LOG'"

out=$(ossl -tls1_3 -servername a.test)
check "TLS 1.3 handshake" grep -q "^New, TLSv1.3, Cipher is TLS_" <<<"$out"
out=$(ossl -tls1_2 -servername a.test)
check "TLS 1.2 handshake (ECDHE-ECDSA AES-GCM)" grep -q "Cipher  *: ECDHE-ECDSA-AES" <<<"$out"
out=$(ossl -tls1_1 -servername a.test)
check "TLS 1.1 refused with an alert" bash -c "! grep -q 'Protocol  *: TLSv1.1' <<<\"\$1\" || grep -qi 'alert' <<<\"\$1\"" _ "$out"
check "  ... and no session" bash -c "! grep -q '^New, TLSv1.1' <<<\"\$1\"" _ "$out"
check "ALPN http/1.1 negotiated" bash -c "'$LAB' exec cli timeout 10 openssl s_client -connect 10.99.0.1:443 -alpn http/1.1 </dev/null 2>&1 | grep -q 'ALPN protocol: http/1.1'"
check "SNI a.test gets a.test's certificate" test "$(subject_of -servername a.test)" = a.test
check "SNI b.test gets b.test's certificate" test "$(subject_of -servername b.test)" = b.test
check "no SNI gets the first (default)" test "$(subject_of -noservername)" = a.test
check "an unknown SNI gets the default too" test "$(subject_of -servername nobody.test)" = a.test

rm -f "$ARTIFACTS/https-sess"
ossl -tls1_2 -servername a.test -sess_out "$ARTIFACTS/https-sess" >/dev/null
check "TLS 1.2 session resumed" bash -c "'$LAB' exec cli timeout 10 openssl s_client -connect 10.99.0.1:443 -tls1_2 -servername a.test -sess_in '$ARTIFACTS/https-sess' </dev/null 2>&1 | grep -q '^Reused'"
rm -f "$ARTIFACTS/https-sess13"
cli timeout 10 bash -c "sleep 1 | openssl s_client -connect 10.99.0.1:443 -tls1_3 -servername a.test -sess_out '$ARTIFACTS/https-sess13' >/dev/null 2>&1"
check "TLS 1.3 ticket resumed" bash -c "'$LAB' exec cli timeout 10 openssl s_client -connect 10.99.0.1:443 -tls1_3 -servername a.test -sess_in '$ARTIFACTS/https-sess13' </dev/null 2>&1 | grep -q '^Reused'"

check "curl validates a.test's chain (--cacert)" bash -c "'$LAB' exec cli curl -sS --max-time 10 --cacert '$CERTS/archive/a.test/fullchain1.pem' --resolve a.test:443:10.99.0.1 https://a.test/ | grep -q '<h1>bypass</h1>'"
check "curl -k by address" bash -c "test \"\$('$LAB' exec cli curl -sk -o /dev/null -w '%{http_code}' https://10.99.0.1/style.css)\" = 200"
check "a wrong name fails verification" bash -c "! '$LAB' exec cli curl -sS --max-time 10 --cacert '$CERTS/b/cert.pem' --resolve a.test:443:10.99.0.1 https://a.test/ >/dev/null 2>&1"
cli curl -sk --max-time 120 -o "$ARTIFACTS/https-big" https://10.99.0.1/big.bin
check "100 MiB over HTTPS byte-exact" test "$(sha256sum "$ARTIFACTS/https-big" | cut -d' ' -f1)" = "$BIG_SHA"
rm -f "$ARTIFACTS/https-big"
check "a range deep inside it" bash -c "test \"\$('$LAB' exec cli curl -sk -r 52428800-52428899 https://10.99.0.1/big.bin | sha256sum | cut -d' ' -f1)\" = \"\$(tail -c +52428801 '$SITE/big.bin' | head -c 100 | sha256sum | cut -d' ' -f1)\""
wrk_out=$(cli timeout 60 wrk -t 2 -c 64 -d 3s https://10.99.0.1/ 2>&1)
check "wrk over HTTPS: requests served" grep -q "Requests/sec" <<<"$wrk_out"
check "wrk over HTTPS: zero socket errors, only 2xx" bash -c "! grep -qE 'Socket errors|Non-2xx' <<<\"\$1\"" _ "$wrk_out"
check "plain HTTP on the TLS port gets a plain 400" bash -c "'$LAB' exec cli curl -s --max-time 5 http://10.99.0.1:443/ | grep -q 'speaks HTTPS'"
check "garbage on the TLS port: closed, others unaffected" bash -c "head -c 300 /dev/urandom | '$LAB' exec cli timeout 5 bash -c 'cat >/dev/tcp/10.99.0.1/443' ; '$LAB' exec cli curl -sk -o /dev/null -w '%{http_code}' https://10.99.0.1/ | grep -q 200"
sleep 1.2 # the cores publish their counters once a second
metrics=$(cli curl -s --max-time 5 http://10.99.0.1/metrics)
check "metrics: handshakes, resumed ones, versions" bash -c "grep -q 'bypass_tls_handshakes_total{core=\"[01]\",kind=\"resumed\"} [1-9]' <<<\"\$1\" && grep -q 'version=\"1.3\"} [1-9]' <<<\"\$1\" && grep -q 'version=\"1.2\"} [1-9]' <<<\"\$1\"" _ "$metrics"
check "metrics: handshakes for a name no certificate covers" grep -q 'sni="unknown"} [1-9]' <<<"$metrics"
check "metrics: failures by reason (plain HTTP, version)" bash -c "grep -q 'reason=\"plain_http\"} [1-9]' <<<\"\$1\" && grep -q 'reason=\"version\"} [1-9]' <<<\"\$1\"" _ "$metrics"
stop_server
check "server exits 0" test "$SERVER_RC" = 0
check "exit report counts TLS" grep -q "tls_handshakes=[1-9]" "$LOG"

echo "== https: the self-signed default"
LOG2="$ARTIFACTS/https-self.log"
if start_server "$LOG2" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --tls-port 443 --server-name localhost --state-dir "$STATE"; then pass "server starts without a certificate"; else fail "server starts without a certificate" "$(cat "$LOG2")"; fi
check "it says plainly the certificate is self-signed" grep -q "SELF-SIGNED" "$LOG2"
check "key file mode 0600" test "$(stat -c %a "$STATE/self-signed/key.pem")" = 600
check "curl trusts it with --cacert" bash -c "'$LAB' exec cli curl -sS --max-time 10 --cacert '$STATE/self-signed/cert.pem' https://10.99.0.1/ | grep -q '<h1>bypass</h1>'"
check "  ... and by name" bash -c "'$LAB' exec cli curl -sS --max-time 10 --cacert '$STATE/self-signed/cert.pem' --resolve localhost:443:10.99.0.1 https://localhost/ | grep -q '<h1>bypass</h1>'"
fp1=$(grep -o 'SHA-256 [0-9A-F:]*' "$LOG2" | head -1)
stop_server
if start_server "$LOG2" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --tls-port 443 --server-name localhost --state-dir "$STATE"; then pass "restarts"; else fail "restarts" "$(cat "$LOG2")"; fi
check "the same certificate after a restart" test "$(grep -o 'SHA-256 [0-9A-F:]*' "$LOG2" | head -1)" = "$fp1"
stop_server

echo "== https: --redirect-https, --hsts and --acme-webroot"
WEBROOT="$ARTIFACTS/https-webroot"
rm -rf "$WEBROOT" && mkdir -p "$WEBROOT/.well-known/acme-challenge"
LOG3="$ARTIFACTS/https-redirect.log"
if start_server "$LOG3" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --tls-port 443 --server-name localhost --state-dir "$STATE" \
  --redirect-https --hsts 31536000 --acme-webroot "$WEBROOT"; then pass "server starts"; else fail "server starts" "$(cat "$LOG3")"; fi
h=$(cli curl -sS --max-time 5 -o /dev/null -D - "http://10.99.0.1/style.css?v=1")
check "plain HTTP: 308 to the same URL on HTTPS" bash -c "grep -q '^HTTP/1.1 308' <<<\"\$1\" && grep -qi '^location: https://10.99.0.1/style.css?v=1' <<<\"\$1\"" _ "$h"
h=$(cli curl -sS --max-time 5 -o /dev/null -D - -H "Host: www.example.test:80" http://10.99.0.1/a/b)
check "  ... to the Host's name, without its port" grep -qi '^location: https://www.example.test/a/b' <<<"$h"
# certbot's webroot plugin writes the token file, then the CA fetches it.
echo "token-content.key-thumbprint" >"$WEBROOT/.well-known/acme-challenge/Tok_en-123"
check "an ACME token is served from the webroot, not redirected" bash -c "test \"\$('$LAB' exec cli curl -sS --max-time 5 http://10.99.0.1/.well-known/acme-challenge/Tok_en-123)\" = token-content.key-thumbprint"
check "an unknown token is 404" bash -c "test \"\$('$LAB' exec cli curl -s -o /dev/null -w '%{http_code}' http://10.99.0.1/.well-known/acme-challenge/nope)\" = 404"
check "a token that is not base64url is 404" bash -c "test \"\$('$LAB' exec cli curl -s --path-as-is -o /dev/null -w '%{http_code}' 'http://10.99.0.1/.well-known/acme-challenge/..%2f..%2fetc')\" = 404"
h=$(cli curl -sSk --max-time 5 -o /dev/null -D - https://10.99.0.1/)
check "HTTPS responses carry Strict-Transport-Security" grep -qi '^strict-transport-security: max-age=31536000' <<<"$h"
stop_server
check "server exits 0" test "$SERVER_RC" = 0

echo "== https: SIGHUP reloads; certbot renewals are picked up"
# served_fp: the SHA-256 fingerprint of the certificate a.test gets now.
served_fp() {
  cli timeout 10 openssl s_client -connect 10.99.0.1:443 -servername a.test </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
file_fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }
CONF="$ARTIFACTS/https-bypass.toml"
printf '%s\n' 'iface = "bpx0"' 'ip = "10.99.0.1"' "root = \"$SITE\"" 'tls-port = 443' \
  "cert = \"$CERTS/live/a.test/fullchain.pem\"" "key = \"$CERTS/live/a.test/privkey.pem\"" \
  'reload-interval = 1' >"$CONF"
LOG4="$ARTIFACTS/https-reload.log"
if start_server "$LOG4" --config "$CONF"; then pass "server starts from a config file"; else fail "server starts from a config file" "$(cat "$LOG4")"; fi
v1=$(file_fp "$CERTS/archive/a.test/fullchain1.pem")
check "serves a.test's first certificate" test "$(served_fp)" = "$v1"
# A long download on another connection, throttled so it spans the reloads.
cli curl -sk --limit-rate 20M --max-time 120 -o "$ARTIFACTS/https-during" https://10.99.0.1/big.bin &
dl=$!
sleep 1
# certbot renew: new files in archive/, the live/ symlinks moved to them.
mkcert a.test "$CERTS/archive/a.test"
mv "$CERTS/archive/a.test/cert.pem" "$CERTS/archive/a.test/fullchain2.pem"
mv "$CERTS/archive/a.test/privkey.pem" "$CERTS/archive/a.test/privkey2.pem"
ln -sfn ../../archive/a.test/fullchain2.pem "$CERTS/live/a.test/fullchain.pem"
ln -sfn ../../archive/a.test/privkey2.pem "$CERTS/live/a.test/privkey.pem"
v2=$(file_fp "$CERTS/archive/a.test/fullchain2.pem")
for _ in $(seq 1 40); do [ "$(served_fp)" = "$v2" ] && break; sleep 0.25; done
check "a renewal on disk is served without a signal" test "$(served_fp)" = "$v2"
# SIGHUP after the config changed the certificate.
sed -i "s|^cert = .*|cert = \"$CERTS/b/cert.pem\"|; s|^key = .*|key = \"$CERTS/b/privkey.pem\"|" "$CONF"
kill -HUP "$SERVER_PID"
sleep 1
check "SIGHUP does not stop the server" kill -0 "$SERVER_PID"
check "SIGHUP applied the new certificate" test "$(subject_of -servername a.test)" = b.test
check "  ... and logged it" grep -q "SIGHUP: settings and certificates reloaded" "$LOG4"
# A broken config: the reload fails, nothing changes.
echo 'max-head = "lots"' >>"$CONF"
kill -HUP "$SERVER_PID"
sleep 1
check "a bad config on SIGHUP is refused and logged" grep -q "SIGHUP: reload failed, everything stays as it was" "$LOG4"
check "  ... and the server still serves the same certificate" test "$(subject_of -servername a.test)" = b.test
sed -i '/^max-head/d; s/^reload-interval = 1/reload-interval = 2/' "$CONF"
kill -HUP "$SERVER_PID"
sleep 1
check "a setting that needs a restart is named" grep -q "reload-interval changed: that takes a restart" "$LOG4"
wait "$dl"
check "the download across all of it is byte-exact" test "$(sha256sum "$ARTIFACTS/https-during" | cut -d' ' -f1)" = "$BIG_SHA"
rm -f "$ARTIFACTS/https-during"
stop_server
check "server exits 0" test "$SERVER_RC" = 0

echo "== https: bad certificate files are one-line errors"
bad() { # NAME EXPECTED ARGS...
  local name=$1 want=$2 out
  shift 2
  out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --root "$SITE" --tls-port 443 "$@" 2>&1)
  check "$name" bash -c "grep -q \"\$1\" <<<\"\$2\" && test \$(grep -c . <<<\"\$2\") -le 3" _ "$want" "$out"
}
echo "not a certificate" >"$CERTS/junk.pem"
bad "a missing certificate file" "nope.pem" --cert "$CERTS/nope.pem" --key "$CERTS/b/privkey.pem"
bad "a file with no PEM certificate" "junk.pem: no PEM" --cert "$CERTS/junk.pem" --key "$CERTS/b/privkey.pem"
bad "a key of another certificate" "does not belong" --cert "$CERTS/b/cert.pem" --key "$CERTS/archive/a.test/privkey1.pem"
bad "a --cert without its --key" "each certificate needs its key" --cert "$CERTS/b/cert.pem"
check "no XDP left behind" no_xdp
finish https
