#!/usr/bin/env bash
# Lab test for memory per connection: 100,000 idle HTTP keep-alive
# connections to `bypass serve` (scripts/conntest: each fetched the page
# and stayed open). Every one must get its page, the server must stay under
# 1 GiB in all (VmRSS, every layer), idle connections must hold no TCP
# buffer memory, and a new client must still be served.
source "$(dirname "$0")/lib.sh"

echo "== conns: 100,000 idle keep-alive connections"
OUT="$ARTIFACTS/conntest"
LOG="$ARTIFACTS/conntest.log"
if BYPASS="$BYPASS" ARTIFACTS="$ARTIFACTS" "$ROOT/scripts/conntest" --connections 100000 --out "$OUT" >"$LOG" 2>&1; then
  pass "scripts/conntest passes (under 1 GiB, new client served, exit 0)"
else
  fail "scripts/conntest passes (under 1 GiB, new client served, exit 0)" "$(cat "$LOG")"
fi
REPORT="$OUT/report.txt"
check "every connection got its page" grep -q '^| 100000 of 100000 (0 failed) |' "$REPORT"
check "idle connections hold no TCP buffers" grep -q '| 0 bytes | 200 |$' "$REPORT"
check "a new client is served with all of them open" grep -q '| 200 |$' "$REPORT"
[ -f "$REPORT" ] && sed -n 3p "$REPORT"
finish conns
