#!/usr/bin/env bash
# Lab test for loss recovery against a real receiver: curl in bpx-cli
# downloads from `bypass serve` while nft drops packets from port 80 on the
# way in (1% at random, then bursts of 10 consecutive packets out of every
# 1000). Every download must be byte-exact, and recovery must be SACK's
# (RFC 6675) and the loss probe's (RFC 8985), not the retransmission
# timer's. With RACK (RFC 8985 §6.2) a hole below too few SACKs for
# DupThresh is repaired a reordering window later, so 1% random loss on the
# data alone, or bursts of 10 (packets 500-509 of every 1000, so never the
# SYN-ACK), may take 2 RTOs per 16 MiB (a lost FIN, or a whole flight
# lost); with lost ACKs as well, 8. Loss on
# the ACK path is made on the client's output (the server's input goes to
# XDP before netfilter could see it).
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/loss-site"
rm -rf "$SITE" && mkdir -p "$SITE"
head -c 16M /dev/urandom >"$SITE/big.bin"
SHA=$(sha256sum "$SITE/big.bin" | cut -d' ' -f1)
URL=http://10.99.0.1

metric() { cli curl -sf --max-time 5 "$URL/metrics" | metrics_sum "$1"; }
# set_loss [RULE [ACK_RULE]]: RULE on what enters bpx-cli, ACK_RULE on
# what leaves it; nothing clears both.
set_loss() {
  cli nft delete table inet bpxloss >/dev/null 2>&1
  [ -n "${1:-}" ] || return 0
  cli nft add table inet bpxloss &&
    cli nft add chain inet bpxloss input '{ type filter hook input priority 0; }' &&
    cli nft add chain inet bpxloss output '{ type filter hook output priority 0; }' &&
    cli nft add rule inet bpxloss input $1 &&
    { [ -z "${2:-}" ] || cli nft add rule inet bpxloss output $2; }
}

# download NAME MAX_RTOS RULE [ACK_RULE]: one download through the rules.
download() {
  local name=$1 max=$2 before after rx0 rx1 got
  shift 2
  sleep 1.1 # the cores publish their counters once a second
  before=$(metric bypass_tcp_timeouts_total)
  rx0=$(metric bypass_tcp_retransmits_total)
  set_loss "$@"
  cli curl -sS --max-time 120 -o "$ARTIFACTS/loss-got" "$URL/big.bin"
  set_loss ""
  sleep 1.1
  after=$(metric bypass_tcp_timeouts_total)
  rx1=$(metric bypass_tcp_retransmits_total)
  got=$(sha256sum "$ARTIFACTS/loss-got" 2>/dev/null | cut -d' ' -f1)
  rm -f "$ARTIFACTS/loss-got"
  check "$name: 16 MiB byte-exact" test "$got" = "$SHA"
  check "$name: recovered by SACK ($((rx1 - rx0)) retransmits, $((after - before)) RTOs, at most $max)" \
    test $((after - before)) -le "$max" -a $((rx1 - rx0)) -gt 0
}

echo "== loss: downloads from bypass through nft loss"
"$LAB" up --queues 1 >/dev/null
LOG="$ARTIFACTS/loss-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --metrics-path /metrics --metrics-allow 10.99.0.2/32; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
download "1% random loss" 2 "tcp sport 80 numgen random mod 100 < 1 drop"
download "bursts of 10 in 1000" 2 "tcp sport 80 numgen inc mod 1000 500-509 drop"
download "1% both ways" 8 "tcp sport 80 numgen random mod 100 < 1 drop" "tcp dport 80 numgen random mod 100 < 1 drop"

stop_server
check "server exits 0" test "$SERVER_RC" = 0

# A link with a smaller MTU (PPPoE, tunnels, VPNs): the stack must take
# its MSS from the interface, or its 1500-byte frames never arrive.
echo "== loss: a 1400-byte MTU on both ends"
srv ip link set bpx0 mtu 1400
cli ip link set bpx1 mtu 1400
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE"; then pass "server starts on MTU 1400"; else fail "server starts on MTU 1400" "$(cat "$LOG")"; fi
check "it announces MSS 1360" grep -q "MTU 1400: TCP segments of at most 1360 bytes" "$LOG"
cli curl -sS --max-time 60 -o "$ARTIFACTS/loss-got" "$URL/big.bin"
check "16 MiB over MTU 1400 byte-exact" test "$(sha256sum "$ARTIFACTS/loss-got" | cut -d' ' -f1)" = "$SHA"
rm -f "$ARTIFACTS/loss-got"
stop_server
check "server exits 0" test "$SERVER_RC" = 0

# A path MTU black hole: the client's side takes 1400-byte packets at most,
# but its SYN says MSS 1460 (a route's advmss, as behind a tunnel that
# clamps nothing) and no ICMP comes back: veth drops what is too big for
# the receiving end in silence. Full-sized segments vanish; after three
# timeouts in a row the stack falls back to 1024-byte segments (RFC 4821
# §7.4), then probes its way back up to what the path carries: 1348 bytes
# of payload (RFC 8899; probes of 1236, 1342 and 1348 get through; 1395,
# 1368 and 1355 are lost three times each).
echo "== loss: a path MTU black hole"
srv ip link set bpx0 mtu 1500
cli ip route replace 10.99.0.1/32 dev bpx1 advmss 1460
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 1 --root "$SITE" --metrics-path /metrics --metrics-allow 10.99.0.2/32; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
cli curl -sS --max-time 60 -o "$ARTIFACTS/loss-got" "$URL/big.bin"
check "16 MiB through the black hole byte-exact" test "$(sha256sum "$ARTIFACTS/loss-got" | cut -d' ' -f1)" = "$SHA"
rm -f "$ARTIFACTS/loss-got"
sleep 1.1
check "the black hole was detected ($(metric bypass_tcp_pmtu_black_holes_total))" test "$(metric bypass_tcp_pmtu_black_holes_total)" -ge 1
ACKED=$(metric bypass_tcp_pmtu_probes_acked_total)
LOST=$(metric bypass_tcp_pmtu_probes_lost_total)
check "the search probed up from 1024 ($ACKED probes acknowledged, $LOST lost)" test "$ACKED" -ge 2 -a "$LOST" -ge 3
cli ip route del 10.99.0.1/32 dev bpx1
stop_server
check "server exits 0" test "$SERVER_RC" = 0
finish loss
