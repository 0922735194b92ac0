#!/usr/bin/env bash
# Runs the echo example on one CPU and echo_bench against it on another, then stops the server
# with SIGTERM and checks that it exited cleanly (status 0).
#
#   scripts/demo.sh [echo_bench flags...]        e.g. scripts/demo.sh --duration 2 --conns 16
#   COREIO_BACKEND=epoll scripts/demo.sh          both sides on the epoll backend
#   DEMO_TRANSPORT=unix scripts/demo.sh           over a Unix socket (or udp; default tcp)
#   scripts/demo.sh --help                        this text, then echo_bench's flags
#
# The server listens on 127.0.0.1 with a free port (--addr 127.0.0.1:0; it prints which), or
# with DEMO_TRANSPORT=unix on a socket in a fresh temporary directory, removed at the end.
# With two or more CPUs allowed and taskset present, the server is pinned to the first allowed
# CPU and the client to the second; otherwise they share the CPUs. Exits non-zero if the build,
# the client or the server's shutdown fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where cargo puts the binaries: $CARGO_TARGET_DIR when set (relative to the repository, as
# cargo reads it), target/ otherwise.
bin=${CARGO_TARGET_DIR:-target}/release/examples

for arg in "$@"; do
  if [[ $arg == -h || $arg == --help ]]; then
    # The header comment above is the usage; echo_bench lists the flags passed through to it.
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    echo
    echo "echo_bench flags (passed through):"
    cargo build --release --example echo_bench --quiet
    "$bin/echo_bench" --help
    exit 0
  fi
done

cargo build --release --examples --quiet

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
server_pin=()
client_pin=()
if ((${#cpus[@]} >= 2)) && command -v taskset >/dev/null 2>&1; then
  server_pin=(taskset -c "${cpus[0]}")
  client_pin=(taskset -c "${cpus[1]}")
else
  echo "demo: fewer than two CPUs or no taskset: server and client are not pinned" >&2
fi

log=$(mktemp)
sock_dir=
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -f "$log"
  if [[ -n $sock_dir ]]; then rm -rf "$sock_dir"; fi
}
trap cleanup EXIT

# The server's transport flags, and the prefix its banner puts before the address.
transport=${DEMO_TRANSPORT:-tcp}
case $transport in
  tcp) server_flags=(--addr 127.0.0.1:0) prefix= ;;
  unix)
    sock_dir=$(mktemp -d)
    server_flags=(--unix "$sock_dir/echo.sock") prefix=unix:
    ;;
  udp) server_flags=(--udp --addr 127.0.0.1:0) prefix=udp: ;;
  *)
    echo "demo: DEMO_TRANSPORT takes tcp, unix or udp, got '$transport'" >&2
    exit 2
    ;;
esac

"${server_pin[@]}" "$bin/echo" "${server_flags[@]}" --cores 1 >"$log" 2>&1 &
server=$!

# The banner means every core is accepting; wait for it (10 s at most).
addr=
for _ in $(seq 100); do
  addr=$(sed -n "s/^coreio echo on $prefix\\([^,]*\\),.*/\\1/p" "$log")
  [[ -n $addr ]] && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$log" >&2
    echo "demo: the echo server exited before it was ready" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $addr ]]; then
  cat "$log" >&2
  echo "demo: the echo server printed no banner within 10 s" >&2
  exit 1
fi
cat "$log"

case $transport in
  tcp) client_flags=(--addr "$addr") ;;
  unix) client_flags=(--unix "$addr") ;;
  udp) client_flags=(--udp --addr "$addr") ;;
esac
client_status=0
"${client_pin[@]}" "$bin/echo_bench" "${client_flags[@]}" --server-pid "$server" --duration 5 --warmup 0.5 "$@" || client_status=$?

kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
server=
# The server's lines after its banner: the signal and what each core served.
awk 'seen { print } /^coreio echo on/ { seen = 1 }' "$log"

if ((client_status != 0)); then
  echo "demo: echo_bench failed (exit status $client_status)" >&2
  exit 1
fi
if ((server_status != 0)); then
  echo "demo: the echo server did not exit cleanly after SIGTERM (exit status $server_status)" >&2
  exit 1
fi
echo "demo: ok"
