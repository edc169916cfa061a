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

echo "== http parity: media types"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "an extension the built-in table lacks comes from /etc/mime.types (.epub)" test "$(ctype "$URL/book.epub")" = "application/epub+zip"
check "the built-in table still wins (.html with its charset)" test "$(ctype "$URL/")" = "text/html; charset=utf-8"
stop_server
check "server exits 0" test "$SERVER_RC" = 0
finish http_parity
