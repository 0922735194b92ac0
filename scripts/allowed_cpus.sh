# shellcheck shell=bash
# Sourced by scripts/demo.sh and benches/echo_compare.sh: sets the array `cpus` to the CPU ids
# this process may run on, expanded from the kernel's Cpus_allowed_list (e.g. "0-3,8").
cpus=()
cpu_list=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)
IFS=, read -r -a cpu_parts <<<"$cpu_list"
for part in "${cpu_parts[@]}"; do
  if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
    for ((cpu = BASH_REMATCH[1]; cpu <= BASH_REMATCH[2]; cpu++)); do cpus+=("$cpu"); done
  elif [[ $part =~ ^[0-9]+$ ]]; then
    cpus+=("$part")
  fi
done
