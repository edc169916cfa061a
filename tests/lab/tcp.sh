#!/usr/bin/env bash
# Lab test for the TCP engine against the Linux kernel: the stack's inetd
# example (echo/7, discard/9, reset/10, chargen/19) served to kernel clients
# in bpx-cli, byte-exact (sha256) from 1 B to 64 MiB with window scaling,
# timestamps and SACK negotiated (read from the kernel's TCP_INFO), graceful
# close and abort as the kernel sees them, the same under loss in both
# directions (a tc BPF program dropping TCP on bpx1), and the stack as an
# active opener to a kernel echo server, on one queue and from both cores of
# two (replies handed to the owning core).
source "$(dirname "$0")/lib.sh"

INETD="${INETD:-$ROOT/target/release/examples/inetd}"
PEER="$ROOT/tests/lab/tcp_peer.py"
[ -x "$INETD" ] || { echo "tcp lab test: $INETD missing: cargo build --release -p bypass-stack --example inetd" >&2; exit 1; }

start_inetd() { # LOG ARGS...
  local log=$1
  shift
  start_srv "$log" "$INETD" --iface bpx0 --ip 10.99.0.1 "$@"
}

peer() { cli timeout 120 python3 "$PEER" "$@"; }

# peer_check NAME ARGS...: the kernel-side client must succeed.
peer_check() {
  local name=$1
  shift
  local out
  if out=$(peer "$@" 2>&1); then pass "$name: $out"; else fail "$name" "$out"; fi
}

echo "== tcp: kernel clients against the stack (2 queues)"
"$LAB" up --queues 2 >/dev/null
LOG="$ARTIFACTS/tcp-inetd.log"
if start_inetd "$LOG"; then pass "inetd starts"; else fail "inetd starts" "$(cat "$LOG")"; fi
for n in 1 1447 1448 1449 65536 1048576 67108864; do
  peer_check "echo $n B" echo "$n"
done
out=$(peer echo 100000 2>&1)
check "window scaling, timestamps and SACK negotiated (tcpi_options 7)" grep -q "tcpi_options 7" <<<"$out"
peer_check "discard 16 MiB" discard 16777216
peer_check "chargen 1 MiB" chargen 1048576
peer_check "abort seen by the kernel" reset
peer_check "closed port refused" closed
# Eight connections at once, over both queues.
pids=()
for i in $(seq 1 8); do
  peer echo 4194304 >"$ARTIFACTS/tcp-parallel-$i.log" 2>&1 &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
check "8 parallel 4 MiB echoes byte-exact ($ok/8)" test "$ok" = 8

echo "== tcp: loss in both directions"
LOSS_DIR=$(mktemp -d)
cat >"$LOSS_DIR/loss.c" <<'C'
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
/* Drops about 1 in 50 TCP segments (2%); everything else passes. */
SEC("tc") int lossy(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP)
		return TC_ACT_OK;
	return bpf_get_prandom_u32() % 50 == 0 ? TC_ACT_SHOT : TC_ACT_OK;
}
char LICENSE[] SEC("license") = "GPL";
C
clang -O2 -g -target bpf -I"$MULTIARCH_INCLUDE" -c "$LOSS_DIR/loss.c" -o "$LOSS_DIR/loss.o"
cli tc qdisc add dev bpx1 clsact
cli tc filter add dev bpx1 ingress bpf direct-action obj "$LOSS_DIR/loss.o" sec tc
cli tc filter add dev bpx1 egress bpf direct-action obj "$LOSS_DIR/loss.o" sec tc
peer_check "echo 64 MiB at 2% loss each way" echo 67108864
peer_check "echo 1 MiB at 2% loss each way" echo 1048576
dropped=$(cli tc -s qdisc show dev bpx1 | grep -A1 clsact | grep -o 'dropped [0-9]*' | grep -o '[0-9]*')
check "the BPF program really dropped segments (${dropped:-0})" test "${dropped:-0}" -gt 100
cli tc qdisc del dev bpx1 clsact
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp

# Duplicated segments, both ways: each end must report the copies it gets
# as D-SACKs (RFC 2883) that the other end understands. A tc program on
# bpx1 sends about 1 in 20 data segments twice (bpf_clone_redirect), on its
# way to the stack (egress) and to the kernel (ingress).
echo "== tcp: duplicated segments (D-SACK) both ways"
cat >"$LOSS_DIR/dup.c" <<'C'
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
/* Data segments only (an IPv4 packet over 100 bytes: pure ACKs, even
 * with SACK blocks, are shorter), about 1 in 20. */
static int is_data(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP)
		return 0;
	return bpf_ntohs(ip->tot_len) > 100 && bpf_get_prandom_u32() % 20 == 0;
}
/* DIRECTION: 0 on egress, BPF_F_INGRESS on ingress (one object each). */
SEC("tc") int dup(struct __sk_buff *skb)
{
	if (is_data(skb))
		bpf_clone_redirect(skb, skb->ifindex, DIRECTION);
	return TC_ACT_OK;
}
char LICENSE[] SEC("license") = "GPL";
C
clang -O2 -g -target bpf -I"$MULTIARCH_INCLUDE" -DDIRECTION=0 -c "$LOSS_DIR/dup.c" -o "$LOSS_DIR/dup_out.o"
clang -O2 -g -target bpf -I"$MULTIARCH_INCLUDE" -DDIRECTION=BPF_F_INGRESS -c "$LOSS_DIR/dup.c" -o "$LOSS_DIR/dup_in.o"
LOG_DUP="$ARTIFACTS/tcp-inetd-dup.log"
if start_inetd "$LOG_DUP"; then pass "inetd starts"; else fail "inetd starts" "$(cat "$LOG_DUP")"; fi
dsack_recv() { cli nstat -asz TcpExtTCPDSACKRecv | awk '$1 == "TcpExtTCPDSACKRecv" { print $2 + 0 }'; }
dsacks_before=$(dsack_recv)
cli tc qdisc add dev bpx1 clsact
if cli tc filter add dev bpx1 ingress bpf direct-action obj "$LOSS_DIR/dup_in.o" sec tc &&
  cli tc filter add dev bpx1 egress bpf direct-action obj "$LOSS_DIR/dup_out.o" sec tc; then
  pass "the duplicating programs are attached"
else
  fail "the duplicating programs are attached" "tc filter add failed"
fi
peer_check "echo 16 MiB with duplicated segments each way" echo 16777216
cli tc qdisc del dev bpx1 clsact
dsacks_after=$(dsack_recv)
check "the kernel got D-SACKs from the stack ($((${dsacks_after:-0} - ${dsacks_before:-0})))" \
  test "$((${dsacks_after:-0} - ${dsacks_before:-0}))" -gt 0
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
got=$(grep -o "total: .*" "$LOG_DUP" | grep -o " tcp_dsacks=[0-9]*" | tail -1 | cut -d= -f2)
check "the stack got D-SACKs from the kernel (tcp_dsacks=${got:-none})" test "${got:-0}" -gt 0

# active_opens QUEUES CONNECTIONS BYTES NAME: a fresh lab with QUEUES queues,
# a kernel echo server for CONNECTIONS connections in bpx-cli, and inetd
# opening them (dealt out over its cores), each echoing BYTES; LOG and
# ES_LOG name the two logs, RC inetd's exit code.
active_opens() {
  local queues=$1 connections=$2 bytes=$3 name=$4
  "$LAB" up --queues "$queues" >/dev/null
  ES_LOG="$ARTIFACTS/tcp-echo-server-$name.log"
  cli timeout 120 python3 "$PEER" echo-server 7777 "$connections" >"$ES_LOG" 2>&1 &
  local es_pid=$!
  for _ in $(seq 1 100); do grep -q listening "$ES_LOG" && break; sleep 0.05; done
  LOG="$ARTIFACTS/tcp-active-$name.log"
  "$LAB" exec srv timeout 120 "$INETD" --iface bpx0 --ip 10.99.0.1 --echo-to 10.99.0.2:7777 --bytes "$bytes" --connections "$connections" >"$LOG" 2>&1
  RC=$?
  wait "$es_pid"
  check "inetd --echo-to --connections $connections exits 0 (rc=$RC)" test "$RC" = 0
  check "$connections x $bytes bytes echoed back byte-exact" grep -q "$connections x $bytes bytes echoed byte-exact" "$LOG"
  check "the kernel server saw all $connections close gracefully with options 7" test "$(grep -o "echo server: $bytes bytes from [0-9.:]*, graceful close, tcpi_options 7" "$ES_LOG" | wc -l)" = "$connections"
}

echo "== tcp: the stack as an active opener (1 queue)"
active_opens 1 1 16777216 1q
check "no SYN waited for ARP (held, then sent)" bash -c "! grep -q 'tcp_no_route' '$LOG'"
check "XDP detached" no_xdp

# With two queues the kernel's replies land on either queue, whichever core
# opened the connection: the receiving core hands them to the owner (by
# ephemeral port), and ARP learned on one core is shared with the other.
echo "== tcp: active opens from both cores of a 2-queue interface"
active_opens 2 16 1048576 2q
fwd=$(grep -o "total: .*" "$LOG" | grep -o " forwarded_in=[0-9]*" | cut -d= -f2)
check "replies crossed cores and were handed over (forwarded_in=${fwd:-none})" test "${fwd:-0}" -gt 0
check "nothing dropped for a full hand-over queue" bash -c "! grep -q 'forward_queue_full' '$LOG'"
check "XDP detached" no_xdp
rm -rf "$LOSS_DIR"
finish tcp
