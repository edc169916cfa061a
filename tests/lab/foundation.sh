#!/usr/bin/env bash
# Lab test for the foundation: the stack answers ARP and ping in owned-IP
# mode, leaves them to the kernel in shared-IP mode, steers only its TCP
# ports, detaches on SIGTERM and after a crash, replaces a stale program,
# and refuses bad set-ups with one clear line.
source "$(dirname "$0")/lib.sh"

echo "== foundation: owned-IP mode"
"$LAB" up --queues 2 >/dev/null
MAC=$(srv_mac)
LOG="$ARTIFACTS/foundation-owned.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 2; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi
check "XDP attached to bpx0" xdp_attached
check "start-up line names the attach mode" grep -q "XDP native (driver)" "$LOG"
check "ping -c 50 -i 0.01: 0% loss" ping_clean -c 50 -i 0.01 -W 1 10.99.0.1
check "ping with 1472-byte payload (full MTU)" ping_clean -c 5 -i 0.01 -W 1 -s 1472 -M do 10.99.0.1
arp_out=$(cli arping -c 3 -w 5 -I bpx1 10.99.0.1 2>&1)
if [ "$(grep -c "from $MAC (10.99.0.1)" <<<"$arp_out")" = 3 ]; then pass "arping -c 3 answered by bpx0's MAC $MAC"; else fail "arping answered by $MAC" "$arp_out"; fi
check "client's neighbour entry for 10.99.0.1 is bpx0's MAC" bash -c "'$LAB' exec cli ip neigh show 10.99.0.1 | grep -q '$MAC'"
check "kernel address 10.99.0.3 still answers ping" ping_clean -c 3 -i 0.01 -W 1 10.99.0.3
check "a burst of 100 pings in flight at once: 0% loss" ping_clean -c 300 -l 100 -i 0.002 -W 2 -q 10.99.0.1
# Fragments are steered to the stack, counted and dropped (no reassembly yet).
cli ping -c 2 -i 0.01 -W 1 -s 3000 10.99.0.1 >/dev/null 2>&1
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp
check "exit log says XDP detached" grep -q "XDP detached from bpx0" "$LOG"
echo_in=$(counter "$LOG" icmp_echo_in)
check "counters: >= 355 echo requests answered (got ${echo_in:-none})" test "${echo_in:-0}" -ge 355
check "counters: the kernel dropped nothing on the AF_XDP sockets" grep -q "total device: .*kernel_rx_dropped=0 kernel_rx_ring_full=0 .*kernel_invalid_descs=0" "$LOG"
check "counters: echo replies = requests" test "$(counter "$LOG" icmp_echo_out)" = "$echo_in"
check "counters: fragments counted as drops" grep -q "ipv4_fragment=" "$LOG"
check "counters: XDP steered frames on both queues' totals" test "$(xdp_total "$LOG" steered)" -ge 60
check "counters: kernel's traffic passed by XDP" test "$(xdp_total "$LOG" passed)" -ge 3

echo "== foundation: busy polling"
LOG="$ARTIFACTS/foundation-busy.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --busy-poll; then pass "server starts (--busy-poll, all queues by default)"; else fail "server starts (--busy-poll)" "$(cat "$LOG")"; fi
check "start-up line says busy polling on 2 queues" grep -q "2 queue(s).*busy polling" "$LOG"
# Both CPUs spin here, so the veth's softirq work and ping itself get only
# what the scheduler leaves: one retry, with the first attempt's counters
# printed, so a scheduling hiccup is told apart from a stack that loses
# frames (the counter check below catches those).
if out=$(ping_clean -c 300 -l 100 -i 0.002 -W 2 -q 10.99.0.1); then
  pass "a burst of 100 pings in flight at once: 0% loss"
else
  echo "  note first burst lost pings:"; sed 's/^/       /' <<<"$out"
  check "a burst of 100 pings in flight at once: 0% loss (second try)" ping_clean -c 300 -l 100 -i 0.002 -W 2 -q 10.99.0.1
fi
check "arping answered" bash -c "'$LAB' exec cli arping -c 2 -w 5 -I bpx1 10.99.0.1 | grep -q '0% unanswered'"
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp
check "busy polling: the kernel dropped nothing on the AF_XDP sockets" bash -c "grep -q 'total device: .*kernel_rx_dropped=0 kernel_rx_ring_full=0 .*kernel_invalid_descs=0' '$LOG' || grep 'device:' '$LOG'"

echo "== foundation: shared-IP mode (the kernel holds 10.99.0.1)"
srv ip addr add 10.99.0.1/24 dev bpx0
LOG="$ARTIFACTS/foundation-shared.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 2 --shared-ip --port 80; then pass "server starts (shared-IP)"; else fail "server starts (shared-IP)" "$(cat "$LOG")"; fi
check "XDP attached to bpx0" xdp_attached
check "ping -c 50 -i 0.01 answered (by the kernel): 0% loss" ping_clean -c 50 -i 0.01 -W 1 10.99.0.1
arp_out=$(cli arping -c 3 -w 5 -I bpx1 10.99.0.1 2>&1)
if [ "$(grep -c "from $MAC (10.99.0.1)" <<<"$arp_out")" = 3 ]; then pass "arping -c 3 answered with bpx0's MAC"; else fail "arping answered with $MAC" "$arp_out"; fi
check "kernel address 10.99.0.3 still answers ping" ping_clean -c 3 -i 0.01 -W 1 10.99.0.3
# Port 80 is steered to the stack, which serves the site on it; port 81 is
# the kernel's (no listener: RST, refused).
page=$(cli curl -s --max-time 5 http://10.99.0.1/ 2>&1)
cli timeout 2 bash -c 'exec 3<>/dev/tcp/10.99.0.1/81' >/dev/null 2>&1
rc81=$?
check "HTTP on steered port 80 is answered by the stack" grep -q "<h1>bypass</h1>" <<<"$page"
check "TCP to unsteered port 81 refused by the kernel (rc=$rc81)" test "$rc81" = 1
stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp
check "counters: the stack answered no ping itself" test "$(counter "$LOG" icmp_echo_in)" = 0
check "counters: the steered segments reached the stack" test "$(counter "$LOG" tcp_segments_in)" -gt 0
check "counters: XDP passed the kernel's ping and ARP" test "$(xdp_total "$LOG" passed)" -ge 50
srv ip addr del 10.99.0.1/24 dev bpx0

echo "== foundation: crash and stale programs"
LOG="$ARTIFACTS/foundation-crash.log"
start_server "$LOG" --iface bpx0 --ip 10.99.0.1
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
for _ in $(seq 1 40); do no_xdp && break; sleep 0.05; done
check "SIGKILL: the kernel released the XDP link" no_xdp
LOG="$ARTIFACTS/foundation-restart.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 2; then pass "restart after a crash"; else fail "restart after a crash" "$(cat "$LOG")"; fi
check "restarted server answers ping" ping_clean -c 3 -i 0.01 -W 1 10.99.0.1
LOG2="$ARTIFACTS/foundation-second.log"
srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --queues 2 >"$LOG2" 2>&1
rc=$?
check "a second server on the same interface fails (rc=$rc)" test "$rc" = 1
check "  ... with one clear line" grep -q "bypass: error: .*bpx0.*" "$LOG2"
stop_server
# A stale copy of our program left attached through netlink (as an older
# kernel, or `ip link set xdp`, leaves it) is replaced; anyone else's is not.
BPF_DIR=$(mktemp -d)
bpf_prog() { # NAME: an XDP_PASS program called NAME, compiled to $BPF_DIR/NAME.o
  printf '%s\n' '#include <linux/bpf.h>' "__attribute__((section(\"xdp\"), used)) int $1(struct xdp_md *c) { return XDP_PASS; }" \
    'char LICENSE[] __attribute__((section("license"), used)) = "GPL";' >"$BPF_DIR/$1.c"
  clang -O2 -target bpf -I"$MULTIARCH_INCLUDE" -c "$BPF_DIR/$1.c" -o "$BPF_DIR/$1.o"
}
bpf_prog steer
bpf_prog firewall
srv ip link set dev bpx0 xdpgeneric obj "$BPF_DIR/steer.o" sec xdp
check "a stale netlink-attached steer program is on bpx0 (generic mode)" bash -c "'$LAB' exec srv ip link show bpx0 | grep -q 'xdpgeneric'"
LOG="$ARTIFACTS/foundation-stale.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --queues 2; then pass "server replaces the stale program"; else fail "server replaces the stale program" "$(cat "$LOG")"; fi
check "  ... in native mode (the generic one is gone)" grep -q "XDP native (driver)" "$LOG"
check "  ... and its own program is the one attached" bash -c "'$LAB' exec srv ip link show bpx0 | grep -q 'name steer'"
check "  ... and answers ping" ping_clean -c 3 -i 0.01 -W 1 10.99.0.1
stop_server
check "  ... and leaves nothing attached on exit" no_xdp
srv ip link set dev bpx0 xdpgeneric obj "$BPF_DIR/firewall.o" sec xdp
out=$(srv timeout 20 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 2>&1); rc=$?
check "another tool's XDP program is not taken over (rc=$rc)" test "$rc" = 1
check "  ... and the error names it" grep -q 'already has another XDP program attached (id [0-9]*, "firewall")' <<<"$out"
check "  ... and it stays attached" bash -c "'$LAB' exec srv ip link show bpx0 | grep -q 'name firewall'"
srv ip link set dev bpx0 xdpgeneric off
rm -rf "$BPF_DIR"

echo "== foundation: clear errors"
# expect_error NAME PATTERN ARGS...: bypass exits 1 with one line matching PATTERN.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  local out rc
  if [ "$1" = srv ]; then
    shift
    out=$(timeout 20 "$LAB" exec srv "$@" 2>&1)
  else
    out=$(timeout 20 "$@" 2>&1)
  fi
  rc=$?
  if [ "$rc" = 1 ] && grep -q "^bypass: error: .*$pattern" <<<"$out" && ! grep -qi "panicked" <<<"$out"; then
    pass "$name"
  else
    fail "$name (rc=$rc)" "$out"
  fi
  no_xdp || fail "$name: left XDP attached"
}
expect_error "missing interface" "no network interface named \"nope0\"" srv "$BYPASS" serve --iface nope0 --ip 10.99.0.1
expect_error "more queues than the interface has" "bpx0 has 2 receive queue(s), 3 requested" srv "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --queues 3
expect_error "fewer queues than the interface has" "bpx0 has 2 receive queues but only 1 would be served" srv "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --queues 1
# An unprivileged user needs a copy it can execute (the checkout may be
# under a 0700 home directory).
NOBODY_DIR=$(mktemp -d)
chmod 755 "$NOBODY_DIR"
cp "$BYPASS" "$NOBODY_DIR/bypass"
expect_error "not root" "needs root" srv setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$NOBODY_DIR/bypass" serve --iface bpx0 --ip 10.99.0.1
rm -rf "$NOBODY_DIR"
expect_error "zero-copy on veth" "does not support AF_XDP zero-copy" srv "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --zero-copy
# A real allocation failure, made safely: cap the address space at 1 GiB and
# ask for a 1 GiB UMEM per queue.
expect_error "UMEM allocation failure" "cannot allocate a UMEM of 262144 frames x 4096 bytes" srv prlimit --as=1073741824 "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --umem-frames 262144 --frame-size 4096
expect_error "UMEM size beyond the limit" "UMEM frame count 2097152 is above the limit" srv "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --umem-frames 2097152
expect_error "CPU that does not exist" "CPU 999 does not exist" srv "$BYPASS" serve --iface bpx0 --ip 10.99.0.1 --cores 0,999
out=$("$BYPASS" serve --iface bpx0 --ip 10.99.0.1/40 2>&1); rc=$?
check "bad prefix is a usage error (rc=$rc)" test "$rc" = 2
check "--help reads well" bash -c "'$BYPASS' serve --help | grep -q -- '--shared-ip'"

"$LAB" down >/dev/null
check "lab down leaves no namespace" bash -c "! ip netns list | grep -q '^bpx-'"
check "lab down leaves no veth" bash -c "! ip link show bpx0 2>/dev/null && ! ip link show bpx1 2>/dev/null"
finish foundation
