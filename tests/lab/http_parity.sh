#!/usr/bin/env bash
# Lab test for what nginx and Caddy users reach for first: access log
# formats (combined, json) and media types from /etc/mime.types, with
# curl in bpx-cli against `bypass serve` in bpx-srv.
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/parity-site"
rm -rf "$SITE" && cp -r "$ROOT/www" "$SITE"
echo "not really a book" >"$SITE/book.epub"
URL=http://10.99.0.1
ctype() { cli curl -s -o /dev/null --max-time 10 -w '%{content_type}' "$@"; }

"$LAB" up --queues 1 >/dev/null
LOG="$ARTIFACTS/parity-serve.log"

for format in combined json; do
  echo "== http parity: --access-log-format $format"
  ALOG="$ARTIFACTS/parity-access-$format.log"
  rm -f "$ALOG"
  if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --access-log "$ALOG" --access-log-format $format; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
  cli curl -s -o /dev/null --max-time 5 -A 'parity-agent/1.0 "quoted"' -e 'https://referrer.example/page' "$URL/style.css"
  sleep 1.5 # the cores write their log lines once a second
  stop_server
  if [ $format = combined ]; then
    check "combined: Referer and User-Agent, quotes escaped" grep -q '"GET /style.css HTTP/1.1" 200 [0-9]* "https://referrer.example/page" "parity-agent/1.0 \\x22quoted\\x22"$' "$ALOG"
  else
    check "json: one object per line that parses, with every field" python3 -c '
import json, sys
line = open(sys.argv[1]).read().splitlines()[0]
o = json.loads(line)
assert o["method"] == "GET" and o["target"] == "/style.css" and o["version"] == "HTTP/1.1", o
assert o["status"] == 200 and o["bytes"] > 0 and o["remote"] == "10.99.0.2", o
assert o["referer"] == "https://referrer.example/page", o
assert o["user_agent"] == "parity-agent/1.0 \"quoted\"", o
assert o["time"].endswith("Z") and "T" in o["time"], o
' "$ALOG"
  fi
done

echo "== http parity: virtual hosts, error pages, fallback, headers, Cache-Control, redirects"
SITEB="$ARTIFACTS/parity-site-b"
rm -rf "$SITEB" && mkdir -p "$SITEB/app"
echo "<h1>site B</h1>" >"$SITEB/index.html"
echo "<h1>our own 404</h1>" >"$SITE/404.html"
CONF="$ARTIFACTS/parity.toml"
cat >"$CONF" <<EOF
iface = "bpx0"
ip = "10.99.0.1"
queues = 1
root = "$SITE"
error-page = ["404=/404.html"]
header = ["X-Content-Type-Options: nosniff"]

[[cache-control]]
pattern = "*.css"
value = "public, max-age=31536000, immutable"

[[cache-control]]
pattern = "/"
value = "no-cache"

[[redirect]]
from = "/old"
to = "/new-place"
status = 308

[[site]]
names = ["b.test", "*.b.test"]
root = "$SITEB"
fallback = "/index.html"
header = ["X-Site: b"]
EOF
if start_server "$LOG" --config "$CONF"; then pass "server starts from the config"; else fail "server starts from the config" "$(cat "$LOG")"; fi
body() { cli curl -s --max-time 5 "$@"; }
hdrs() { cli curl -s --max-time 5 -o /dev/null -D - "$@" | tr -d '\r'; }
check "Host b.test gets site B" grep -q "site B" <<<"$(body -H 'Host: b.test' $URL/)"
check "  ... in any case, with a port, and its subdomains" bash -c "grep -q 'site B' <<<\"\$1\" && grep -q 'site B' <<<\"\$2\"" _ "$(body -H 'Host: B.Test:8080' $URL/)" "$(body -H 'Host: www.b.test' $URL/)"
check "another Host gets the default site" grep -q "<h1>bypass</h1>" <<<"$(body -H 'Host: elsewhere.test' $URL/)"
check "a missing page: 404 with the site's own page" bash -c "test \"\$('$LAB' exec cli curl -s -o /dev/null -w '%{http_code}' $URL/nope)\" = 404 && '$LAB' exec cli curl -s $URL/nope | grep -q 'our own 404'"
check "site B's unknown paths get its index (SPA fallback), 200" bash -c "test \"\$('$LAB' exec cli curl -s -o /dev/null -w '%{http_code}' -H 'Host: b.test' $URL/app/deep/link)\" = 200 && '$LAB' exec cli curl -s -H 'Host: b.test' $URL/app/deep/link | grep -q 'site B'"
h=$(hdrs $URL/style.css)
check "extra header on the default site" grep -qi '^x-content-type-options: nosniff' <<<"$h"
check "Cache-Control by pattern (*.css immutable)" grep -qi '^cache-control: public, max-age=31536000, immutable' <<<"$h"
check "Cache-Control by pattern (/ no-cache)" grep -qi '^cache-control: no-cache' <<<"$(hdrs $URL/)"
h=$(hdrs -H 'Host: b.test' $URL/)
check "site B has its own headers, not the default site's" bash -c "grep -qi '^x-site: b' <<<\"\$1\" && ! grep -qi '^x-content-type-options' <<<\"\$1\"" _ "$h"
h=$(hdrs $URL/old)
check "a configured redirect: 308 to its target" bash -c "grep -q '^HTTP/1.1 308' <<<\"\$1\" && grep -qi '^location: /new-place' <<<\"\$1\"" _ "$h"
echo "<h1>site B, edited</h1>" >"$SITEB/index.html"
for _ in $(seq 1 40); do body -H 'Host: b.test' $URL/ | grep -q edited && break; sleep 0.25; done
check "each site reloads on its own" grep -q "edited" <<<"$(body -H 'Host: b.test' $URL/)"
stop_server
check "server exits 0" test "$SERVER_RC" = 0

echo "== http parity: media types"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "an extension the built-in table lacks comes from /etc/mime.types (.epub)" test "$(ctype "$URL/book.epub")" = "application/epub+zip"
check "the built-in table still wins (.html with its charset)" test "$(ctype "$URL/")" = "text/html; charset=utf-8"
stop_server
check "server exits 0" test "$SERVER_RC" = 0
finish http_parity
