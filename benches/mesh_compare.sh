#!/usr/bin/env bash
# Cross-core messaging: coreio's mesh against crossbeam-channel and flume, and the report
# docs/benchmarks-mesh.md.
#
#   benches/mesh_compare.sh             the full run: 5 repetitions, 100,000 round trips and
#                                       5,000,000 messages per measurement (about 5 min on a quiet
#                                       2-CPU machine)
#   benches/mesh_compare.sh --quick     a smoke run of about 10 s (3 reps, 2,000 round trips,
#                                       200,000 messages); add --no-doc to keep the doc as it is
#   benches/mesh_compare.sh --quick --no-doc --out target/mesh-compare/ci     (what CI runs)
#
# Builds benches/micro in release, runs benches/target/release/mesh_compare once (every subject
# and scenario in one process, the subjects interleaved and their order rotated from one
# repetition to the next), keeps its result lines in DIR/results.txt and its progress in
# DIR/progress.log, then writes DIR/benchmarks-mesh.md (`mesh_compare --report` makes the
# tables, this script the header: date, machine, command, coreio revision) and, unless
# --no-doc, copies it to docs/benchmarks-mesh.md. Side A runs on the first CPU this process may
# use and side B on the second; with fewer than two CPUs the script says so and exits 0 without
# measuring. It exits 1 when a measurement failed (the report lists it).
#
# Options (each also read from the environment variable in brackets):
#   --reps N          repetitions (REPS, default 5)
#   --round-trips N   measured round trips per measurement (ROUND_TRIPS, default 100000; a
#                     tenth more are run first as warm-up)
#   --messages N      measured one-way messages per measurement (MESSAGES, default 5000000;
#                     warm-up pass of a tenth)
#   --capacity N      capacity of the one-way channel (CAPACITY, default 1024)
#   --subjects "LIST" subjects, comma-separated (SUBJECTS, default all: coreio-uring,
#                     coreio-uring-spin, coreio-epoll, submit_to-uring, submit_to-epoll,
#                     flume-async-on-coreio, flume-threads, crossbeam-threads)
#   --out DIR         results directory (RESULTS_DIR, default target/mesh-compare/<UTC time>/)
#   --quick           3 reps, 2000 round trips, 200000 messages (options given still win)
#   --no-doc          do not rewrite docs/benchmarks-mesh.md
#   --no-build        use the binary already built
#   -h, --help        print this help
#
# Run it on a quiet machine: with two CPUs, any other busy process shares a CPU with one side.
# The script warns when the CPUs were busy in the 5 s before the run, and the report says how
# much CPU time other jobs took before and during it.
set -euo pipefail

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

usage() { sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
  echo "mesh_compare: $*" >&2
  exit 2
}
note() { echo "mesh_compare: $*" >&2; }

opt_reps=${REPS-} opt_round_trips=${ROUND_TRIPS-} opt_messages=${MESSAGES-}
opt_capacity=${CAPACITY-} opt_subjects=${SUBJECTS-} out_dir=${RESULTS_DIR-}
quick=0 write_doc=1 build=1
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
  --reps | --round-trips | --messages | --capacity | --subjects | --out)
    if ((inline == 0)); then
      (($# >= 2)) || die "$flag needs a value (see --help)"
      value=$2
      shift
    fi
    ;;
  esac
  case $flag in
  --reps) opt_reps=$value ;;
  --round-trips) opt_round_trips=$value ;;
  --messages) opt_messages=$value ;;
  --capacity) opt_capacity=$value ;;
  --subjects) opt_subjects=$value ;;
  --out) out_dir=$value ;;
  --quick) quick=1 ;;
  --no-doc) write_doc=0 ;;
  --no-build) build=0 ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

if ((quick)); then
  reps=${opt_reps:-3} round_trips=${opt_round_trips:-2000} messages=${opt_messages:-200000}
else
  reps=${opt_reps:-5} round_trips=${opt_round_trips:-100000} messages=${opt_messages:-5000000}
fi
capacity=${opt_capacity:-1024}
for pair in "reps:$reps" "round-trips:$round_trips" "messages:$messages" "capacity:$capacity"; do
  [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]] || die "--${pair%%:*} takes a positive whole number, got '${pair#*:}'"
done

# shellcheck source=scripts/allowed_cpus.sh
source "$root/scripts/allowed_cpus.sh"
if ((${#cpus[@]} < 2)); then
  note "skipped: the two sides need two CPUs, and this process may only run on '${cpu_list:-?}'"
  exit 0
fi

out_dir=${out_dir:-target/mesh-compare/$(date -u +%Y%m%dT%H%M%SZ)}
[[ ! -e $out_dir/results.txt ]] || die "$out_dir already holds results; pick a new --out"
mkdir -p "$out_dir"
results=$out_dir/results.txt
bin=$root/benches/target/release/mesh_compare

if ((build)); then
  note "building benches/micro's mesh_compare (release)"
  env -u CARGO_TARGET_DIR cargo build --release --manifest-path benches/Cargo.toml \
    -p coreio-bench-micro --bin mesh_compare
fi
[[ -x $bin ]] || die "no binary at ${bin#"$root"/} (build benches/micro, or drop --no-build)"

args=(--reps "$reps" --round-trips "$round_trips" --messages "$messages" --capacity "$capacity")
[[ -z $opt_subjects ]] || args+=(--subjects "$opt_subjects")
run_command="env -u COREIO_BACKEND benches/target/release/mesh_compare $(shell_quote "${args[@]}")"

# How busy the CPUs were just before the run, from /proc/stat: the load average lags by
# minutes, and during the run it counts the benchmark's own two threads.
cpu_busy_percent() { # seconds
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep "$1"
  read -r -a b < <(grep '^cpu ' /proc/stat)
  awk -v a="${a[*]:1:8}" -v b="${b[*]:1:8}" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= n; i++) { d = y[i] - x[i]; total += d; if (i == 4 || i == 5) idle += d }
    printf "%d", (total > 0 ? 100 * (total - idle) / total : 0)
  }'
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy_before=$(cpu_busy_percent 5)
if ((busy_before > 10)); then
  note "warning: the CPUs were ${busy_before}% busy over the last 5 s: another job is running, and it shares a CPU with one side"
fi
note "results in $out_dir/"
note "running: $run_command"
read -r -a stat_before < <(grep '^cpu ' /proc/stat)
measure_started=$(date +%s.%N)
status=0
env -u COREIO_BACKEND "$bin" "${args[@]}" >"$results" 2> >(tee "$out_dir/progress.log" >&2) || status=$?
measure_ended=$(date +%s.%N)
read -r -a stat_after < <(grep '^cpu ' /proc/stat)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
measure_seconds=$(awk -v a="$measure_started" -v b="$measure_ended" 'BEGIN { printf "%d", b - a + 0.5 }')
# CPU time the other jobs used during the run, roughly: the machine's busy time from /proc/stat
# (user, nice, system, irq, softirq; idle and iowait are not busy, steal is time the hypervisor
# gave to others) less mesh_compare's own (its `mesh-cpu` line), over all CPU time. /proc/stat
# is sampled at clock ticks, so this is good to a few points only.
own_cpu=$(sed -n 's/^mesh-cpu seconds=//p' "$results")
others_during=$(awk -v a="${stat_before[*]:1:8}" -v b="${stat_after[*]:1:8}" \
  -v hz="$(getconf CLK_TCK)" -v own="${own_cpu:-0}" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    busy = 0; total = 0
    for (i = 1; i <= 8; i++) {
      d = y[i] - x[i]; total += d
      if (i != 4 && i != 5 && i != 8) busy += d
    }
    if (total <= 0) { print "unknown"; exit }
    others = busy - own * hz; if (others < 0) others = 0
    printf "about %.0f%% of both CPUs; stolen by the hypervisor: %.1f%%", \
      100 * others / total, 100 * (y[8] - x[8]) / total
  }')
((status == 0)) || die "mesh_compare exited with status $status (see $out_dir/progress.log)"
if ! grep -q '^mesh ' "$results"; then
  note "no measurement was made (see $out_dir/progress.log); no report written"
  exit 0
fi

# ---- the report ----------------------------------------------------------------------------

lscpu_field() { LC_ALL=C lscpu 2>/dev/null | sed -n "s/^$1:[[:space:]]*//p" | head -n 1; }
cpu_model=$(lscpu_field 'Model name')
cpu_model=${cpu_model:-$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)}
hypervisor=$(lscpu_field 'Hypervisor vendor')
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml 2>/dev/null) ]]; then
  revision="$revision + uncommitted changes in src/ or Cargo.toml"
fi
command_line=$invocation
for var in REPS ROUND_TRIPS MESSAGES CAPACITY SUBJECTS RESULTS_DIR; do
  if [[ -n ${!var-} ]]; then
    command_line="$var=$(shell_quote "${!var}") $command_line"
  fi
done
plan=$(grep -m 1 '^mesh-plan ' "$results" || true)
plan_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$plan"; }
thousands() { # 1234567 -> 1,234,567
  local n=$1 grouped=
  while ((${#n} > 3)); do
    grouped=,${n: -3}$grouped
    n=${n:0:${#n}-3}
  done
  echo "$n$grouped"
}

if ((build)); then
  built_text="builds benches/micro (\`cargo build --release --manifest-path benches/Cargo.toml -p coreio-bench-micro --bin mesh_compare\`) and runs"
else
  built_text="runs, with the binary built beforehand (\`--no-build\`)"
fi
report=$out_dir/benchmarks-mesh.md
tables=$("$bin" --report "$results") || die "mesh_compare --report failed"
{
  cat <<EOF
# Cross-core messaging: coreio's mesh, flume and crossbeam-channel

Generated by \`benches/mesh_compare.sh\` (which runs \`mesh_compare\` from benches/micro); rerun
it rather than editing this file. Every figure below comes from the one run described here.

## Run

| | |
| --- | --- |
| date (UTC) | $(date -u +%F) |
| CPU (\`lscpu\` model name) | ${cpu_model:-unknown}${hypervisor:+ (virtual machine, $hypervisor)} |
| CPUs online (\`nproc --all\`) | $(nproc --all) |
| kernel | $(uname -srm) |
| coreio revision | $revision |
| toolchain | $(rustc -V 2>/dev/null || echo unknown) |
| pinning | side A on CPU $(plan_field cpus | cut -d, -f1), side B on CPU $(plan_field cpus | cut -d, -f2) (the first two CPUs this process may use) |
| repetitions | $(plan_field reps), subjects interleaved, their order rotated by one each repetition |
| round trip | $(thousands "$(plan_field round_trips)") measured after $(thousands "$(plan_field warmup_round_trips)") warm-up round trips, channels of capacity 1 |
| throughput | $(thousands "$(plan_field messages)") \`u64\` messages measured after a warm-up pass of $(thousands "$(plan_field warmup_messages)"), channel capacity $(plan_field capacity) |
| CPU time used by other jobs in the 5 s before the run | ${busy_before}% of both CPUs |
| CPU time used by other jobs during the run (\`/proc/stat\` less this run's own) | $others_during |
| load average (1, 5, 15 min) before / after | $load_before / $load_after (the run's own threads count in the latter) |
| measuring time | $measure_seconds s |

Command, from the repository root:

\`\`\`sh
$command_line
\`\`\`

which $built_text:

\`\`\`sh
$run_command
\`\`\`

The machine may have been shared with other jobs during the run; with two CPUs, any other busy
process shares a CPU with one side, so treat differences of a few percent as noise and look at
the spread (min–max) of each figure and at every repetition (the last tables).

## What is measured

* **Round trip** (ping-pong): side A sends a \`u64\` to side B over one channel; B sends it back
  plus one over a second channel; A checks it and sends the next. The figure is wall time per
  round trip, measured by A. Between two messages each side has nothing to do, so this
  measures how fast a waiting side notices a message: a side that blocks (parks its thread)
  must be woken by the other through the kernel, twice per round trip.
* **Throughput** (one way): A sends \`0..N\` as fast as the channel takes them; B sums them and
  sends the sum back after the last one; A checks it. The figure is N divided by the time from
  A's first send to A's receipt of the sum. A waits when the channel is full and B when it is
  empty, so this measures the queue and how often, and how early, each side wakes the other.

Beside each figure, *blocked* counts how often the two sides' threads blocked during the
measured section (the growth of their \`voluntary_ctxt_switches\` in
\`/proc/self/task/TID/status\`): each block is a sleep that the other side had to end with a
kernel wake-up.

The coreio subjects build a two-core runtime per measurement (\`Builder::core_ids\` with the
two CPUs, the backend forced with \`Builder::backend\`) and run A and B as the two cores' root
futures; the thread subjects run A and B on two \`std\` threads pinned with
\`sched_setaffinity\`. The blocking APIs of flume and crossbeam-channel are what "two plain
threads doing the same work" means here.

## Results

$tables

## How to read this

* **Parking against spinning.** A coreio core with nothing to do sleeps in \`io_uring_enter\`
  or \`epoll_wait\` at once (unless \`Builder::spin_before_park\` says otherwise), and flume's
  blocking calls park their thread at once too; crossbeam-channel's blocking calls first spin
  and yield for a few microseconds (its \`Backoff\`), so in a ping-pong where the answer comes
  back within that time neither side ever sleeps. The *blocked* column shows which is which:
  about 2 per round trip for a subject that parks, about 0 for one that spins. The round trip
  of a parking subject is mostly two kernel wake-ups of a sleeping thread, which on a virtual
  machine includes waking an idle virtual CPU; compare crossbeam-threads with
  coreio-uring-spin, and flume-threads with coreio-uring, rather than across the two groups.
* **The io_uring wake is sent at once.** A coreio core that must wake a sleeping io_uring
  core pushes an \`IORING_OP_MSG_RING\` onto its own ring and submits it immediately (coreio
  3e74685). Before that it waited for the core's next submission batch, which saved a system
  call but let a busy sender fill the whole channel before the receiver woke, so the two sides
  took turns: the first full run (coreio 9cbd87e) measured 7.94 Mmsg/s for coreio-uring against
  20.37 for coreio-epoll, with 1.94 blocks per 1000 messages.
* **Spinning in the one-way stream.** When neither side sleeps (coreio-uring-spin), the
  receiver keeps catching up with the sender: each time it finds the channel empty it
  registers its waker (under a lock) and returns \`Pending\`, and the sender's next message
  wakes it through the receiving core's injector queue, which costs the sender a lock and a
  wake too. crossbeam-channel's receiver spins on an empty channel for a while instead, and
  registers nothing.
* **submit_to** boxes the closure, allocates a reply slot and spawns a task on core B for
  every call: three allocations and a spawn per round trip that the channel does not make.
* **flume-async-on-coreio** runs flume's queue with coreio's wakers: the difference from
  coreio-uring is the channel, not the runtime.
EOF
} >"$report"

failed=$(grep -c '^mesh-failed ' "$results" || true)
if ((write_doc)); then
  mkdir -p docs
  cp "$report" docs/benchmarks-mesh.md
  note "wrote docs/benchmarks-mesh.md"
fi
note "report: $report; total time $(($(date +%s) - script_started)) s"
if ((failed > 0)); then
  note "$failed measurement(s) failed (listed in the report)"
  exit 1
fi
