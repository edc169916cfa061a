-- wrk script for scripts/loadtest: at the end of a run, write wrk's whole
-- latency histogram and its summary to the file named by $WRK_DUMP, for
-- `wrk_hdr` (bench/src/bin/wrk_hdr.rs) to load into HdrHistogram.
--
-- wrk 4.x keeps latency as one counter per microsecond (src/stats.c, up to
-- the --timeout). Its Lua stats object (src/script.c) exposes that raw
-- histogram: `#latency` is the number of distinct values seen and
-- `latency(i)` returns the i-th one (ascending, 1-based) and its count.
-- (Indexing, `latency[i]`, does not: __index only knows min, max, mean,
-- stdev and percentile.) Before done() runs, wrk has already applied its
-- coordinated-omission correction (stats_correct), so the histogram is the
-- one wrk's own --latency output is computed from, and its total can exceed
-- the request count. That correction depends on the number of connections,
-- which Lua cannot see: pass it in $WRK_CONNECTIONS (the same as -c), so
-- that wrk_hdr can undo it exactly.
--
-- Only done() is defined: a request() or response() function would make wrk
-- call into Lua for every request and slow the client down.

function done(summary, latency, requests)
  local path = os.getenv("WRK_DUMP")
  if path == nil or path == "" then
    io.stderr:write("dump.lua: set WRK_DUMP to the output file\n")
    return
  end
  local f = assert(io.open(path, "w"))
  local e = summary.errors
  -- "%.0f": wrk pushes every number as a Lua number (a double).
  local function kv(k, v) f:write(string.format("%s %.0f\n", k, v)) end
  f:write("# wrk latency dump v1 (bench/wrk/dump.lua); latency in microseconds\n")
  kv("connections", tonumber(os.getenv("WRK_CONNECTIONS") or "0") or 0)
  kv("duration_us", summary.duration)
  kv("requests", summary.requests)
  kv("bytes", summary.bytes)
  kv("errors_connect", e.connect)
  kv("errors_read", e.read)
  kv("errors_write", e.write)
  kv("errors_timeout", e.timeout)
  kv("errors_status", e.status)
  local n = #latency
  -- With no sample at all wrk's min is 2^64 - 1: write 0 instead.
  kv("latency_min_us", n > 0 and latency.min or 0)
  kv("latency_max_us", latency.max)
  -- wrk's own numbers, so that the reader can check its histogram against them.
  kv("wrk_p50_us", latency:percentile(50))
  kv("wrk_p99_us", latency:percentile(99))
  kv("distinct_values", n)
  -- latency(i) scans wrk's array from the minimum, so this loop is
  -- quadratic; it runs once, after the measurement, in C.
  for i = 1, n do
    local value, count = latency(i)
    f:write(string.format("h %.0f %.0f\n", value, count))
  end
  f:write("end\n")
  f:close()
end
