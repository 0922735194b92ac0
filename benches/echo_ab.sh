#!/usr/bin/env bash
# A/B of coreio's own echo server across two revisions, side by side in one run: the server of
# a base revision (A) against the server of the working tree (B), same load generator, same
# machine state, runs interleaved. For checking that a change to the runtime costs nothing on
# the echo path; the cross-runtime comparison is echo_compare.sh.
#
#   bash benches/echo_ab.sh                       A = HEAD~1
#   bash benches/echo_ab.sh --base a1f3150 --reps 5 --conns "16 64 256" --size 64
#
# Options (environment variable in parentheses):
#   --base REV        the A revision (BASE, default HEAD~1); B is the working tree
#   --reps N          repetitions (REPS, default 5); each runs A and B once per connection
#                     count, in alternating order (A B, then B A, ...) so drift hits both alike
#   --duration S      measured seconds per run (DURATION, default 3)
#   --warmup S        warm-up seconds per run (WARMUP, default 1)
#   --conns "LIST"    connection counts (CONNS, default "16 64 256")
#   --size BYTES      payload size (SIZE, default 64)
#   --backend NAME    uring or epoll (BACKEND, default uring)
#   --out DIR         results directory (default target/echo-ab/<UTC time>/)
#   -h, --help        print this help
#
# The server (examples/echo --cores 1) is pinned to the first allowed CPU and echo_bench to the
# second. Each run's echo_bench JSON line goes to DIR/runs.jsonl; the summary (medians per
# revision and the B/A ratio of server CPU per message, messages/s and p99) is printed and
# written to DIR/summary.md. Nothing under docs/ is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE:-HEAD~1}
reps=${REPS:-5}
duration=${DURATION:-3}
warmup=${WARMUP:-1}
conns=${CONNS:-"16 64 256"}
size=${SIZE:-64}
backend=${BACKEND:-uring}
out=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
  --base) base=$2; shift 2 ;;
  --reps) reps=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --conns) conns=$2; shift 2 ;;
  --size) size=$2; shift 2 ;;
  --backend) backend=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "echo_ab: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

base_rev=$(git rev-parse --short "$base")
head_rev=$(git rev-parse --short HEAD)
dirty=
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then dirty="+changes"; fi
out=${out:-target/echo-ab/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
root=$PWD

# A: the base revision, built in its own worktree and target directory (kept between runs).
base_src=$root/target/echo-ab/src-$base_rev
if [[ ! -d $base_src ]]; then
  git worktree add --detach --quiet "$base_src" "$base_rev"
fi
echo "echo_ab: building A ($base_rev) and B ($head_rev$dirty)" >&2
CARGO_TARGET_DIR=$root/target/echo-ab/target-base cargo build --quiet --release \
  --manifest-path "$base_src/Cargo.toml" --example echo
cargo build --quiet --release --example echo --example echo_bench
server_a=$root/target/echo-ab/target-base/release/examples/echo
server_b=$root/target/release/examples/echo
client=$root/target/release/examples/echo_bench

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
if ((${#cpus[@]} < 2)); then
  echo "echo_ab: needs two CPUs (server and load generator pinned apart)" >&2
  exit 1
fi

log=$(mktemp)
server=
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then kill -KILL "$server" || true; fi
  rm -f "$log"
}
trap cleanup EXIT

# run LABEL SERVER_BINARY CONNS: one measured run, its JSON line appended to runs.jsonl.
run() {
  local label=$1 binary=$2 n=$3 addr=
  COREIO_BACKEND=$backend taskset -c "${cpus[0]}" "$binary" --addr 127.0.0.1:0 --cores 1 \
    >"$log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    addr=$(sed -n 's/^coreio echo on \([^,]*\),.*/\1/p' "$log")
    [[ -n $addr ]] && break
    sleep 0.1
  done
  if [[ -z $addr ]]; then
    cat "$log" >&2
    echo "echo_ab: server $label printed no banner" >&2
    exit 1
  fi
  taskset -c "${cpus[1]}" "$client" --addr "$addr" --server-pid "$server" --conns "$n" \
    --size "$size" --duration "$duration" --warmup "$warmup" --label "$label" --json \
    2>/dev/null | tail -n 1 >>"$out/runs.jsonl"
  kill -TERM "$server"
  wait "$server" || true
  server=
}

: >"$out/runs.jsonl"
for rep in $(seq "$reps"); do
  for n in $conns; do
    if ((rep % 2)); then order="A B"; else order="B A"; fi
    for side in $order; do
      if [[ $side == A ]]; then run A "$server_a" "$n"; else run B "$server_b" "$n"; fi
      echo "echo_ab: rep $rep/$reps, $n conns, $side done" >&2
    done
  done
done

# field NAME: the value of NAME in each JSON line on stdin.
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
stat() { # stat LABEL CONNS FIELD
  grep "\"label\":\"$1\"" "$out/runs.jsonl" | grep "\"conns\":$2," | field "$3" | median
}

{
  echo "# echo A/B: A = $base_rev, B = $head_rev$dirty"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r), backend $backend, $size B messages, medians of $reps runs of ${duration} s, server on CPU ${cpus[0]}, echo_bench on CPU ${cpus[1]}."
  echo "Command: \`bash benches/echo_ab.sh --base $base_rev --reps $reps --duration $duration --warmup $warmup --conns \"$conns\" --size $size --backend $backend\`"
  echo
  echo "| conns | server CPU/msg A (ns) | B (ns) | B/A | msgs/s A | B | B/A | p99 A (µs) | B (µs) | B/A |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for n in $conns; do
    row="| $n"
    for f in server_cpu_ns_per_msg msgs_per_s p99_us; do
      a=$(stat A "$n" "$f")
      b=$(stat B "$n" "$f")
      row+=$(awk -v a="$a" -v b="$b" 'BEGIN { printf " | %.0f | %.0f | %.3f", a, b, (a > 0 ? b / a : 0) }')
    done
    echo "$row |"
  done
} | tee "$out/summary.md"
echo "echo_ab: runs in $out/runs.jsonl" >&2
