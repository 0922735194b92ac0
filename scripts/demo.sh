#!/usr/bin/env bash
# Runs the echo example on one CPU and echo_bench against it on another, then stops the server
# with SIGTERM and checks that it exited cleanly (status 0).
#
#   scripts/demo.sh [echo_bench flags...]        e.g. scripts/demo.sh --duration 2 --conns 16
#   COREIO_BACKEND=epoll scripts/demo.sh          both sides on the epoll backend
#
# The server listens on 127.0.0.1 with a free port (--addr 127.0.0.1:0; it prints which).
# With two or more CPUs allowed and taskset present, the server is pinned to the first allowed
# CPU and the client to the second; otherwise they share the CPUs. Exits non-zero if the build,
# the client or the server's shutdown fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --examples --quiet
bin=target/release/examples

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
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT

"${server_pin[@]}" "$bin/echo" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 &
server=$!

# The banner means every core is accepting; wait for it (10 s at most).
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^coreio echo on \([^,]*\),.*/\1/p' "$log")
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

client_status=0
"${client_pin[@]}" "$bin/echo_bench" --addr "$addr" --server-pid "$server" --duration 5 --warmup 0.5 "$@" || client_status=$?

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
