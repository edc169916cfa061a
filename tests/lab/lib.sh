# Shared helpers for the lab tests (sourced). Each test file sources this,
# calls `check` for assertions, and ends with `finish`.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB="$ROOT/scripts/lab"
BYPASS="${BYPASS:-$ROOT/target/release/bypass}"
ARTIFACTS="${ARTIFACTS:-$ROOT/artifacts}"
mkdir -p "$ARTIFACTS"
PASSED=0
FAILED=0
SERVER_PID=

if [ "$(id -u)" != 0 ]; then
  if [ -n "${CI:-}" ]; then
    echo "lab tests: FAILED: CI must run them as root (network namespaces, XDP, AF_XDP)" >&2
    exit 1
  fi
  echo "lab tests: SKIPPED: they need root (network namespaces, XDP, AF_XDP); CI runs them as root"
  exit 0
fi
[ -x "$BYPASS" ] || { echo "lab tests: $BYPASS missing: build with cargo build --release -p bypass-http" >&2; exit 1; }

pass() { PASSED=$((PASSED + 1)); echo "  ok   $1"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/       /' | tail -n 20; }

# check NAME CMD...: passes when CMD exits 0.
check() {
  local name=$1
  shift
  local out
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

srv() { "$LAB" exec srv "$@"; }
cli() { "$LAB" exec cli "$@"; }

# start_srv LOG CMD...: starts CMD in bpx-srv in the background and waits
# until its log says it is serving (or it has exited).
start_srv() {
  local log=$1
  shift
  # Not through the `srv` function: a backgrounded function is a subshell,
  # and the signal must reach the server itself (lab exec and ip netns exec
  # both exec, so $! ends up being the server).
  "$LAB" exec srv "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    grep -q "serving" "$log" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# start_server LOG ARGS...: `bypass serve ARGS` in bpx-srv.
start_server() {
  local log=$1
  shift
  start_srv "$log" "$BYPASS" serve "$@"
}

# await_server SECS WHAT: waits up to SECS for the server to exit; its exit
# code goes into SERVER_RC, or WHAT if it had to be killed.
await_server() {
  local tries=$(($1 * 20))
  SERVER_RC=
  [ -n "$SERVER_PID" ] || return 0
  for _ in $(seq 1 "$tries"); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    SERVER_RC=$2
  fi
  wait "$SERVER_PID" 2>/dev/null
  local rc=$?
  [ -n "$SERVER_RC" ] || SERVER_RC=$rc
  SERVER_PID=
}

# stop_server: SIGTERM, and the exit code into SERVER_RC ("killed" if it
# did not stop within 5 s).
stop_server() {
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null
  await_server 5 killed
}

# ping_clean ARGS...: ping from bpx-cli; passes on 0% loss, and otherwise
# prints ping's summary and both veth ends' drop counters.
ping_clean() {
  local out
  out=$("$LAB" exec cli ping "$@" 2>&1)
  grep -q ' 0% packet loss' <<<"$out" && return 0
  tail -n 3 <<<"$out"
  "$LAB" exec cli ip -s link show bpx1 | sed -n '3,6p'
  "$LAB" exec srv ip -s link show bpx0 | sed -n '3,6p'
  return 1
}

xdp_attached() { srv ip link show bpx0 | grep -q 'prog/xdp'; }
no_xdp() { ! xdp_attached; }
srv_mac() { srv cat /sys/class/net/bpx0/address; }

# metrics_sum NAME: reads a Prometheus page on stdin and prints the sum of
# NAME's series (NAME alone, or NAME{...}; a full `NAME{labels}` picks one).
metrics_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'; }

# counter LOG NAME: the value of NAME= on the "total:" line of a server log.
counter() { grep 'bypass: total:' "$1" | grep -o " $2=[0-9]*" | cut -d= -f2; }
# xdp_total LOG steered|passed: summed over queues.
xdp_total() { grep -o "xdp queue [0-9]*: steered=[0-9]* passed=[0-9]*" "$1" | grep -o "$2=[0-9]*" | cut -d= -f2 | awk '{s+=$1} END {print s+0}'; }

# The include directory for the host's multiarch kernel headers, for
# compiling small BPF programs in tests.
MULTIARCH_INCLUDE="/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"

cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
  "$LAB" down >/dev/null 2>&1
}
trap cleanup EXIT

finish() {
  local name=$1
  cleanup
  trap - EXIT
  echo "$name: $PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
