#!/usr/bin/env bash
# Where an echo server's CPU goes: the kernel's TCP work, the readiness and completion machinery
# (io_uring or epoll), the rest of the kernel, and user space, per echoed message.
#
#   benches/echo_profile.sh                       the default servers and cells
#   benches/echo_profile.sh --servers "coreio tokio-ct" --conns 64 --reps 1 --no-doc
#
# It runs benches/echo_compare.sh with --perf (so each server runs exactly as in the comparison:
# pinned to one CPU, the load generator on another), which samples the server with
# `perf record -e cpu-clock -g` during every measured window. Each sample's call stack is then
# put in the first category it matches:
#
#   TCP send     a frame is tcp_sendmsg: the send itself and, on loopback, the delivery of the
#                segment to the receiving socket (softirq work done in the sender's context)
#   TCP receive  a frame is tcp_recvmsg
#   io_uring / epoll
#                a frame belongs to io_uring (io_*, __io_*) or epoll (ep_*, *epoll*): submission,
#                completion, poll arming, task work, waiting
#   other kernel the sample is in the kernel otherwise: syscall entry and exit, scheduling,
#                timers, interrupts
#   user space   the sample is in the server's own code (runtime, application, libc)
#
# The shares, times the run's server CPU per echoed message (schedstat, as in echo_compare),
# give nanoseconds per message in each category; the medians over the repetitions go into
# DIR/profile-echo.md and, unless --no-doc, docs/profile-echo.md.
#
# Options:
#   --servers "LIST"  servers (default "coreio coreio-epoll tokio-ct monoio uring-raw")
#   --conns "LIST"    connection counts (default "16 64 1000")
#   --sizes "LIST"    payload sizes in bytes (default "64")
#   --reps N          repetitions (default 3)
#   --duration S      measured (and sampled) seconds per run (default 3)
#   --warmup S        warm-up seconds per run (default 1)
#   --out DIR         results directory (default target/echo-profile/<UTC time>/)
#   --no-doc          do not write docs/profile-echo.md
#   --no-build        use the binaries already built
#   --report-only     run nothing: rewrite the report from the runs already in --out DIR
#   -h, --help        print this help
#
# Needs perf (Debian: apt-get install linux-perf). perf samples at 999 Hz, which costs the
# server well under 1% of its CPU.
set -euo pipefail

cd "$(dirname "$0")/.."
invocation="benches/echo_profile.sh${*:+ $*}"

die() {
  echo "echo_profile: $*" >&2
  exit 2
}

servers="coreio coreio-epoll tokio-ct monoio uring-raw" conns="16 64 1000" sizes="64"
reps=3 duration=3 warmup=1 out_dir='' write_doc=1 build_flag=() report_only=0
while (($# > 0)); do
  case $1 in
  --servers | --conns | --sizes | --reps | --duration | --warmup | --out)
    (($# >= 2)) || die "$1 needs a value (see --help)"
    case $1 in
    --servers) servers=$2 ;;
    --conns) conns=$2 ;;
    --sizes) sizes=$2 ;;
    --reps) reps=$2 ;;
    --duration) duration=$2 ;;
    --warmup) warmup=$2 ;;
    --out) out_dir=$2 ;;
    esac
    shift
    ;;
  --no-doc) write_doc=0 ;;
  --no-build) build_flag=(--no-build) ;;
  --report-only) report_only=1 ;;
  -h | --help)
    sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
perf --version >/dev/null 2>&1 ||
  die "perf is missing (Debian: apt-get install linux-perf; Ubuntu: linux-tools-\$(uname -r))"
if ((report_only)); then
  [[ -n $out_dir ]] || die "--report-only needs --out DIR (a directory this script filled before)"
  [[ -s $out_dir/runs/results.jsonl ]] || die "--report-only: no $out_dir/runs/results.jsonl"
fi
out_dir=${out_dir:-target/echo-profile/$(date -u +%Y%m%dT%H%M%SZ)}
runs_dir=$out_dir/runs

if ((report_only)); then
  # What the runs were made with, for the report's header.
  if [[ -f $out_dir/meta.env ]]; then
    # shellcheck source=/dev/null
    source "$out_dir/meta.env"
  fi
else
  mkdir -p "$out_dir"
  declare -p invocation servers conns sizes reps duration warmup >"$out_dir/meta.env"
  bash benches/echo_compare.sh --perf --no-doc "${build_flag[@]}" --out "$runs_dir" \
    --servers "$servers" --conns "$conns" --sizes "$sizes" --reps "$reps" \
    --duration "$duration" --warmup "$warmup"
fi

# One line per sampled stack: its category. perf script prints each sample as a block of frames
# (leaf first), blocks separated by blank lines.
categorize() {
  perf script -i "$1" -F ip,sym,dso 2>/dev/null | awk '
    BEGIN { RS = "" }
    {
      n = split($0, frames, "\n")
      cat = ""; leaf_kernel = (frames[1] ~ /\[kernel\.kallsyms\]/)
      for (i = 1; i <= n; i++) {
        split(frames[i], f, " ")
        sym = f[2]
        if (sym == "tcp_sendmsg") { cat = "send"; break }
        if (sym == "tcp_recvmsg") { cat = "recv" }
        if (cat == "" && (sym ~ /^_*io_/ || sym ~ /^ep_/ || sym ~ /epoll/)) { cat = "machinery" }
      }
      if (cat == "") { cat = leaf_kernel ? "kernel" : "user" }
      print cat
    }'
}

# "label conns size rep cpu_ns send recv machinery kernel user" per run, shares in percent.
shares=$out_dir/shares.tsv
: >"$shares"
while IFS= read -r line; do
  field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$line"; }
  label=$(field label) n=$(field conns) size=$(field size) rep=$(field rep)
  cpu=$(field server_cpu_ns_per_msg)
  data=$runs_dir/logs/r$rep-$label-c$n-s$size-closed.perf.data
  if [[ ! -s $data || -z $cpu || $cpu == null ]]; then
    echo "echo_profile: no profile or no CPU figure for $label conns $n size $size rep $rep" >&2
    continue
  fi
  categorize "$data" | awk -v prefix="$label $n $size $rep $cpu" '
    { count[$1]++; total++ }
    END {
      if (total == 0) exit
      printf "%s", prefix
      split("send recv machinery kernel user", order, " ")
      for (i = 1; i <= 5; i++) printf " %.2f", 100 * count[order[i]] / total
      printf " %d\n", total
    }' >>"$shares"
done <"$runs_dir/results.jsonl"

[[ -s $shares ]] || die "no run could be profiled; see $runs_dir/logs/*.perf.log"

report=$out_dir/profile-echo.md
{
  echo "# Where an echo server's CPU goes"
  echo
  echo "Generated by \`benches/echo_profile.sh\`; rerun it rather than editing this file."
  echo
  echo "- Date (UTC): $(date -u +%F)"
  echo "- Machine: \`$(uname -srm)\`, $(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1), $(nproc) CPUs"
  echo "- coreio revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- Command: \`$invocation\`"
  echo "- Each run is an \`echo_compare.sh\` closed-loop run (server on one CPU, load generator on another) of ${duration} s after ${warmup} s of warm-up, sampled by \`perf record -e cpu-clock -F 999 -g\`; $reps repetition(s); every figure is the median over them."
  echo
  echo "Each sample goes to the first category its call stack matches: **TCP send** (a frame is \`tcp_sendmsg\`; on loopback this includes delivering the segment to the client's socket, softirq work done in the sender's context), **TCP receive** (\`tcp_recvmsg\`), **io_uring / epoll** (any io_uring or epoll frame: submission, completion, poll arming, task work, waiting), **other kernel** (syscall entry and exit, scheduling, timers, interrupts), **user space** (runtime, application, libc). Shares times the run's server CPU per echoed message give nanoseconds per message. Note that the socket layer around the TCP calls (looking the socket up, checks, copying the request) lands in **io_uring / epoll** for an io_uring server, whose socket calls run inside io_uring, and in **other kernel** for an epoll server, whose socket calls are syscalls: compare the three columns outside TCP together."
  echo
  echo "The TCP work is the same kernel code whatever the runtime (the same segments through the same stack), though its cost per message moves from run to run with batching, cache state and the machine's other load; what a runtime controls is the part outside TCP. **TCP alone ÷ tokio-ct's CPU** divides a server's TCP work by tokio-ct's whole CPU per message in the same cell: the ratio to tokio-ct that server would have reached in these runs had it spent nothing at all outside TCP."
  echo
  for size in $sizes; do
    for n in $conns; do
      echo "## ${size} B messages, ${n} connections"
      echo
      echo "| server | CPU per message (ns) | TCP send | TCP receive | io_uring / epoll | other kernel | user space | outside TCP (last three) | TCP alone ÷ tokio-ct's CPU | samples |"
      echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      # tokio-ct's median CPU per message in this cell, the yardstick of the next-to-last column.
      yardstick=$(awk -v n="$n" -v size="$size" '$1 == "tokio-ct" && $2 == n && $3 == size { print $5 }' \
        "$shares" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
      for s in $servers; do
        awk -v s="$s" -v n="$n" -v size="$size" -v yardstick="${yardstick:-0}" '
          function median(list, k,   m, i, j, t, v) {
            m = split(list, v, ",")
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
              if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
            return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
          }
          $1 == s && $2 == n && $3 == size {
            runs++
            cpu = cpu (cpu == "" ? "" : ",") $5
            for (i = 6; i <= 10; i++) {
              ns = $5 * $i / 100
              col[i] = col[i] (col[i] == "" ? "" : ",") ns
              pct[i] = pct[i] (pct[i] == "" ? "" : ",") $i
            }
            rest = rest (rest == "" ? "" : ",") ($8 + $9 + $10)
            tcp = tcp (tcp == "" ? "" : ",") ($5 * ($6 + $7) / 100)
            samples += $11
          }
          END {
            if (runs == 0) exit
            printf "| %s | %.0f |", s, median(cpu)
            for (i = 6; i <= 10; i++) printf " %.0f (%.1f%%) |", median(col[i]), median(pct[i])
            printf " %.1f%% |", median(rest)
            if (yardstick > 0) printf " %.2f× |", median(tcp) / yardstick; else printf " – |"
            printf " %d |\n", samples
          }' "$shares"
      done
      echo
    done
  done
  echo "The script keeps the per-run shares (\`shares.tsv\`), the runs' results and their perf data in its --out directory."
} >"$report"

if ((write_doc)); then
  cp "$report" docs/profile-echo.md
  echo "echo_profile: wrote docs/profile-echo.md" >&2
fi
echo "echo_profile: $report" >&2
