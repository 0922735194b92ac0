#!/usr/bin/env bash
# Memory of idle connections: the echo server's resident set (VmRSS) with N connections open
# and (almost) silent, for each way a connection can receive, side by side in one run.
#
#   benches/idle_rss.sh                         10,000 connections, 3 reps, every mode
#   benches/idle_rss.sh --conns 2000 --reps 1   a quicker look
#
# For each repetition and each mode in turn (interleaved): it starts examples/echo pinned to one
# CPU (`--cores 1`), reads its VmRSS, runs examples/echo_bench pinned to another CPU with
# --conns N in the open loop at --rate messages/s in total (so each connection sends about
# once in N / rate seconds and sits idle otherwise), reads the server's VmRSS again while the
# connections are open, and stops both. The figure is the growth, per connection and in total.
# Kernel socket memory is not in VmRSS and is the same for every mode.
#
# Modes: uring-pooled (io_uring, `--recv pooled`: receive streams over the core's pool, a
# multishot receive per connection), uring-owned (io_uring, `--recv owned`: a 16 KiB buffer per
# connection), epoll-pooled, epoll-owned.
#
# Options:
#   --conns N      connections (default 10000)
#   --rate R       messages per second in total, spread over the connections (default 100)
#   --reps N       repetitions (default 3)
#   --hold S       seconds the connections stay open before the reading (default 4)
#   --modes LIST   modes, in order (default "uring-pooled uring-owned epoll-pooled epoll-owned")
#   --no-build     use the binaries already built
#   -h, --help     print this help
#
# Prints one line per run and a table of medians; needs `ulimit -n` above N + 100 (raised
# here when the hard limit allows).
set -euo pipefail
cd "$(dirname "$0")/.."

conns=10000 rate=100 reps=3 hold=4 build=1
modes="uring-pooled uring-owned epoll-pooled epoll-owned"
while (($#)); do
  case $1 in
  --conns) conns=$2; shift 2 ;;
  --rate) rate=$2; shift 2 ;;
  --reps) reps=$2; shift 2 ;;
  --hold) hold=$2; shift 2 ;;
  --modes) modes=$2; shift 2 ;;
  --no-build) build=0; shift ;;
  -h | --help) sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "idle_rss: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$conns" "$rate" "$reps" "$hold"; do
  [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "idle_rss: numbers must be positive integers" >&2; exit 2; }
done

need=$((conns + 100))
if (($(ulimit -n) < need)); then
  ulimit -n "$need" 2>/dev/null || { echo "idle_rss: ulimit -n $need refused; run as root or lower --conns" >&2; exit 1; }
fi
if ((build)); then
  env -u CARGO_TARGET_DIR cargo build --release --example echo --example echo_bench >&2
fi
echo_bin=target/release/examples/echo
bench_bin=target/release/examples/echo_bench
# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
server_pin=() client_pin=()
if ((${#cpus[@]} >= 2)); then
  server_pin=(taskset -c "${cpus[0]}") client_pin=(taskset -c "${cpus[1]}")
fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
out=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

echo "idle_rss: $(date -u +%FT%TZ), $(uname -srm), $(nproc) CPUs, $conns connections, rate $rate/s"
for ((rep = 1; rep <= reps; rep++)); do
  for mode in $modes; do
    case $mode in
    uring-pooled) backend=uring recv=pooled ;;
    uring-owned) backend=uring recv=owned ;;
    epoll-pooled) backend=epoll recv=pooled ;;
    epoll-owned) backend=epoll recv=owned ;;
    *) echo "idle_rss: unknown mode $mode" >&2; exit 2 ;;
    esac
    # Below the ephemeral range (32768 and up), where the clients' own ports and their
    # TIME_WAIT leftovers live; a port in use is retried with another.
    for _attempt in 1 2 3 4 5; do
      port=$((20000 + RANDOM % 12000))
      COREIO_BACKEND=$backend "${server_pin[@]}" "$echo_bin" --addr "127.0.0.1:$port" --cores 1 \
        --recv "$recv" >"$out/server.log" 2>&1 &
      server_pid=$!
      for _ in $(seq 100); do
        grep -q ' echo on ' "$out/server.log" && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
      done
      grep -q ' echo on ' "$out/server.log" && break
      wait "$server_pid" 2>/dev/null || true
      server_pid=
    done
    [[ -n $server_pid ]] || { echo "idle_rss: the server did not start: $(tail -n 1 "$out/server.log")" >&2; exit 1; }
    before=$(rss_kib "$server_pid")
    "${client_pin[@]}" "$bench_bin" --addr "127.0.0.1:$port" --conns "$conns" --rate "$rate" \
      --size 64 --warmup 0 --duration $((hold + 2)) >"$out/client.log" 2>&1 &
    client_pid=$!
    sleep "$hold"
    during=$(rss_kib "$server_pid")
    wait "$client_pid" || { echo "idle_rss: echo_bench failed: $(tail -n 2 "$out/client.log")" >&2; exit 1; }
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    growth=$((during - before))
    echo "run rep=$rep mode=$mode rss_before_kib=$before rss_open_kib=$during growth_kib=$growth bytes_per_conn=$((growth * 1024 / conns))"
  done
done | tee "$out/runs.txt"

echo
echo "| mode | RSS growth, median (MiB) | per connection (bytes) |"
echo "| --- | ---: | ---: |"
for mode in $modes; do
  grep " mode=$mode " "$out/runs.txt" | sed 's/.*growth_kib=\([0-9-]*\).*/\1/' | sort -n |
    awk -v mode="$mode" -v conns="$conns" '{ v[NR] = $1 } END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "| %s | %.1f | %d |\n", mode, m / 1024, m * 1024 / conns }'
done
