#!/usr/bin/env bash
# dnsperf against coreio's examples/dns and against the same responder on tokio current_thread
# (benches/peers: peer-dns-tokio, which compiles in the example's answer.rs and zone.rs), one
# server core, side by side in one run: queries/s and server CPU per query, with the ratio to
# tokio. The machine is shared and noisy, so servers alternate within every repetition and the
# summary gives medians.
#
#   bash benches/dns_compare.sh                      3 reps of 10 s, summary printed
#   bash benches/dns_compare.sh --reps 5 --doc       ... and written to docs/benchmarks-udp.md
#
# Options (environment variable in parentheses):
#   --reps N          repetitions (REPS, default 3); each runs every server once, the order
#                     rotating from one repetition to the next
#   --duration S      seconds dnsperf sends per run (DURATION, default 10)
#   --clients N       dnsperf clients (-c; CLIENTS, default 4): source ports, so queries are
#                     spread the way many resolvers' would be
#   --outstanding N   queries in flight at most (-q; OUTSTANDING, default 200)
#   --tasks N         answer loops per server core, sharing its socket (TASKS, default 4), the
#                     same for both runtimes
#   --servers "LIST"  any of coreio coreio-epoll tokio-ct (SERVERS, default all three)
#   --out DIR         results directory (default target/dns-compare/<UTC time>/)
#   --doc             write the summary to docs/benchmarks-udp.md
#   -h, --help        print this help
#
# The server runs on the first allowed CPU, dnsperf on the second. Server CPU is the process's
# utime + stime (from /proc/PID/stat) over the run, divided by the queries dnsperf saw answered.
# dnsperf and dig come from Debian's dnsperf and bind9-dnsutils packages; the script installs
# them with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${REPS:-3}
duration=${DURATION:-10}
clients=${CLIENTS:-4}
outstanding=${OUTSTANDING:-200}
tasks=${TASKS:-4}
servers=${SERVERS:-"coreio coreio-epoll tokio-ct"}
out=
doc=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
  --reps) reps=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --clients) clients=$2; shift 2 ;;
  --outstanding) outstanding=$2; shift 2 ;;
  --tasks) tasks=$2; shift 2 ;;
  --servers) servers=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --doc) doc=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "dns_compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v dnsperf >/dev/null 2>&1; then
  echo "dns_compare: installing dnsperf" >&2
  apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi

out=${out:-target/dns-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
rev=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then rev+="+changes"; fi

echo "dns_compare: building examples/dns and peer-dns-tokio (release)" >&2
cargo build --quiet --release --example dns
cargo build --quiet --release --manifest-path benches/Cargo.toml -p coreio-bench-peers \
  --bin peer-dns-tokio
coreio_bin=target/release/examples/dns
tokio_bin=benches/target/release/peer-dns-tokio

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
if ((${#cpus[@]} < 2)); then
  echo "dns_compare: needs two CPUs (server and dnsperf pinned apart)" >&2
  exit 1
fi

# The query mix: names with records of each type, a missing type, and a missing name.
queries=$out/queries.txt
printf '%s\n' "www.example.com A" "www.example.com AAAA" "www.example.com TXT" \
  "example.com SOA" "ns1.example.com A" "www.example.com MX" "missing.example.com A" >"$queries"

log=$(mktemp)
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# run NAME: one measured run; appends "name qps cpu_ns_per_query avg_latency_us lost" to runs.tsv.
run() {
  local name=$1 addr=
  case $name in
  coreio) COREIO_BACKEND=uring taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 --tasks "$tasks" >"$log" 2>&1 & ;;
  coreio-epoll) COREIO_BACKEND=epoll taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 --tasks "$tasks" >"$log" 2>&1 & ;;
  tokio-ct) taskset -c "${cpus[0]}" "$tokio_bin" --addr 127.0.0.1:0 --cores 1 --tasks "$tasks" >"$log" 2>&1 & ;;
  *) echo "dns_compare: unknown server $name" >&2; exit 2 ;;
  esac
  server=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/.* dns on \([^, ]*\).*/\1/p' "$log" | head -n 1)
    [[ -n $addr ]] && break
    sleep 0.1
  done
  if [[ -z $addr ]]; then
    cat "$log" >&2
    echo "dns_compare: $name printed no banner" >&2
    exit 1
  fi
  local port=${addr##*:} hz before after report
  hz=$(getconf CLK_TCK)
  before=$(cpu_ticks "$server")
  report=$(taskset -c "${cpus[1]}" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$duration" \
    -c "$clients" -q "$outstanding" 2>&1)
  after=$(cpu_ticks "$server")
  kill -TERM "$server"
  wait "$server" || true
  server=
  echo "$report" >"$out/dnsperf-$name-$(date +%s%N).txt"
  local completed qps latency lost
  completed=$(sed -n 's/^ *Queries completed: *\([0-9]*\).*/\1/p' <<<"$report")
  qps=$(sed -n 's/^ *Queries per second: *\([0-9.]*\).*/\1/p' <<<"$report")
  latency=$(sed -n 's/^ *Average Latency (s): *\([0-9.]*\).*/\1/p' <<<"$report")
  lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' <<<"$report")
  if [[ -z $completed || $completed == 0 ]]; then
    echo "$report" >&2
    echo "dns_compare: dnsperf saw no answer from $name" >&2
    exit 1
  fi
  awk -v n="$name" -v q="$qps" -v c="$completed" -v t=$((after - before)) -v hz="$hz" \
    -v l="$latency" -v lost="$lost" \
    'BEGIN { printf "%s\t%.0f\t%.0f\t%.1f\t%d\n", n, q, t / hz * 1e9 / c, l * 1e6, lost }' \
    >>"$out/runs.tsv"
}

: >"$out/runs.tsv"
read -r -a server_list <<<"$servers"
for rep in $(seq "$reps"); do
  count=${#server_list[@]}
  for ((i = 0; i < count; i++)); do
    name=${server_list[$(((i + rep) % count))]}
    run "$name"
    echo "dns_compare: rep $rep/$reps, $name: $(tail -n 1 "$out/runs.tsv" | cut -f2-3 | tr '\t' ' ') (q/s, ns CPU/query)" >&2
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { awk -F'\t' -v n="$1" -v col="$2" '$1 == n { print $col }' "$out/runs.tsv" | median; }

tokio_cpu=$(stat tokio-ct 3)
tokio_qps=$(stat tokio-ct 2)
{
  echo "# UDP: DNS responder, coreio vs tokio (dnsperf)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) at $rev on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r): one server core on CPU ${cpus[0]}, dnsperf on CPU ${cpus[1]} (${clients} clients, at most ${outstanding} queries in flight, ${duration} s per run; ${tasks} answer loops per server core), medians of $reps runs per server, servers alternating."
  echo "Command: \`bash benches/dns_compare.sh --reps $reps --duration $duration --clients $clients --outstanding $outstanding --tasks $tasks --servers \"$servers\"\`"
  echo
  echo "Both servers run the same answer code (examples/dns/answer.rs) on the built-in zone; the query mix is seven names and types (answers, a missing type, a missing name)."
  echo
  echo "| server | queries/s | server CPU per query (ns) | CPU/query vs tokio | queries/s vs tokio | mean latency (µs) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for name in "${server_list[@]}"; do
    awk -v n="$name" -v q="$(stat "$name" 2)" -v c="$(stat "$name" 3)" -v l="$(stat "$name" 4)" \
      -v tc="$tokio_cpu" -v tq="$tokio_qps" 'BEGIN {
        printf "| %s | %.0f | %.0f | %s | %s | %.0f |\n", n, q, c,
          (tc > 0 ? sprintf("%.2f", c / tc) : "n/a"), (tq > 0 ? sprintf("%.2f", q / tq) : "n/a"), l }'
  done
} | tee "$out/summary.md"
if [[ -n $doc ]]; then
  cp "$out/summary.md" docs/benchmarks-udp.md
  echo "dns_compare: wrote docs/benchmarks-udp.md" >&2
fi
echo "dns_compare: runs in $out/runs.tsv" >&2
