#!/usr/bin/env bash
# redis-benchmark SET against examples/sharded_kv and against redis-server, in memory and with
# an append-only file under the same fsync policy, one server core, side by side in one run:
# requests/s, server CPU per request and p99 latency, with the ratios that issue [8] asks for
# (sharded_kv everysec against its own in-memory figure; sharded_kv always against
# redis-server always). The machine is shared and noisy, so servers alternate within every
# repetition and the summary gives medians.
#
#   bash benches/kv_aof_compare.sh                  3 reps, summary printed
#   bash benches/kv_aof_compare.sh --reps 5 --doc   ... and written to docs/benchmarks-kv-aof.md
#
# Options (environment variable in parentheses):
#   --reps N          repetitions (REPS, default 3); each runs every server once, the order
#                     rotating from one repetition to the next
#   --requests N      SETs per run (REQUESTS, default 200000)
#   --clients N       redis-benchmark connections (-c; CLIENTS, default 50)
#   --size N          value bytes (-d; SIZE, default 16)
#   --servers "LIST"  any of kv-mem kv-everysec kv-always redis-mem redis-everysec redis-always
#                     (SERVERS, default all six)
#   --data DIR        where the append-only files go, on the disk to measure (DATA, default
#                     target/kv-aof-compare/data: the repository's file system)
#   --out DIR         results directory (default target/kv-aof-compare/<UTC time>/)
#   --doc             write the summary to docs/benchmarks-kv-aof.md
#   -h, --help        print this help
#
# The server runs on the first allowed CPU, redis-benchmark on the second. Server CPU is the
# process's utime + stime (from /proc/PID/stat, every thread: redis-server's background fsync
# thread included) over the run, divided by the requests. Each run starts from an empty data
# directory. redis-benchmark and redis-server come from Debian's redis-tools and redis-server
# packages; the script installs them with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${REPS:-3}
requests=${REQUESTS:-200000}
clients=${CLIENTS:-50}
size=${SIZE:-16}
servers=${SERVERS:-"kv-mem kv-everysec kv-always redis-mem redis-everysec redis-always"}
data=${DATA:-target/kv-aof-compare/data}
out=
doc=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
  --reps) reps=$2; shift 2 ;;
  --requests) requests=$2; shift 2 ;;
  --clients) clients=$2; shift 2 ;;
  --size) size=$2; shift 2 ;;
  --servers) servers=$2; shift 2 ;;
  --data) data=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --doc) doc=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "kv_aof_compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v redis-benchmark >/dev/null 2>&1; then
  echo "kv_aof_compare: installing redis-tools" >&2
  apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
fi
if [[ $servers == *redis-* ]] && ! command -v redis-server >/dev/null 2>&1; then
  echo "kv_aof_compare: installing redis-server" >&2
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  # The package starts a system instance on 6379; it is not the one measured.
  service redis-server stop >/dev/null 2>&1 || true
fi

out=${out:-target/kv-aof-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" "$data"
data=$(cd "$data" && pwd)
rev=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then rev+="+changes"; fi

echo "kv_aof_compare: building examples/sharded_kv (release)" >&2
cargo build --quiet --release --example sharded_kv
kv_bin=target/release/examples/sharded_kv

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
if ((${#cpus[@]} < 2)); then
  echo "kv_aof_compare: needs two CPUs (server and redis-benchmark pinned apart)" >&2
  exit 1
fi

log=$(mktemp)
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# cpu_ticks PID: utime + stime of the process (all its threads), in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# free_port: a TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# run NAME: one measured run; appends "name rps cpu_ns_per_request p99_ms file_bytes" to runs.tsv.
run() {
  local name=$1 port dir
  port=$(free_port)
  dir=$data/$name
  rm -rf "$dir" && mkdir -p "$dir"
  case $name in
  kv-mem) taskset -c "${cpus[0]}" "$kv_bin" --addr "127.0.0.1:$port" --cores 1 >"$log" 2>&1 & ;;
  kv-everysec | kv-always)
    taskset -c "${cpus[0]}" "$kv_bin" --addr "127.0.0.1:$port" --cores 1 --dir "$dir" \
      --appendfsync "${name#kv-}" >"$log" 2>&1 &
    ;;
  redis-mem)
    taskset -c "${cpus[0]}" redis-server --port "$port" --bind 127.0.0.1 --save "" \
      --appendonly no --dir "$dir" >"$log" 2>&1 &
    ;;
  redis-everysec | redis-always)
    taskset -c "${cpus[0]}" redis-server --port "$port" --bind 127.0.0.1 --save "" \
      --appendonly yes --appendfsync "${name#redis-}" --dir "$dir" >"$log" 2>&1 &
    ;;
  *) echo "kv_aof_compare: unknown server $name" >&2; exit 2 ;;
  esac
  server=$!
  local up=
  for _ in $(seq 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  if [[ -z $up ]]; then
    cat "$log" >&2
    echo "kv_aof_compare: $name did not answer PING" >&2
    exit 1
  fi
  local hz before after report
  hz=$(getconf CLK_TCK)
  before=$(cpu_ticks "$server")
  report=$(taskset -c "${cpus[1]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set \
    -n "$requests" -c "$clients" -d "$size" -r 100000 --csv 2>&1)
  after=$(cpu_ticks "$server")
  kill -TERM "$server"
  wait "$server" || true
  server=
  echo "$report" >"$out/redis-benchmark-$name-$(date +%s%N).csv"
  local bytes rps p99
  bytes=$(du -sb "$dir" | cut -f1)
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  rps=$(awk -F'","' '/^"SET/ { print $2 }' <<<"$report")
  p99=$(awk -F'","' '/^"SET/ { print $7 }' <<<"$report")
  if [[ -z $rps ]]; then
    echo "$report" >&2
    echo "kv_aof_compare: redis-benchmark reported nothing for $name" >&2
    exit 1
  fi
  awk -v n="$name" -v r="$rps" -v t=$((after - before)) -v hz="$hz" -v c="$requests" \
    -v p="$p99" -v b="$bytes" \
    'BEGIN { printf "%s\t%.0f\t%.0f\t%.3f\t%d\n", n, r, t / hz * 1e9 / c, p, b }' \
    >>"$out/runs.tsv"
  rm -rf "$dir"
}

: >"$out/runs.tsv"
read -r -a server_list <<<"$servers"
for rep in $(seq "$reps"); do
  count=${#server_list[@]}
  for ((i = 0; i < count; i++)); do
    name=${server_list[$(((i + rep) % count))]}
    run "$name"
    echo "kv_aof_compare: rep $rep/$reps, $name: $(tail -n 1 "$out/runs.tsv" | cut -f2-4 | tr '\t' ' ') (req/s, ns CPU/req, p99 ms)" >&2
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { awk -F'\t' -v n="$1" -v col="$2" '$1 == n { print $col }' "$out/runs.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

fs_type=$(df -T "$data" | awk 'NR == 2 { print $2 }')
{
  echo "# Persistence: sharded_kv's append-only file vs redis-server's (redis-benchmark SET)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) at $rev on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r), files on $fs_type: one server core on CPU ${cpus[0]}, redis-benchmark on CPU ${cpus[1]} ($requests SETs of $size-byte values over 100,000 keys, $clients connections, no pipelining), medians of $reps runs per server, servers alternating; $(redis-server --version 2>/dev/null | cut -d' ' -f1-3 || echo 'redis-server absent')."
  echo "Command: \`bash benches/kv_aof_compare.sh --reps $reps --requests $requests --clients $clients --size $size --servers \"$servers\"\`"
  echo
  echo "| server | requests/s | server CPU per request (ns) | p99 (ms) | log bytes at the end |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for name in "${server_list[@]}"; do
    echo "| $name | $(stat "$name" 2) | $(stat "$name" 3) | $(stat "$name" 4) | $(stat "$name" 5) |"
  done
  echo
  echo "Ratios (medians):"
  echo
  echo "- sharded_kv everysec / in memory, requests/s: $(ratio "$(stat kv-everysec 2)" "$(stat kv-mem 2)") (target ≥ 0.90)"
  echo "- sharded_kv always / redis-server always, requests/s: $(ratio "$(stat kv-always 2)" "$(stat redis-always 2)") (target > 1)"
  echo "- sharded_kv always / redis-server always, CPU per request: $(ratio "$(stat kv-always 3)" "$(stat redis-always 3)")"
  echo "- sharded_kv in memory / redis-server in memory, requests/s: $(ratio "$(stat kv-mem 2)" "$(stat redis-mem 2)")"
} | tee "$out/summary.md"
if [[ -n $doc ]]; then
  cp "$out/summary.md" docs/benchmarks-kv-aof.md
  echo "kv_aof_compare: wrote docs/benchmarks-kv-aof.md" >&2
fi
echo "kv_aof_compare: runs in $out/runs.tsv" >&2
