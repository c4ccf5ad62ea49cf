#!/usr/bin/env bash
# Boot-time benchmark of the appliance image under QEMU (make bench-boot): first boots (a fresh
# --snapshot each time) through the image's own kernel (boot.sh's default) and through the
# disk's GRUB (the path a cloud takes), one after the other in the same run. Prints `name: value`
# lines: QEMU start -> control plane /readyz 200, QEMU start -> the boot timeline's "all ready"
# (Chromium answering), and zigral-init's boot timeline itself.
#
#   image/boot-bench.sh [--image FILE] [--runs N] [--accel tcg|kvm|auto]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image="$here/build/zigral.qcow2" runs=1 accel=tcg
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "boot-bench: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ -f "$image" ]] || { echo "boot-bench: no image at $image (make image)" >&2; exit 1; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "boot-bench: --runs must be a positive number" >&2; exit 2; }
tmp=$(mktemp -d); pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

declare -A ctl all
for mode in kernel disk; do
  for ((i = 1; i <= runs; i++)); do
    http=$(free_port) proxy=$(free_port) ssh=$(free_port) log="$tmp/$mode-$i.log"
    t0=$EPOCHREALTIME
    "$here/boot.sh" --image "$image" --snapshot --accel "$accel" "--$mode-boot" --http-port "$http" \
      --proxy-port "$proxy" --ssh-port "$ssh" --serial-log "$log" >/dev/null 2>&1 &
    pid=$!
    deadline=$((SECONDS + 600))
    # --max-time: QEMU's user network accepts at once and retries the SYN to the guest with a growing
    # backoff; a request that waited would see the control plane up to ~10 s late.
    until curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$http/readyz"; do
      ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null || { echo "boot-bench: $mode boot never got ready; console:" >&2; tail -20 "$log" >&2; exit 1; }
      sleep 0.2
    done
    c=$(elapsed "$t0")
    until grep -q 'boot timeline: kernel' "$log"; do
      ((SECONDS < deadline)) || { echo "boot-bench: no boot timeline on the console" >&2; exit 1; }
      sleep 0.2
    done
    a=$(elapsed "$t0")
    echo "boot_${mode}_control_ready_s: $c"
    echo "boot_${mode}_all_ready_s: $a"
    echo "boot_${mode}_timeline: $(grep -o 'boot timeline: .*' "$log" | head -n1 | sed 's/^boot timeline: //')"
    ctl[$mode]="${ctl[$mode]:-} $c" all[$mode]="${all[$mode]:-} $a"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }' <<< "$1"; }
k=$(mean "${ctl[kernel]}") d=$(mean "${ctl[disk]}")
echo "boot_kernel_control_ready_mean_s: $k"
echo "boot_disk_control_ready_mean_s: $d"
echo "boot_kernel_vs_disk_control_ready_ratio: $(awk -v a="$k" -v b="$d" 'BEGIN { printf "%.2f", a / b }')"
echo "boot_control_ready_goal_s (issue 16, TCG): 10"
