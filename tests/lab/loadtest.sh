#!/usr/bin/env bash
# Lab test for scripts/loadtest: a short run (one round of 2 s each) of wrk
# against nginx on the kernel stack and against bypass. It checks that the
# machinery works, not how fast anything is: both servers answered, with no
# socket errors and no error statuses, the latency dumps and .hgrm files are
# complete and agree with the request counts, the report has its table,
# and both servers exited 0 on SIGTERM. Never any assertion on timing.
source "$(dirname "$0")/lib.sh"

OUT="$ARTIFACTS/loadtest-smoke"
rm -rf "$OUT"

echo "== loadtest: scripts/loadtest --duration 2 --rounds 1 (nginx, then bypass)"
# The binary under test, not a fresh build (lib.sh has checked it exists).
out=$(BYPASS="$BYPASS" "$ROOT/scripts/loadtest" --duration 2 --rounds 1 --warmup 1 --out "$OUT" 2>&1)
rc=$?
echo "$out" >"$ARTIFACTS/loadtest-smoke.txt"
if [ $rc = 0 ]; then pass "scripts/loadtest exits 0"; else fail "scripts/loadtest exits 0 (got $rc)" "$out"; fi

# dump_field SERVER KEY: a value from that server's wrk dump.
dump_field() { awk -v k="$2" '$1 == k {print $2}' "$OUT/$1-r1.dump" 2>/dev/null; }

for server in nginx bypass; do
  reqs=$(dump_field $server requests)
  check "$server answered wrk (${reqs:-0} requests)" test "${reqs:-0}" -gt 0
  errs=$(for k in errors_connect errors_read errors_write errors_timeout; do dump_field $server $k; done | paste -sd/)
  check "  ... with zero socket errors (connect/read/write/timeout ${errs:-?})" test "$errs" = 0/0/0/0
  check "  ... and no status >= 400" test "$(dump_field $server errors_status)" = 0
  check "  ... its dump is complete (ends with 'end')" bash -c "tail -n 1 '$OUT/$server-r1.dump' | grep -qx end"
  # The .hgrm must parse as HdrHistogram's percentile distribution and hold
  # one sample per request (wrk_hdr undid wrk's correction); the corrected
  # one at least as many.
  for f in "$server.hgrm" "$server.wrk-corrected.hgrm"; do
    out=$(python3 - "$OUT/$f" "$reqs" "$f" <<'PY' 2>&1
import sys
path, reqs, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path).read().splitlines()
assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"], lines[0]
rows = [l.split() for l in lines[2:] if l.strip() and not l.startswith("#")]
assert len(rows) > 2, "too few rows"
prev = (-1.0, -1.0, -1)
for r in rows[:-1]:
    assert len(r) == 4, r
    v, p, c = float(r[0]), float(r[1]), int(r[2])
    float(r[3])
    assert v >= prev[0] and p >= prev[1] and c >= prev[2], (prev, r)
    prev = (v, p, c)
last = rows[-1]
assert len(last) == 3 and float(last[1]) == 1.0, last
total = int(last[2])
footer = [l for l in lines if l.startswith("#[Max")]
assert footer and int(footer[0].split("=")[-1].strip(" ]")) == total, footer
if name.endswith(".wrk-corrected.hgrm"):
    assert total >= reqs, (total, reqs)
else:
    assert total == reqs, f"{total} samples for {reqs} requests"
print(f"{len(rows)} rows, {total} samples")
PY
)
    if [ $? = 0 ]; then pass "  ... $f parses ($out)"; else fail "  ... $f parses" "$out"; fi
  done
done

check "bypass's own count: every response 2xx" bash -c "grep -q 'bypass: http: .* http_2xx=[1-9][0-9]* http_3xx=0 http_4xx=0 http_5xx=0' '$OUT/bypass-r1.log'"
check "bypass exits 0 on SIGTERM" grep -qx "bypass 1 0" "$OUT/exits.txt"
check "  ... and detaches XDP" grep -q "XDP detached" "$OUT/bypass-r1.log"
check "nginx exits 0 on SIGTERM" grep -qx "nginx 1 0" "$OUT/exits.txt"
check "nginx logged no errors" bash -c "! grep -q '\[\(error\|crit\|alert\|emerg\)\]' '$OUT/nginx-error.log' 2>/dev/null"
check "the report has the side-by-side markdown table" grep -q '^| | nginx | bypass | bypass / nginx |$' "$OUT/report.txt"
check "  ... and the command and machine" bash -c "grep -q '^Command: .sudo scripts/loadtest --duration 2' '$OUT/report.txt' && grep -q '^Machine: ' '$OUT/report.txt'"
check "the lab is down afterwards" bash -c "! ip netns list | grep -q bpx-"

finish loadtest
