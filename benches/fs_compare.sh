#!/usr/bin/env bash
# File I/O on one core: coreio (io_uring, and epoll's blocking pool) against fio and tokio::fs,
# on one pre-created file. Two parts (issue [8], section 5):
#
#   1. 4 KiB random reads and random writes with O_DIRECT, at each queue depth of --qds: IOPS
#      and CPU per operation, as ratios to fio (the practical limit of the disk);
#   2. buffered sequential reads of the same file from the page cache (read once before each
#      run), --seq-bs per read, queue depth 1: GB/s and CPU per GB, as ratios to fio.
#
#   bash benches/fs_compare.sh                          3 reps of 10 s per cell, summary printed
#   bash benches/fs_compare.sh --reps 3 --duration 5 --doc   ... and written to docs/benchmarks-files.md
#
# Options (environment variable in parentheses):
#   --reps N            repetitions (REPS, default 3); each runs every subject once in every
#                       cell, the order of the subjects rotating from cell to cell and rep to rep
#   --duration S        measured seconds per run (DURATION, default 10)
#   --warmup S          seconds per run before the measured ones (WARMUP, default 1)
#   --dir DIR           where the test file lives (DIR, default /var/tmp/coreio-fsbench); it
#                       must be on a disk file system that takes O_DIRECT (not tmpfs)
#   --size MIB          size of the test file (SIZE_MIB, default 1024); an existing file of
#                       that size is reused, otherwise it is written with zeros and fsynced
#   --qds "LIST"        queue depths of the random cells (QDS, default "1 32")
#   --seq-bs BYTES      block size of the sequential reads (SEQ_BS, default 131072)
#   --parts "LIST"      any of randread randwrite seqread (PARTS, default all three)
#   --subjects "LIST"   any of coreio coreio-epoll fio tokio (SUBJECTS, default all four)
#   --out DIR           results directory (default target/fs-compare/<UTC time>/)
#   --doc               write the summary to docs/benchmarks-files.md
#   -h, --help          print this help
#
# Subjects: coreio and coreio-epoll are benches/micro's fs_load (--backend uring / epoll); tokio
# is benches/peers' peer-fs-tokio (see its doc comment for the tokio pattern); fio is
# `fio --ioengine=io_uring --direct=1 --rw=randread|randwrite --bs=4k --iodepth=N --numjobs=1`
# (buffered: `--direct=0 --rw=read --bs=SEQ_BS --iodepth=1 --fadvise_hint=0`), always with
# `--invalidate=0 --time_based --norandommap --randrepeat=0`. Queue depth N is N tasks on the
# one core for coreio and tokio, fio's iodepth for fio. Every subject runs under
# `taskset -c CPU` on the first allowed CPU, with all its threads (tokio's and epoll's blocking
# pools included).
#
# CPU is measured from outside, the same way for all: utime + stime + cutime + cstime from
# /proc/PID/stat of the process and its children (fio's job is a child of fio), sampled inside
# the measured window, divided by the wall time between the samples and by the subject's own
# operations per second. IOPS are each subject's own count over its own measured window.
# Needs taskset, jq and fio; a missing one is installed with apt-get when run as root, and
# otherwise named, with its package, before anything runs. One CPU is enough.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${REPS:-3}
duration=${DURATION:-10}
warmup=${WARMUP:-1}
dir=${DIR:-/var/tmp/coreio-fsbench}
size_mib=${SIZE_MIB:-1024}
qds=${QDS:-"1 32"}
seq_bs=${SEQ_BS:-131072}
parts=${PARTS:-"randread randwrite seqread"}
subjects=${SUBJECTS:-"coreio coreio-epoll fio tokio"}
out=
doc=

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "fs_compare: $*" >&2; exit 1; }

while (($#)); do
  case $1 in
  --reps) reps=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --dir) dir=$2; shift 2 ;;
  --size) size_mib=$2; shift 2 ;;
  --qds) qds=$2; shift 2 ;;
  --seq-bs) seq_bs=$2; shift 2 ;;
  --parts) parts=$2; shift 2 ;;
  --subjects) subjects=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --doc) doc=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "fs_compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive whole number, got $reps"
[[ $size_mib =~ ^[1-9][0-9]*$ ]] || die "--size wants MiB as a positive whole number, got $size_mib"
[[ $seq_bs =~ ^[1-9][0-9]*$ ]] || die "--seq-bs wants bytes, got $seq_bs"
for value in "$duration" "$warmup"; do
  [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration and --warmup want seconds, got $value"
done
awk -v d="$duration" 'BEGIN { exit !(d >= 1) }' || die "--duration must be at least 1 s"
for qd in $qds; do [[ $qd =~ ^[1-9][0-9]*$ ]] || die "--qds wants positive whole numbers, got $qd"; done
for part in $parts; do
  case $part in randread | randwrite | seqread) ;; *) die "unknown part $part" ;; esac
done
for subject in $subjects; do
  case $subject in coreio | coreio-epoll | fio | tokio) ;; *) die "unknown subject $subject" ;; esac
done

# The tools, each reported by name when it is missing and cannot be installed.
need() {
  local tool=$1 package=$2
  command -v "$tool" >/dev/null 2>&1 && return
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "fs_compare: $tool is missing, installing the $package package" >&2
    { apt-get install -y -qq "$package" || { apt-get update -qq && apt-get install -y -qq "$package"; }; } \
      >/dev/null 2>&1 || true
  fi
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing (Debian package $package; install it, e.g. apt-get install $package)"
}
need taskset util-linux
need jq jq
if [[ " $subjects " == *" fio "* ]]; then need fio fio; fi

# The file system: O_DIRECT needs a disk file system, and a tmpfs would measure memory.
mkdir -p "$dir"
fstype=$(df --output=fstype "$dir" | tail -n 1)
case $fstype in
tmpfs | ramfs | overlayfs | nfs* | fuse*) die "$dir is on $fstype: give --dir a directory on a local disk file system (ext4, xfs, btrfs)" ;;
esac
device=$(df --output=source "$dir" | tail -n 1)

out=${out:-target/fs-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/logs"
rev=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then rev+="+changes"; fi

echo "fs_compare: building fs_load and peer-fs-tokio (release)" >&2
target_dir=${CARGO_TARGET_DIR:-benches/target}
cargo build --quiet --release --manifest-path benches/Cargo.toml -p coreio-bench-micro --bin fs_load
cargo build --quiet --release --manifest-path benches/Cargo.toml -p coreio-bench-peers \
  --bin peer-fs-tokio
coreio_bin=$target_dir/release/fs_load
tokio_bin=$target_dir/release/peer-fs-tokio
[[ -x $coreio_bin && -x $tokio_bin ]] || die "the binaries are not in $target_dir/release"

# shellcheck source=scripts/allowed_cpus.sh
source scripts/allowed_cpus.sh
((${#cpus[@]} >= 1)) || die "cannot read this process's allowed CPUs"
cpu=${cpus[0]}

file=$dir/data
size=$((size_mib * 1024 * 1024))
if [[ ! -f $file || $(stat -c %s "$file") != "$size" ]]; then
  echo "fs_compare: writing $file ($size_mib MiB of zeros, fsynced)" >&2
  dd if=/dev/zero of="$file" bs=1M count="$size_mib" conv=fsync status=none
fi

duration_ms=$(awk -v s="$duration" 'BEGIN { printf "%d", s * 1000 }')
warmup_ms=$(awk -v s="$warmup" 'BEGIN { printf "%d", s * 1000 }')
# The CPU samples sit this far inside the measured window at each end.
margin=$(awk -v d="$duration" 'BEGIN { m = d / 10; if (m > 0.5) m = 0.5; print m }')

# cpu_ticks PID: utime + stime of the process and of its waited-for children, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# tree_ticks PID: cpu_ticks of PID and of its children.
tree_ticks() {
  local total pid
  total=$(cpu_ticks "$1")
  for pid in $(pgrep -P "$1" || true); do total=$((total + $(cpu_ticks "$pid"))); done
  echo "$total"
}
now_ns() { date +%s%N; }
hz=$(getconf CLK_TCK)

child=
cleanup() { if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then kill -KILL "$child" || true; fi; }
trap cleanup EXIT

# command_for SUBJECT PART QD BS: the command line of one run, as words.
command_for() {
  local subject=$1 part=$2 qd=$3 bs=$4 direct=() rw
  [[ $part == seqread ]] || direct=(--direct)
  case $subject in
  coreio) cmd=("$coreio_bin" --backend uring) ;;
  coreio-epoll) cmd=("$coreio_bin" --backend epoll) ;;
  tokio) cmd=("$tokio_bin") ;;
  fio)
    case $part in randread) rw=randread ;; randwrite) rw=randwrite ;; seqread) rw=read ;; esac
    cmd=(fio --name=fs_compare "--filename=$file" --ioengine=io_uring "--rw=$rw" "--bs=$bs"
      "--iodepth=$qd" --numjobs=1 --invalidate=0 --time_based "--runtime=${duration_ms}ms"
      "--ramp_time=${warmup_ms}ms" --norandommap --randrepeat=0 --output-format=json)
    if [[ $part == seqread ]]; then cmd+=(--direct=0 --fadvise_hint=0); else cmd+=(--direct=1); fi
    return
    ;;
  esac
  cmd+=(--file "$file" --mode "$part" --qd "$qd" --bs "$bs" --duration "$duration"
    --warmup "$warmup" "${direct[@]}")
}

# run SUBJECT PART QD BS: one measured run; appends
# "subject part qd bs ops seconds cpu_fraction self_cpu_seconds" to runs.tsv.
run() {
  local subject=$1 part=$2 qd=$3 bs=$4 log
  log=$out/logs/$subject-$part-qd$qd-$(date +%s%N)
  command_for "$subject" "$part" "$qd" "$bs"
  if [[ $part == seqread ]]; then cat "$file" >/dev/null; fi # back into the page cache
  env -u COREIO_BACKEND taskset -c "$cpu" "${cmd[@]}" >"$log.out" 2>"$log.err" &
  child=$!
  local t0 t1 c0 c1
  sleep "$(awk -v w="$warmup" -v m="$margin" 'BEGIN { print w + m }')"
  c0=$(tree_ticks "$child") t0=$(now_ns)
  sleep "$(awk -v d="$duration" -v m="$margin" 'BEGIN { print d - 2 * m }')"
  c1=$(tree_ticks "$child") t1=$(now_ns)
  if ! wait "$child"; then
    child=
    cat "$log.err" >&2
    die "$subject $part qd $qd failed (its output is in $log.out and $log.err)"
  fi
  child=
  local ops seconds self_cpu
  if [[ $subject == fio ]]; then
    local side=read
    [[ $part == randwrite ]] && side=write
    ops=$(jq ".jobs[0].$side.total_ios" "$log.out")
    seconds=$(jq ".jobs[0].$side.runtime / 1000" "$log.out")
    self_cpu=$(jq '.jobs[0] | (.usr_cpu + .sys_cpu) / 100 * .job_runtime / 1000' "$log.out")
  else
    local line
    line=$(grep '^fs_load ' "$log.out") || die "$subject printed no result line (see $log.out)"
    ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$line")
    seconds=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")
    self_cpu=$(sed -n 's/.* cpu_seconds=\([0-9.]*\).*/\1/p' <<<"$line")
  fi
  [[ -n $ops && $ops != 0 && $ops != null ]] || die "$subject $part qd $qd completed nothing (see $log.out)"
  awk -v s="$subject" -v p="$part" -v q="$qd" -v b="$bs" -v o="$ops" -v sec="$seconds" \
    -v t=$((c1 - c0)) -v hz="$hz" -v w=$((t1 - t0)) -v self="$self_cpu" \
    'BEGIN { printf "%s\t%s\t%d\t%d\t%d\t%.3f\t%.4f\t%.3f\n", s, p, q, b, o, sec, t / hz / (w / 1e9), self }' \
    >>"$out/runs.tsv"
}

# The cells, in order: "part qd bs".
cells=()
for part in $parts; do
  if [[ $part == seqread ]]; then
    cells+=("seqread 1 $seq_bs")
  else
    for qd in $qds; do cells+=("$part $qd 4096"); done
  fi
done
read -r -a subject_list <<<"$subjects"
count=${#subject_list[@]}
runs=$((reps * ${#cells[@]} * count))
estimate=$(awk -v r="$runs" -v d="$duration" -v w="$warmup" 'BEGIN { printf "%.0f", r * (d + w + 0.5) / 60 }')
echo "fs_compare: $runs runs on CPU $cpu, about $estimate min; results in $out" >&2

: >"$out/runs.tsv"
index=0
for rep in $(seq "$reps"); do
  for cell in "${cells[@]}"; do
    read -r part qd bs <<<"$cell"
    for ((i = 0; i < count; i++)); do
      subject=${subject_list[$(((i + rep + index) % count))]}
      run "$subject" "$part" "$qd" "$bs"
      echo "fs_compare: rep $rep/$reps, $part qd $qd, $subject: $(tail -n 1 "$out/runs.tsv" |
        awk -F'\t' '{ printf "%.0f ops/s, %.0f ns CPU/op", $5 / $6, $7 * $6 / $5 * 1e9 }')" >&2
    done
    index=$((index + 1))
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# cell_stat SUBJECT PART QD WHAT: the median over the reps of ops/s ("rate"), bytes/s ("bw"), CPU
# ns per op ("cpu"); "min"/"max" of ops/s.
cell_stat() {
  awk -F'\t' -v s="$1" -v p="$2" -v q="$3" -v what="$4" '$1 == s && $2 == p && $3 == q {
    rate = $5 / $6
    if (what == "rate" || what == "min" || what == "max") print rate
    else if (what == "bw") print rate * $4
    else if (what == "cpu") print $7 / rate * 1e9
  }' "$out/runs.tsv" | case $4 in min) sort -g | head -n 1 ;; max) sort -g | tail -n 1 ;; *) median ;; esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "nan" && b != "nan") printf "%.2f", a / b; else print "n/a" }'; }
has() { [[ " $subjects " == *" $1 "* ]]; }

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
command="bash benches/fs_compare.sh --reps $reps --duration $duration --warmup $warmup --dir $dir --size $size_mib --qds \"$qds\" --seq-bs $seq_bs --parts \"$parts\" --subjects \"$subjects\""
{
  echo "# Files: coreio against fio and tokio::fs (O_DIRECT random I/O, cached sequential reads)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) at $rev on $(nproc) CPUs ($cpu_model), Linux $(uname -r), file system $fstype on $device: every subject pinned to CPU $cpu with all its threads (\`taskset -c $cpu\`), one $size_mib MiB file in $dir, $warmup s of warm-up then $duration s measured per run, medians of $reps runs per subject and cell, the subjects interleaved (their order rotating from cell to cell)."
  echo "Command: \`$command\`"
  echo
  echo "Subjects: \`coreio\` and \`coreio-epoll\` are benches/micro's \`fs_load\` on one core (\`--backend uring\`: each read or write one io_uring submission; \`--backend epoll\`: each one a job on coreio's blocking pool), queue depth N being N tasks, each with its own \`AlignedBuf::for_file\` buffer. \`tokio\` is benches/peers' \`peer-fs-tokio\` on a current_thread runtime: in the random cells N tasks, each moving its aligned buffer into \`spawn_blocking(|| file.read_at(..))\` (or \`write_at\`, std's \`FileExt\`) on a file opened with \`tokio::fs::OpenOptions\` and \`custom_flags(O_DIRECT)\`, which is what \`tokio::fs\` does inside (a \`tokio::fs::File\` keeps one operation in flight and reads into its own unaligned buffer, which O_DIRECT refuses); in the sequential cell a \`tokio::fs::File\` read with \`AsyncReadExt::read\`. \`fio\` is $(fio --version 2>/dev/null || echo fio) with \`--ioengine=io_uring --numjobs=1 --iodepth=N --invalidate=0 --time_based --norandommap --randrepeat=0\` and \`--direct=1 --bs=4k\` (random) or \`--direct=0 --bs=$seq_bs --fadvise_hint=0\` (sequential: fio's default POSIX_FADV_SEQUENTIAL hint cut its reads of the cached file to about a fifth in a trial, and no other subject gives a hint)."
  echo
  echo "CPU per operation is the subject's whole process (its threads and fio's job child included) from /proc/PID/stat, sampled inside the measured window, per operation the subject counted. The \"vs fio\" columns are ratios to fio's median in the same cell: above 1 is more IOPS or more CPU than fio."
  if [[ " $parts " == *" randread "* || " $parts " == *" randwrite "* ]]; then
    echo
    echo "## 4 KiB random reads and writes, O_DIRECT"
    echo
    echo "| mode | QD | subject | IOPS | IOPS range | IOPS vs fio | CPU per op (µs) | CPU/op vs fio |"
    echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    for cell in "${cells[@]}"; do
      read -r part qd bs <<<"$cell"
      [[ $part == seqread ]] && continue
      fio_rate=nan fio_cpu=nan
      if has fio; then fio_rate=$(cell_stat fio "$part" "$qd" rate) fio_cpu=$(cell_stat fio "$part" "$qd" cpu); fi
      for subject in "${subject_list[@]}"; do
        rate=$(cell_stat "$subject" "$part" "$qd" rate) cpu_op=$(cell_stat "$subject" "$part" "$qd" cpu)
        awk -v p="$part" -v q="$qd" -v s="$subject" -v r="$rate" -v lo="$(cell_stat "$subject" "$part" "$qd" min)" \
          -v hi="$(cell_stat "$subject" "$part" "$qd" max)" -v c="$cpu_op" -v rr="$(ratio "$rate" "$fio_rate")" \
          -v cr="$(ratio "$cpu_op" "$fio_cpu")" \
          'BEGIN { printf "| %s | %d | %s | %.0f | %.0f–%.0f | %s | %.1f | %s |\n", p, q, s, r, lo, hi, rr, c / 1000, cr }'
      done
    done
    if has coreio; then
      echo
      echo "Targets of issue [8] at the deepest queue depth, coreio (io_uring):"
      echo
      deepest=$(tr ' ' '\n' <<<"$qds" | sort -n | tail -n 1)
      for part in randread randwrite; do
        [[ " $parts " == *" $part "* ]] || continue
        rate=$(cell_stat coreio "$part" "$deepest" rate)
        line="- $part, QD $deepest:"
        if has fio; then
          r=$(ratio "$rate" "$(cell_stat fio "$part" "$deepest" rate)")
          line+=" $r× fio's IOPS (target ≥ 0.9: $(awk -v r="$r" 'BEGIN { print (r >= 0.9 ? "met" : "**not met**") }'));"
        fi
        if has tokio; then
          r=$(ratio "$rate" "$(cell_stat tokio "$part" "$deepest" rate)")
          line+=" $r× tokio::fs's IOPS (target ≥ 3: $(awk -v r="$r" 'BEGIN { print (r >= 3 ? "met" : "**not met**") }'))."
        fi
        echo "$line"
      done
    fi
  fi
  if [[ " $parts " == *" seqread "* ]]; then
    echo
    echo "## Buffered sequential reads from the page cache, $((seq_bs / 1024)) KiB per read, QD 1"
    echo
    echo "The file is read once (\`cat\`) before every run, so every read is a page-cache copy."
    echo
    echo "| subject | GB/s | GB/s range | GB/s vs fio | CPU per GB (s) | CPU/GB vs fio |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    fio_bw=nan fio_cpu=nan
    if has fio; then fio_bw=$(cell_stat fio seqread 1 bw) fio_cpu=$(cell_stat fio seqread 1 cpu); fi
    for subject in "${subject_list[@]}"; do
      bw=$(cell_stat "$subject" seqread 1 bw) cpu_op=$(cell_stat "$subject" seqread 1 cpu)
      awk -v s="$subject" -v b="$bw" -v lo="$(cell_stat "$subject" seqread 1 min)" -v hi="$(cell_stat "$subject" seqread 1 max)" \
        -v bs="$seq_bs" -v c="$cpu_op" -v br="$(ratio "$bw" "$fio_bw")" -v cr="$(ratio "$cpu_op" "$fio_cpu")" \
        'BEGIN { printf "| %s | %.2f | %.2f–%.2f | %s | %.3f | %s |\n", s, b / 1e9, lo * bs / 1e9, hi * bs / 1e9, br, c / bs, cr }'
    done
  fi
} | tee "$out/summary.md"
if [[ -n $doc ]]; then
  cp "$out/summary.md" docs/benchmarks-files.md
  echo "fs_compare: wrote docs/benchmarks-files.md" >&2
fi
echo "fs_compare: runs in $out/runs.tsv" >&2
