#!/usr/bin/env bash
# Lab test for the per-core memory budget (--memory-per-core): clients that
# ask for a large file and never read pin send buffers (256 KiB each) until
# the core is over its budget. Then a new client is refused (its SYN
# dropped, counted as tcp_memory_pressure) while the server stays up and
# its buffers stay near the budget; once those clients go, memory comes
# back and a new client is served.
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/memory-site"
rm -rf "$SITE" && mkdir -p "$SITE"
head -c 8M /dev/urandom >"$SITE/big.bin"
echo hello >"$SITE/index.html"
URL=http://10.99.0.1
# Metrics from the admin listener (a kernel socket in bpx-srv): under
# pressure the stack refuses new connections, its own /metrics included.
metric() { srv curl -sf --max-time 5 "http://127.0.0.1:9090/metrics" | metrics_sum "$1"; }

echo "== memory: a 2 MiB budget and clients that never read"
"$LAB" up --queues 1 >/dev/null
LOG="$ARTIFACTS/memory-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --memory-per-core 2 \
  --admin-listen 127.0.0.1:9090; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "the page is served before" cli curl -sf --max-time 5 -o /dev/null "$URL/index.html"

# Twelve clients with a 4 KiB receive buffer each ask for 8 MiB and stop
# reading; they hold their sockets until told.
HOLD="$ARTIFACTS/memory-hold"
rm -f "$HOLD" && mkfifo "$HOLD"
cli python3 -c '
import socket, sys
held = []
for i in range(12):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(2)
    try:
        s.connect(("10.99.0.1", 80))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: memory\r\n\r\n")
        held.append(s)
    except OSError:
        s.close()
print(len(held), flush=True)
sys.stdin.readline()
' <"$HOLD" >"$ARTIFACTS/memory-held.txt" &
HOLDER=$!
exec 3>"$HOLD"
for _ in $(seq 1 100); do [ -s "$ARTIFACTS/memory-held.txt" ] && break; sleep 0.2; done
sleep 1.2 # the cores publish their counters once a second
held=$(cat "$ARTIFACTS/memory-held.txt")
buffers=$(metric bypass_tcp_buffer_bytes)
check "some stuck clients got in ($held of 12)" test "${held:-0}" -ge 8
check "the core is under memory pressure" test "$(metric bypass_tcp_memory_pressure)" = 1
check "its buffers stay near the budget ($buffers bytes)" test "$buffers" -le $((3 << 20))
check "a new client is refused meanwhile" bash -c "! $LAB exec cli curl -sf --max-time 2 -o /dev/null $URL/index.html"
sleep 1.1
check "the refusals are counted" test "$(metric 'bypass_drops_total{core="0",reason="tcp_memory_pressure"}')" -ge 1
check "the server is still up" kill -0 "$SERVER_PID"

# The stuck clients go (their sockets close): memory comes back.
exec 3>&-
wait "$HOLDER" 2>/dev/null
sleep 2.2
check "the pressure is over" test "$(metric bypass_tcp_memory_pressure)" = 0
check "a new client is served again" cli curl -sf --max-time 5 -o /dev/null "$URL/index.html"
rm -f "$HOLD"
stop_server
check "server exits 0" test "$SERVER_RC" = 0
finish memory
