#!/usr/bin/env bash
# wrk (HTTP/1.1) and h2load (HTTP/2, h2c with prior knowledge) against coreio's examples/http
# and against the same hyper service on tokio current_thread (benches/peers: peer-http-tokio,
# which compiles in the example's service.rs and options.rs), one server core, 100 connections,
# side by side in one run (issue [9], section 2): requests/s, server CPU per request and p99
# latency, with the ratios to tokio. The machine is shared and noisy, so servers alternate
# within every repetition and the summary gives medians.
#
#   bash benches/http_compare.sh --quick                      smoke test: 1 rep of 2 s
#   bash benches/http_compare.sh                              3 reps of 10 s, summary printed
#   bash benches/http_compare.sh --reps 3 --duration 5 --doc  ... and written to docs/benchmarks-http.md
#
# Options (environment variable in parentheses):
#   --reps N          repetitions (REPS, default 3); each runs every server once per load, the
#                     order rotating from one repetition to the next
#   --duration S      seconds each load generator runs (DURATION, default 10)
#   --connections N   connections of wrk and of h2load (CONNECTIONS, default 100)
#   --streams N       h2load's concurrent streams per connection (-m; STREAMS, default 10):
#                     multiplexed streams are what HTTP/2 is for, and with 1 a single h2load
#                     thread cannot keep the server core busy, so the rate would be h2load's;
#                     1 gives HTTP/2 wrk's requests in flight, one per connection
#   --path PATH       the route requested (URL_PATH, default /: an 18-byte text body)
#   --servers "LIST"  any of coreio coreio-epoll tokio-ct coreio-oneshot (SERVERS, default the
#                     first three); coreio-oneshot is coreio on io_uring with
#                     COREIO_MULTISHOT_RECV=0: its reads wait on a readiness poll and call
#                     recv(2), as before the poll forms read from a multishot receive;
#                     coreio-multiaccept is coreio with COREIO_MULTISHOT_ACCEPT=1 (one
#                     multishot accept per listener), for the wrk-close load
#   --loads "LIST"    any of wrk h2load wrk-close (LOADS, default wrk h2load); wrk-close is wrk
#                     with `Connection: close`, so that every request is a new connection
#   --quick           1 rep of 2 s (options given after it still win)
#   --out DIR         results directory (default ${CARGO_TARGET_DIR:-target}/http-compare/<UTC time>/)
#   --doc             write the summary to docs/benchmarks-http.md
#   -h, --help        print this help
#
# The server runs on the first allowed CPU (taskset), the load generator on the second. Server
# CPU is the process's utime + stime (from /proc/PID/stat) over the load's run, divided by the
# requests the load generator saw completed. wrk: `wrk -t1 -cN -dSs --latency`, its Requests/sec
# and its 99% latency. h2load (nghttp2 1.52 prints no percentiles): `h2load -t1 -cN -mM -D S
# --log-file=F`, its req/s, and the 99th percentile of the per-request times in its log file.
# wrk and h2load come from Debian's wrk and nghttp2-client packages; the script installs them with
# apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${REPS:-3}
duration=${DURATION:-10}
connections=${CONNECTIONS:-100}
streams=${STREAMS:-10}
url_path=${URL_PATH:-/}
servers=${SERVERS:-"coreio coreio-epoll tokio-ct"}
loads=${LOADS:-"wrk h2load"}
out=
doc=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
  --reps) reps=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --connections) connections=$2; shift 2 ;;
  --streams) streams=$2; shift 2 ;;
  --path) url_path=$2; shift 2 ;;
  --servers) servers=$2; shift 2 ;;
  --loads) loads=$2; shift 2 ;;
  --quick) reps=1; duration=2; shift ;;
  --out) out=$2; shift 2 ;;
  --doc) doc=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "http_compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if ((${#missing[@]})); then
  echo "http_compare: installing ${missing[*]}" >&2
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

out=${out:-${CARGO_TARGET_DIR:-target}/http-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
rev=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then rev+="+changes"; fi

echo "http_compare: building examples/http and peer-http-tokio (release)" >&2
cargo build --quiet --release --example http --features hyper,tokio
cargo build --quiet --release --manifest-path benches/Cargo.toml -p coreio-bench-peers \
  --bin peer-http-tokio
coreio_bin=${CARGO_TARGET_DIR:-target}/release/examples/http
tokio_bin=${CARGO_TARGET_DIR:-benches/target}/release/peer-http-tokio

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
if ((${#cpus[@]} < 2)); then
  echo "http_compare: needs two CPUs (server and load generator pinned apart)" >&2
  exit 1
fi

log=$(mktemp)
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# wrk_us VALUE: one of wrk's latencies (850.00us, 1.23ms, 2.00s) in microseconds.
wrk_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : -1
    if (f < 0) print "nan"; else printf "%.0f", n * f }'
}

# h2count WORD REPORT: the count before WORD in h2load's line "requests: N total, N started,
# N done, N succeeded, N failed, N errored, N timeout".
h2count() {
  awk -v w="$1" '/^requests:/ { for (i = 2; i < NF; i++) if ($(i + 1) ~ "^" w) s += $i }
    END { print s + 0 }' <<<"$2"
}

# run LOAD NAME: one measured run; appends "load name req/s cpu_ns_per_request p99_us errors"
# to runs.tsv.
run() {
  local load=$1 name=$2 addr= tag
  tag=$load-$name-$(date +%s%N)
  case $name in
  coreio) COREIO_BACKEND=uring taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 & ;;
  coreio-epoll) COREIO_BACKEND=epoll taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 & ;;
  coreio-oneshot) COREIO_BACKEND=uring COREIO_MULTISHOT_RECV=0 taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 & ;;
  coreio-multiaccept) COREIO_BACKEND=uring COREIO_MULTISHOT_ACCEPT=1 taskset -c "${cpus[0]}" "$coreio_bin" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 & ;;
  tokio-ct) taskset -c "${cpus[0]}" "$tokio_bin" --addr 127.0.0.1:0 --cores 1 >"$log" 2>&1 & ;;
  *) echo "http_compare: unknown server $name" >&2; exit 2 ;;
  esac
  server=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/.* http on \(http:\/\/\)\{0,1\}\([^, ]*\).*/\2/p' "$log" | head -n 1)
    [[ -n $addr ]] && break
    sleep 0.1
  done
  if [[ -z $addr ]]; then
    cat "$log" >&2
    echo "http_compare: $name printed no banner" >&2
    exit 1
  fi
  case $name in
  coreio | coreio-oneshot | coreio-multiaccept) grep -q "backend io_uring" "$log" || echo "http_compare: warning: coreio is not on io_uring: $(head -n 1 "$log")" >&2 ;;
  coreio-epoll) grep -q 'backend epoll' "$log" || echo "http_compare: warning: coreio-epoll is not on epoll: $(head -n 1 "$log")" >&2 ;;
  esac
  local url=http://$addr$url_path hz before after report
  hz=$(getconf CLK_TCK)
  before=$(cpu_ticks "$server")
  case $load in
  wrk)
    report=$(taskset -c "${cpus[1]}" wrk -t1 -c"$connections" -d"${duration}s" --latency "$url" 2>&1) ;;
  wrk-close)
    report=$(taskset -c "${cpus[1]}" wrk -t1 -c"$connections" -d"${duration}s" --latency \
      -H 'Connection: close' "$url" 2>&1) ;;
  h2load)
    report=$(taskset -c "${cpus[1]}" h2load -t1 -c"$connections" -m"$streams" -D "$duration" \
      --log-file="$out/$tag.log" "$url" 2>&1) ;;
  *) echo "http_compare: unknown load $load" >&2; exit 2 ;;
  esac
  after=$(cpu_ticks "$server")
  kill -TERM "$server"
  wait "$server" || true
  server=
  echo "$report" >"$out/$tag.txt"
  cp "$log" "$out/$tag.server.txt"
  local completed rps p99 errors
  case $load in
  wrk | wrk-close)
    completed=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$report")
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$report")
    p99=$(wrk_us "$(awk '$1 == "99%" { print $2 }' <<<"$report")")
    # Socket errors (connect, read, write, timeout) and non-2xx answers.
    errors=$(awk '/Socket errors:/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) s += $i }
      /Non-2xx/ { s += $NF } END { print s + 0 }' <<<"$report")
    ;;
  h2load)
    completed=$(h2count succeeded "$report")
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$report")
    # Column 3 of the log: microseconds from the request's start to the end of its response;
    # status -1 marks a failed stream.
    p99=$(awk -F'\t' '$2 != -1 { print $3 }' "$out/$tag.log" | sort -n |
      awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else { i = int(NR * 0.99 + 0.999999); print v[i] } }')
    errors=$(($(h2count failed "$report") + $(h2count errored "$report")))
    rm -f "$out/$tag.log"
    ;;
  esac
  if [[ -z $completed || $completed == 0 ]]; then
    echo "$report" >&2
    echo "http_compare: $load saw no answer from $name" >&2
    exit 1
  fi
  awk -v l="$load" -v n="$name" -v r="$rps" -v c="$completed" -v t=$((after - before)) \
    -v hz="$hz" -v p="$p99" -v e="${errors:-0}" \
    'BEGIN { printf "%s\t%s\t%.0f\t%.0f\t%s\t%d\n", l, n, r, t / hz * 1e9 / c, p, e }' \
    >>"$out/runs.tsv"
}

: >"$out/runs.tsv"
read -r -a server_list <<<"$servers"
read -r -a load_list <<<"$loads"
for rep in $(seq "$reps"); do
  count=${#server_list[@]}
  for load in "${load_list[@]}"; do
    for ((i = 0; i < count; i++)); do
      name=${server_list[$(((i + rep) % count))]}
      run "$load" "$name"
      echo "http_compare: rep $rep/$reps, $load, $name: $(tail -n 1 "$out/runs.tsv" | cut -f3-6 | tr '\t' ' ') (req/s, ns CPU/request, p99 µs, errors)" >&2
    done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# stat LOAD NAME COLUMN: the median of that column over the runs of NAME under LOAD.
stat() { awk -F'\t' -v l="$1" -v n="$2" -v col="$3" '$1 == l && $2 == n { print $col }' "$out/runs.tsv" | median; }
# total LOAD NAME COLUMN: the sum of that column over those runs.
total() { awk -F'\t' -v l="$1" -v n="$2" -v col="$3" '$1 == l && $2 == n { s += $col } END { print s + 0 }' "$out/runs.tsv"; }

command="bash benches/http_compare.sh --reps $reps --duration $duration --connections $connections --streams $streams --path $url_path --servers \"$servers\" --loads \"$loads\""
{
  echo "# HTTP: hyper service, coreio vs tokio (wrk, h2load)"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at $rev on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r), a shared 2-CPU VM (other builds may have run during the measurement; the servers alternate within each repetition so that the ratios share that noise): one server core on CPU ${cpus[0]}, the load generator on CPU ${cpus[1]}, ${connections} connections, ${duration} s per run, GET ${url_path}; medians of $reps runs per server and load."
  echo "Command: \`$command\`"
  echo
  echo "Both servers run the same hyper 1.x service (examples/http/service.rs) through hyper-util's auto builder with the same settings (examples/http/server.rs's \`connection_builder\`); coreio's on its own executor and timer (\`COREIO_BACKEND=uring\` and \`epoll\`), tokio's (benches/peers/src/bin/peer-http-tokio.rs) on a \`current_thread\` runtime with \`tokio::spawn\`. HTTP/1.1: \`wrk -t1 -c${connections} -d${duration}s --latency\` (its Requests/sec and 99% latency). HTTP/2: \`h2load -t1 -c${connections} -m${streams} -D ${duration}\`, h2c with prior knowledge, ${streams} concurrent streams per connection ($((connections * streams)) requests in flight: multiplexing is what HTTP/2 is for, and with one stream per connection a single h2load thread sends fewer requests still); nghttp2 $(h2load --version | awk '{ print $2 }' | sed 's/^nghttp2\///') prints no percentiles, so p99 is taken from its \`--log-file\` per-request times. Server CPU is utime + stime from /proc/PID/stat over the run, divided by the completed requests; \"server core busy\" is requests/s × CPU per request: below 100% the load generator, not the server, sets the rate."
  echo
  echo "Targets (issue [9]): server CPU per request ≤ 0.9× tokio's, p99 ≤ tokio's."
  for load in "${load_list[@]}"; do
    tokio_cpu=$(stat "$load" tokio-ct 4)
    tokio_rps=$(stat "$load" tokio-ct 3)
    tokio_p99=$(stat "$load" tokio-ct 5)
    echo
    case $load in
    wrk) echo "## HTTP/1.1 (wrk)" ;;
    wrk-close) echo "## HTTP/1.1, a new connection per request (wrk, Connection: close)" ;;
    h2load) echo "## HTTP/2 (h2load)" ;;
    esac
    echo
    echo "| server | requests/s | server CPU per request (ns) | server core busy | p99 (µs) | errors | CPU/request vs tokio | p99 vs tokio | requests/s vs tokio | CPU target (≤ 0.9) | p99 target (≤ 1.0) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    for name in "${server_list[@]}"; do
      awk -v n="$name" -v r="$(stat "$load" "$name" 3)" -v c="$(stat "$load" "$name" 4)" \
        -v p="$(stat "$load" "$name" 5)" -v e="$(total "$load" "$name" 6)" \
        -v tc="$tokio_cpu" -v tr="$tokio_rps" -v tp="$tokio_p99" 'BEGIN {
          cr = (tc > 0 ? c / tc : -1); pr = (tp > 0 ? p / tp : -1); rr = (tr > 0 ? r / tr : -1)
          ratio = "n/a"; if (cr >= 0) ratio = sprintf("%.2f", cr)
          pratio = "n/a"; if (pr >= 0) pratio = sprintf("%.2f", pr)
          rratio = "n/a"; if (rr >= 0) rratio = sprintf("%.2f", rr)
          if (n == "tokio-ct") { ct = "(baseline)"; pt = "(baseline)" }
          else {
            ct = (cr < 0 ? "n/a" : (cr <= 0.9 ? "met" : "**missed**"))
            pt = (pr < 0 ? "n/a" : (pr <= 1.0 ? "met" : "**missed**"))
          }
          printf "| %s | %.0f | %.0f | %.0f%% | %.0f | %d | %s | %s | %s | %s | %s |\n",
            n, r, c, r * c / 1e7, p, e, ratio, pratio, rratio, ct, pt }'
    done
  done
} | tee "$out/summary.md"
if [[ -n $doc ]]; then
  cp "$out/summary.md" docs/benchmarks-http.md
  echo "http_compare: wrote docs/benchmarks-http.md" >&2
fi
echo "http_compare: runs in $out/runs.tsv" >&2
