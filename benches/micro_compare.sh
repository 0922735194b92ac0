#!/usr/bin/env bash
# Micro-benchmarks of coreio against tokio and smol, and the report docs/benchmarks-micro.md.
#
# Builds benches/micro in release, runs the criterion bench `runtimes` (all runtimes side by
# side in one run) and `task_memory`, then writes docs/benchmarks-micro.md with `micro_report`
# (a Rust program, so no python is needed). Takes a few minutes.
#
# The runs are pinned to CPU 1 with `taskset -c 1` when taskset exists and CPU 1 is usable:
# CPU 0 tends to take more interrupts and housekeeping. Every runtime is single-threaded, and
# criterion's thread only waits while a runtime measures, so one CPU is enough. The build is
# not pinned.
#
# Environment:
#   MICRO_CRITERION_ARGS  criterion options (default: --warm-up-time 1 --measurement-time 3)
#   MICRO_OUT             the report to write (default: docs/benchmarks-micro.md)
#   COREIO_BACKEND        uring | epoll | auto, passed on to coreio (the report says which ran)
#   CARGO_TARGET_DIR      honoured; criterion's results are read from its criterion/ folder
set -euo pipefail

start=$SECONDS
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

manifest=benches/Cargo.toml
target_dir="${CARGO_TARGET_DIR:-$root/benches/target}"
out="${MICRO_OUT:-docs/benchmarks-micro.md}"
read -r -a criterion_args <<<"${MICRO_CRITERION_ARGS:---warm-up-time 1 --measurement-time 3}"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (release)"
cargo build --release --manifest-path "$manifest" -p coreio-bench-micro --bins
cargo bench --manifest-path "$manifest" -p coreio-bench-micro --bench runtimes --no-run

pin=()
pinning="none (taskset missing or CPU 1 not usable)"
if command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
    pin=(taskset -c 1)
    pinning="\`taskset -c 1\` (benchmarks and task_memory on CPU 1)"
fi
prefix="${pin[*]:+${pin[*]} }"
env_prefix="${COREIO_BACKEND:+COREIO_BACKEND=$COREIO_BACKEND }"

bench_cmd="cargo bench --manifest-path $manifest -p coreio-bench-micro --bench runtimes -- ${criterion_args[*]}"
memory_cmd="${target_dir#"$root"/}/release/task_memory"

echo "== criterion: ${env_prefix}${prefix}${bench_cmd}"
${pin[@]+"${pin[@]}"} cargo bench --manifest-path "$manifest" -p coreio-bench-micro --bench runtimes \
    -- "${criterion_args[@]}"

echo "== task_memory: ${env_prefix}${prefix}${memory_cmd}"
mkdir -p "$target_dir/micro"
${pin[@]+"${pin[@]}"} "$target_dir/release/task_memory" | tee "$target_dir/micro/task_memory.txt"

cpu="$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
commands="cargo build --release --manifest-path $manifest -p coreio-bench-micro --bins
${env_prefix}${prefix}${bench_cmd}
${env_prefix}${prefix}${memory_cmd}"

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
    revision="$revision + uncommitted changes in src/ or Cargo.toml"
fi

echo "== report: $out"
"$target_dir/release/micro_report" \
    --criterion "$target_dir/criterion" \
    --memory "$target_dir/micro/task_memory.txt" \
    --out "$out" \
    --date "$(date -u +%F)" \
    --machine "$(uname -srm)" \
    --cpu "${cpu:-unknown}" \
    --nproc "$(nproc --all)" \
    --rustc "$(rustc -V)" \
    --pinning "$pinning" \
    --command "$commands" \
    --load-before "$load_before" \
    --load-after "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --revision "$revision" \
    --elapsed "$((SECONDS - start))"
echo "== done in $((SECONDS - start)) s"
