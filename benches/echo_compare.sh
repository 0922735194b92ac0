#!/usr/bin/env bash
# Echo benchmark: coreio against other Rust runtimes' echo servers, one pinned core each.
#
#   benches/echo_compare.sh                  the full grid (long: the estimate is printed first)
#   benches/echo_compare.sh --quick          a smoke test: 1 rep, 1 s runs, conns "1 64", 64 B
#   benches/echo_compare.sh --servers "coreio tokio-ct" --conns "16 64" --sizes 64 --no-doc
#
# For each repetition, each (connections, payload size) and each server in turn (the servers
# interleaved, the first one rotating from repetition to repetition), it starts a fresh server
# pinned to one CPU (`--cores 1`), waits for its banner, runs examples/echo_bench pinned to a
# second CPU, appends echo_bench's JSON line to DIR/results.jsonl and stops the server (SIGTERM,
# then SIGKILL after 2 s). A run that fails is written to DIR/failures.tsv and the script goes
# on; a server whose binary is missing is skipped with a warning. It also records the stripped
# size of each server binary, then benches/report (echo_report) writes DIR/benchmarks.md and
# DIR/benchmarks-echo.svg and, unless --no-doc, copies them to docs/. Each run's server and
# echo_bench output is kept in DIR/logs/.
#
# Options (each also read from the environment variable in brackets):
#   --reps N          repetitions of the whole grid (REPS, default 3)
#   --duration S      measured seconds per run (DURATION, default 3)
#   --warmup S        warm-up seconds per run, not measured (WARMUP, default 1)
#   --conns "LIST"    connection counts (CONNS, default "1 16 64 256 1000")
#   --sizes "LIST"    payload sizes in bytes (SIZES, default "64 1024 16384")
#   --servers "LIST"  servers, in order (SERVERS, default: all of coreio coreio-epoll tokio-ct
#                     tokio-mt smol monoio glommio uring-raw)
#   --open-rate R     also run every cell open-loop at R messages/s in total (OPEN_RATE)
#   --out DIR         results directory (RESULTS_DIR, default target/echo-compare/<UTC time>/)
#   --quick           1 rep, duration 1, warm-up 0.5, conns "1 64", sizes "64" (other options
#                     given still win)
#   --no-doc          do not rewrite docs/benchmarks.md and docs/benchmarks-echo.svg
#   --no-build        use the binaries already built
#   --report-only     run nothing: rewrite the report from the results already in --out DIR
#   --perf            also sample the server with `perf record -g` during each run's measured
#                     window, into DIR/logs/<run>.perf.data (benches/echo_profile.sh reads them)
#   -h, --help        print this help
#
# Spin (environment only): CLIENT_SPIN_US (default 50) is echo_bench's --spin-us, so the load
# generator's own wake-up latency stays out of every server's figures; SERVER_SPIN_US (default
# 50) is the --spin-us of the coreio-spin server.
#
# Servers: coreio (examples/echo, COREIO_BACKEND=uring), coreio-spin (the same with --spin-us:
# an idle core polls before it blocks), coreio-epoll (COREIO_BACKEND=epoll), coreio-owned and
# coreio-epoll-owned (the same with --recv owned: a buffer per connection instead of the
# core's receive pool, for the A/B of multishot receives), coreio-sqpoll (--sqpoll-ms, from
# SQPOLL_MS, default 10: a kernel thread polls the submission queue; its CPU is the server's,
# since it is a thread of the server process), coreio-sqpoll-apart (the same with its thread
# bound by --sqpoll-cpus to SQPOLL_CPUS, by default a third CPU where there is one and else the
# load generator's), coreio-zc (COREIO_ZERO_COPY_MIN from ZC_MIN,
# default 8192: writes that large are zero-copy sends), coreio-nofixed and coreio-owned-nofixed
# (coreio and coreio-owned with COREIO_REGISTERED_FILES=0: no registered file table, for the
# A/B of registered files), coreio-owned-nopf (coreio-owned with COREIO_RECV_POLL_FIRST=0: a
# receive after one that emptied the socket tries before it waits, for the A/B of
# IORING_RECVSEND_POLL_FIRST) and
# the peers benches/target/release/peer-NAME from benches/peers. With fewer than two usable CPUs
# or no working taskset, nothing is pinned (with a warning). Run it on a quiet machine: the
# figures are only as steady as the machine is.
set -euo pipefail

# Quotes words for a shell, readably: only words with other characters than these get quotes.
shell_quote() {
  local word words=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
      words+=("$word")
    else
      words+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${words[*]}"
}

script_started=$(date +%s)
invocation=$(shell_quote "$0" "$@")
cd "$(dirname "$0")/.."
root=$PWD

all_servers="coreio coreio-owned coreio-nofixed coreio-owned-nofixed coreio-owned-nopf coreio-sqpoll coreio-sqpoll-apart coreio-zc coreio-spin coreio-epoll coreio-epoll-owned tokio-ct tokio-mt smol monoio glommio uring-raw"
# The grid's servers unless --servers names others: coreio's defaults on each backend and the peers;
# the coreio variants above are for A/B runs.
default_servers="coreio coreio-epoll tokio-ct tokio-mt smol monoio glommio uring-raw"

# Seconds each run costs beyond duration + warm-up (start, banner, connect, stop); an estimate.
run_overhead_s=1

client_spin_us=${CLIENT_SPIN_US:-50}
server_spin_us=${SERVER_SPIN_US:-50}
[[ $client_spin_us =~ ^[0-9]+$ && $server_spin_us =~ ^[0-9]+$ ]] ||
  { echo "echo_compare: CLIENT_SPIN_US and SERVER_SPIN_US take microseconds" >&2; exit 2; }

usage() {
  sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}
die() {
  echo "echo_compare: $*" >&2
  exit 2
}
warn() { echo "echo_compare: warning: $*" >&2; }
note() { echo "echo_compare: $*" >&2; }

# ---- options -------------------------------------------------------------------------------

opt_reps=${REPS-} opt_duration=${DURATION-} opt_warmup=${WARMUP-} opt_conns=${CONNS-}
opt_sizes=${SIZES-} opt_servers=${SERVERS-} open_rate=${OPEN_RATE-} out_dir=${RESULTS_DIR-}
quick=0 write_doc=1 build=1 report_only=0 perf=0
while (($# > 0)); do
  flag=$1
  value=
  inline=0
  if [[ $flag == --*=* ]]; then
    value=${flag#*=}
    flag=${flag%%=*}
    inline=1
  fi
  case $flag in
  --reps | --duration | --warmup | --conns | --sizes | --servers | --open-rate | --out)
    if ((inline == 0)); then
      (($# >= 2)) || die "$flag needs a value (see --help)"
      value=$2
      shift
    fi
    ;;
  esac
  case $flag in
  --reps) opt_reps=$value ;;
  --duration) opt_duration=$value ;;
  --warmup) opt_warmup=$value ;;
  --conns) opt_conns=$value ;;
  --sizes) opt_sizes=$value ;;
  --servers) opt_servers=$value ;;
  --open-rate) open_rate=$value ;;
  --out) out_dir=$value ;;
  --quick) quick=1 ;;
  --no-doc) write_doc=0 ;;
  --no-build) build=0 ;;
  --report-only) report_only=1 ;;
  --perf) perf=1 ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

if ((quick)); then
  reps=${opt_reps:-1} duration=${opt_duration:-1} warmup=${opt_warmup:-0.5}
  conns_list=${opt_conns:-"1 64"} sizes_list=${opt_sizes:-64}
else
  reps=${opt_reps:-3} duration=${opt_duration:-3} warmup=${opt_warmup:-1}
  conns_list=${opt_conns:-"1 16 64 256 1000"} sizes_list=${opt_sizes:-"64 1024 16384"}
fi
servers_list=${opt_servers:-$default_servers}
open_rate=${open_rate:-0}

[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps takes a positive whole number, got '$reps'"
if ! [[ $duration =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v d="$duration" 'BEGIN { exit !(d > 0) }'; then
  die "--duration takes a positive number of seconds, got '$duration'"
fi
[[ $warmup =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--warmup takes a number of seconds, got '$warmup'"
[[ $open_rate =~ ^[0-9]+$ ]] || die "--open-rate takes whole messages per second, got '$open_rate'"
read -r -a conns_arr <<<"$conns_list"
read -r -a sizes_arr <<<"$sizes_list"
read -r -a servers_arr <<<"$servers_list"
((${#conns_arr[@]} > 0)) || die "--conns is empty"
((${#sizes_arr[@]} > 0)) || die "--sizes is empty"
((${#servers_arr[@]} > 0)) || die "--servers is empty"
for n in "${conns_arr[@]}" "${sizes_arr[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "connection counts and sizes are positive whole numbers, got '$n'"
done
for s in "${servers_arr[@]}"; do
  [[ " $all_servers " == *" $s "* ]] || die "unknown server '$s' (known: $all_servers)"
done

if [[ -z $out_dir ]]; then
  ((report_only == 0)) || die "--report-only needs --out DIR (a directory with results.jsonl)"
  out_dir=target/echo-compare/$(date -u +%Y%m%dT%H%M%SZ)
fi
results=$out_dir/results.jsonl
failures=$out_dir/failures.tsv
sizes_file=$out_dir/binary-sizes.tsv
logs=$out_dir/logs
if ((report_only)); then
  [[ -f $results ]] || die "--report-only: no $results"
else
  [[ ! -e $results ]] || die "$out_dir already holds results; pick a new --out (or --report-only)"
  mkdir -p "$logs"
  : >"$results"
  : >"$failures"
fi

# ---- build ---------------------------------------------------------------------------------

echo_bin=$root/target/release/examples/echo
bench_bin=$root/target/release/examples/echo_bench
report_bin=$root/benches/target/release/echo_report
peer_dir=$root/benches/target/release

server_binary() {
  case $1 in
  coreio*) echo "$echo_bin" ;;
  *) echo "$peer_dir/peer-$1" ;;
  esac
}

# Cargo's own target directories, whatever the caller's environment says.
cargo_build() { env -u CARGO_TARGET_DIR cargo build --release "$@"; }

if ((build)); then
  if ((report_only)); then
    note "building the report writer (release)"
  else
    note "building (release): the report writer, examples echo and echo_bench, the peers"
  fi
  cargo_build --manifest-path benches/Cargo.toml -p coreio-bench-report ||
    die "cannot build the report writer (benches/report)"
  if ((report_only == 0)); then
    cargo_build --example echo || warn "examples/echo did not build: coreio runs will fail"
    cargo_build --example echo_bench || die "cannot build the load generator examples/echo_bench"
    cargo_build --manifest-path benches/Cargo.toml -p coreio-bench-peers ||
      warn "the peers did not build: peers already built (possibly stale) are used, others skipped"
  fi
fi

# ---- machine -------------------------------------------------------------------------------

meta_date=$(date -u +%F)
meta_machine=$(uname -srm)
meta_cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
meta_cpu=${meta_cpu:-unknown}
meta_nproc=$(nproc)
meta_revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD 2>/dev/null; then
  meta_revision="$meta_revision-dirty"
fi
meta_command=$invocation
for var in REPS DURATION WARMUP CONNS SIZES SERVERS OPEN_RATE RESULTS_DIR; do
  if [[ -n ${!var-} ]]; then
    meta_command="$var=$(shell_quote "${!var}") $meta_command"
  fi
done

# shellcheck source=scripts/allowed_cpus.sh
source "$root/scripts/allowed_cpus.sh"
server_pin=()
client_pin=()
pinned_arg=()
if ((${#cpus[@]} >= 2)) && command -v taskset >/dev/null 2>&1 &&
  taskset -c "${cpus[0]}" true 2>/dev/null && taskset -c "${cpus[1]}" true 2>/dev/null; then
  server_pin=(taskset -c "${cpus[0]}")
  client_pin=(taskset -c "${cpus[1]}")
  pinned_arg=(--pinned "${cpus[0]} ${cpus[1]}")
elif ((report_only == 0)); then
  warn "fewer than two usable CPUs or no working taskset: server and load generator NOT pinned"
fi

write_report() {
  [[ -x $report_bin ]] || die "no report writer at $report_bin (build benches/report)"
  "$report_bin" --results "$results" --failures "$failures" --binary-sizes "$sizes_file" \
    --md "$out_dir/benchmarks.md" --svg "$out_dir/benchmarks-echo.svg" \
    --servers "$servers_list" --conns "$conns_list" --sizes "$sizes_list" \
    --date "$meta_date" --machine "$meta_machine" --cpu-model "$meta_cpu" \
    --nproc "$meta_nproc" --command "$meta_command" --revision "${meta_revision:-unknown}" \
    "${pinned_arg[@]}"
  if ((write_doc)); then
    mkdir -p docs
    cp "$out_dir/benchmarks.md" docs/benchmarks.md
    if [[ -f $out_dir/benchmarks-echo.svg ]]; then
      cp "$out_dir/benchmarks-echo.svg" docs/benchmarks-echo.svg
    fi
    note "wrote docs/benchmarks.md and docs/benchmarks-echo.svg"
  fi
}

if ((report_only)); then
  # Metadata of this invocation, not of the original run, unless the run left its own.
  if [[ -f $out_dir/meta.env ]]; then
    # A run recorded before the revision was kept measured an unknown one.
    meta_revision=unknown
    # shellcheck source=/dev/null
    source "$out_dir/meta.env"
  fi
  write_report
  exit 0
fi
declare -p meta_date meta_machine meta_cpu meta_nproc meta_command meta_revision pinned_arg \
  servers_list conns_list sizes_list >"$out_dir/meta.env"

[[ -x $bench_bin ]] || die "no load generator at $bench_bin"
if ((perf)); then
  perf --version >/dev/null 2>&1 ||
    die "--perf needs perf (Debian: apt-get install linux-perf; Ubuntu: linux-tools-\$(uname -r))"
fi

# Raise the open-file limit: 1000 connections need 1000 descriptors on each side.
hard_nofile=$(ulimit -Hn)
if [[ $hard_nofile == unlimited ]]; then
  ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || true
else
  ulimit -n "$hard_nofile" 2>/dev/null || true
fi
if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < 8192)); then
  warn "open-file limit is $(ulimit -n) (hard limit $hard_nofile), under 8192: large runs may fail"
fi

# ---- binary sizes --------------------------------------------------------------------------

: >"$sizes_file"
strip_dir=$(mktemp -d)
seen_binaries=" "
for s in "${servers_arr[@]}"; do
  bin=$(server_binary "$s")
  [[ $seen_binaries == *" $bin "* ]] && continue
  seen_binaries+="$bin "
  name=$(basename "$bin")
  [[ $name == echo ]] && name="coreio examples/echo"
  bytes=
  if [[ -x $bin ]] && cp "$bin" "$strip_dir/b" && strip "$strip_dir/b" 2>/dev/null; then
    bytes=$(stat -c %s "$strip_dir/b")
  fi
  printf '%s\t%s\n' "$name" "$bytes" >>"$sizes_file"
  rm -f "$strip_dir/b"
done
rmdir "$strip_dir"

# ---- the runs ------------------------------------------------------------------------------

# Which servers can run at all.
runnable=()
for s in "${servers_arr[@]}"; do
  bin=$(server_binary "$s")
  if [[ -x $bin ]]; then
    runnable+=("$s")
  else
    warn "skipping $s: no binary at ${bin#"$root"/}"
    printf '*\t%s\t*\t*\t*\t%s\n' "$s" "skipped: no binary at ${bin#"$root"/}" >>"$failures"
  fi
done

passes=1
((open_rate > 0)) && passes=2
total_runs=$((reps * ${#conns_arr[@]} * ${#sizes_arr[@]} * ${#runnable[@]} * passes))
estimate=$(awk -v n="$total_runs" -v d="$duration" -v w="$warmup" -v o="$run_overhead_s" \
  'BEGIN { s = n * (d + w + o); printf "%d runs, about %d min %d s", n, s / 60, s % 60 }')
note "results in ${out_dir}/"
plan="$reps rep(s) x conns {$conns_list} x sizes {$sizes_list} x ${#runnable[@]} server(s)"
((open_rate > 0)) && plan+=" x (closed loop + open loop at $open_rate msgs/s)"
note "plan: $plan"
note "estimated run time: $estimate (duration $duration s + warm-up $warmup s + ~$run_overhead_s s per run)"

# Ports: fresh for every run, below the kernel's ephemeral range so that no client socket holds
# them, and checked with ss when it is there.
ephemeral_low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
port_low=15000
port_high=$((ephemeral_low > port_low + 1000 ? ephemeral_low - 1 : port_low + 9999))
next_port=$((port_low + RANDOM % (port_high - port_low)))
pick_port() {
  local tries
  for ((tries = 0; tries < 1000; tries++)); do
    next_port=$((next_port + 1))
    ((next_port > port_high)) && next_port=$port_low
    if command -v ss >/dev/null 2>&1; then
      [[ -z $(ss -Htan "( sport = :$next_port )" 2>/dev/null) ]] && break
    elif ! (exec 3<>"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; then
      break
    fi
  done
  port=$next_port
}

server_pid=
stop_server() {
  [[ -n $server_pid ]] || return 0
  local i
  kill -TERM "$server_pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    warn "server pid $server_pid ignored SIGTERM for 2 s: SIGKILL"
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT
trap 'stop_server; echo "echo_compare: interrupted; partial results in $out_dir/" >&2; exit 130' INT TERM

# Starts server $1 with its log in $2; sets server_pid and port, or start_error and returns 1.
start_server() {
  local name=$1 slog=$2 bin env_vars=() args=() i line
  bin=$(server_binary "$name")
  case $name in
  coreio) env_vars=(COREIO_BACKEND=uring) ;;
  coreio-spin) env_vars=(COREIO_BACKEND=uring) args=(--spin-us "$server_spin_us") ;;
  coreio-epoll) env_vars=(COREIO_BACKEND=epoll) ;;
  coreio-owned) env_vars=(COREIO_BACKEND=uring) args=(--recv owned) ;;
  coreio-nofixed) env_vars=(COREIO_BACKEND=uring COREIO_REGISTERED_FILES=0) ;;
  coreio-owned-nofixed) env_vars=(COREIO_BACKEND=uring COREIO_REGISTERED_FILES=0) args=(--recv owned) ;;
  coreio-owned-nopf) env_vars=(COREIO_BACKEND=uring COREIO_RECV_POLL_FIRST=0) args=(--recv owned) ;;
  coreio-sqpoll) env_vars=(COREIO_BACKEND=uring) args=(--sqpoll-ms "${SQPOLL_MS:-10}") ;;
  coreio-sqpoll-apart)
    env_vars=(COREIO_BACKEND=uring)
    args=(--sqpoll-ms "${SQPOLL_MS:-10}" --sqpoll-cpus "${SQPOLL_CPUS:-${cpus[2]:-${cpus[1]:-${cpus[0]}}}}")
    ;;
  coreio-zc) env_vars=(COREIO_BACKEND=uring "COREIO_ZERO_COPY_MIN=${ZC_MIN:-8192}") ;;
  coreio-epoll-owned) env_vars=(COREIO_BACKEND=epoll) args=(--recv owned) ;;
  esac
  pick_port
  env "${env_vars[@]}" "${server_pin[@]}" "$bin" --addr "127.0.0.1:$port" --cores 1 "${args[@]}" \
    >"$slog" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 100; i++)); do
    line=$(grep -m 1 ' echo on ' "$slog" 2>/dev/null || true)
    [[ -n $line ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      local status=0
      wait "$server_pid" 2>/dev/null || status=$?
      server_pid=
      start_error="server exited with status $status before its banner: $(tail -n 1 "$slog")"
      return 1
    fi
    sleep 0.1
  done
  if [[ -z $line ]]; then
    stop_server
    start_error="server printed no banner within 10 s"
    return 1
  fi
  if [[ $line != *"127.0.0.1:$port"* ]]; then
    stop_server
    start_error="banner names another address than 127.0.0.1:$port: $line"
    return 1
  fi
  local want=
  case $name in
  coreio | coreio-spin | coreio-owned | coreio-nofixed | coreio-owned-nofixed | coreio-owned-nopf | coreio-sqpoll | coreio-sqpoll-apart | coreio-zc) want="backend io_uring" ;;
  coreio-epoll | coreio-epoll-owned) want="backend epoll" ;;
  esac
  if [[ -n $want && $line != *"$want"* ]]; then
    stop_server
    start_error="asked for ${want#backend }, banner says: $line"
    return 1
  fi
  return 0
}

record_failure() { # rep name mode conns size reason
  local reason=${6//[$'\t\r\n']/ }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${reason:0:400}" >>"$failures"
  warn "FAILED: rep $1 $2 conns $4 size $5 ($3): ${reason:0:400}"
}

declare -A start_failures=()
declare -A dropped=()
client_limit=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 60 }')
runs_done=0 runs_ok=0

# One run: rep, server, conns, size, rate (0 = closed loop).
run_one() {
  local rep=$1 name=$2 conns=$3 size=$4 rate=$5 mode=closed status=0 out line
  ((rate > 0)) && mode=open
  local tag="r$rep-$name-c$conns-s$size-$mode"
  local slog=$logs/$tag.server.log clog=$logs/$tag.client.log
  runs_done=$((runs_done + 1))
  printf 'echo_compare: [%d/%d] rep %d %-12s conns %-4d size %-5d %s\n' \
    "$runs_done" "$total_runs" "$rep" "$name" "$conns" "$size" "$mode" >&2
  start_error=
  if ! start_server "$name" "$slog"; then
    # A port taken between the check and the bind is worth a second try.
    if grep -qi 'in use' "$slog" 2>/dev/null && start_server "$name" "$slog"; then
      start_error=
    fi
  fi
  if [[ -n $start_error ]]; then
    record_failure "$rep" "$name" "$mode" "$conns" "$size" "$start_error"
    start_failures[$name]=$((${start_failures[$name]:-0} + 1))
    if ((start_failures[$name] >= 2)); then
      dropped[$name]=1
      warn "$name failed to start twice in a row: skipping it from now on"
      printf '*\t%s\t*\t*\t*\t%s\n' "$name" \
        "failed to start twice in a row; its later runs were skipped" >>"$failures"
    fi
    return 0
  fi
  start_failures[$name]=0

  local cmd=("${client_pin[@]}" "$bench_bin" --addr "127.0.0.1:$port" --conns "$conns"
    --size "$size" --duration "$duration" --warmup "$warmup" --cores 1 --json
    --server-pid "$server_pid" --label "$name" --spin-us "$client_spin_us")
  ((rate > 0)) && cmd+=(--rate "$rate")
  local perf_pid=
  if ((perf)); then
    # cpu-clock at a fixed rate: every sample stands for the same CPU time, in a VM too.
    (sleep "$warmup" && exec perf record -q -e cpu-clock -F 999 -g -p "$server_pid" \
      -o "$logs/$tag.perf.data" -- sleep "$duration") >"$logs/$tag.perf.log" 2>&1 &
    perf_pid=$!
  fi
  out=$(timeout --kill-after=5 "$client_limit" "${cmd[@]}" 2>"$clog") || status=$?
  [[ -z $perf_pid ]] || wait "$perf_pid" || warn "perf record failed: see $logs/$tag.perf.log"
  local server_died=
  if ! kill -0 "$server_pid" 2>/dev/null; then
    local server_status=0
    wait "$server_pid" 2>/dev/null || server_status=$?
    server_pid=
    server_died="the server exited during the run (status $server_status; last log line: $(tail -n 1 "$slog"))"
  fi
  stop_server

  line=$(printf '%s\n' "$out" | grep '^{.*}$' | tail -n 1 || true)
  local why=
  if ((status == 124 || status == 137)); then
    why="echo_bench did not finish within $client_limit s"
  elif ((status != 0)); then
    why="echo_bench exited with status $status: $(tail -n 1 "$clog")"
    [[ -z $server_died ]] || why+="; $server_died"
  elif [[ -n $server_died ]]; then
    why=$server_died
  elif [[ -z $line ]]; then
    why="echo_bench printed no JSON line"
  fi
  if [[ -n $why ]]; then
    record_failure "$rep" "$name" "$mode" "$conns" "$size" "$why"
    return 0
  fi
  printf '{"rep":%d,%s\n' "$rep" "${line#\{}" >>"$results"
  runs_ok=$((runs_ok + 1))
}

if ((${#runnable[@]} == 0)); then
  warn "no server can run"
fi
for ((rep = 1; rep <= reps; rep++)); do
  # Rotate the first server from one repetition to the next.
  order=()
  n=${#runnable[@]}
  for ((i = 0; i < n; i++)); do
    order+=("${runnable[$(((i + rep - 1) % n))]}")
  done
  rates=(0)
  ((open_rate > 0)) && rates+=("$open_rate")
  for rate in "${rates[@]}"; do
    for size in "${sizes_arr[@]}"; do
      for conns in "${conns_arr[@]}"; do
        for name in "${order[@]}"; do
          if [[ -n ${dropped[$name]-} ]]; then
            runs_done=$((runs_done + 1))
            continue
          fi
          run_one "$rep" "$name" "$conns" "$size" "$rate"
        done
      done
    done
  done
done

runs_failed=$(grep -c . "$failures" || true)
note "$runs_ok run(s) recorded, $runs_failed failure line(s) in $failures"
write_report
elapsed=$(($(date +%s) - script_started))
note "total run time: $((elapsed / 60)) min $((elapsed % 60)) s; results in $out_dir/"
