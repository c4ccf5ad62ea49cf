#!/usr/bin/env bash
# Boots the Zigral appliance image with QEMU, forwarding the control plane, the viewer proxy
# and SSH (and, when asked, the fleet's capacity agent) to 127.0.0.1 on the host, and prints
# how to reach it.
#
#   image/boot.sh [options]
#
# Options (ports also from env ZIGRAL_VM_HTTP_PORT / ZIGRAL_VM_PROXY_PORT / ZIGRAL_VM_SSH_PORT):
#   --image FILE        disk image (default image/build/zigral.qcow2)
#   --http-port N       host port -> guest 8000 (control plane, UI)     (default 8000)
#   --proxy-port N      host port -> guest 6081 (noVNC WebSocket proxy) (default 6081)
#   --ssh-port N        host port -> guest 22   (SSH, the dev-mode door) (default 2222)
#   --agent-port N      host port -> guest 8001 (HAProxy agent-check)    (default: not forwarded;
#                       env ZIGRAL_VM_AGENT_PORT)
#   --profile dev|network  force the listeners' bind address for this boot (kernel argument
#                       ZIGRAL_BIND; implies --kernel-boot). Default: what the image was built with.
#   --kernel-boot       boot the image's kernel and initramfs directly (IMAGE.vmlinux, the
#                       uncompressed kernel entered through its PVH note, else IMAGE.vmlinuz; and
#                       IMAGE.initrd, from image/build.sh; else vmlinuz/initrd.img beside it): the
#                       default when IMAGE.vmlinuz exists (skips BIOS disk reads by GRUB, seconds
#                       faster under TCG)
#   --disk-boot         boot the disk itself (GRUB in the MBR), as a cloud or another hypervisor does
#   --append "ARGS"     extra kernel arguments (implies --kernel-boot)
#   --ssh-key FILE      authorize this public key at boot (QEMU fw_cfg opt/zigral/authorized_keys)
#   --admin-password-file FILE  first-boot admin password (fw_cfg opt/zigral/admin_password)
#   --appliance-name NAME  the appliance's name in a fleet, a DNS label (fw_cfg
#                       opt/zigral/appliance_name, as deploy/nomad passes it)
#   --user-data FILE    fleet settings, ZIGRAL_<SETTING>=value lines (fw_cfg opt/zigral/user-data)
#   --seed FILE         attach FILE read-only as a second virtio disk: a NoCloud seed (ISO 9660
#                       labelled cidata with meta-data and user-data, as KubeVirt writes it)
#   --overlay FILE      write disk changes to a qcow2 overlay FILE backed by the image (created
#                       if missing); the image itself stays pristine
#   --snapshot          discard all disk changes when QEMU exits
#   --mem MiB           guest memory (default 2048)      --smp N   vCPUs (default 2)
#   --accel auto|tcg|kvm  auto (default): KVM only when the host CPU has vmx/svm (a nested
#                       software KVM such as PVM starts but crawls), else TCG
#   --serial-log FILE   serial console to FILE instead of this terminal (no interactive console)
#   --monitor SOCK      QEMU monitor on a Unix socket (e.g. for `system_powerdown`)
#   --dry-run           print the QEMU command and exit
# Interactive console: Ctrl-a x quits QEMU (a power cut); Ctrl-a c then `system_powerdown`
# presses the ACPI power button (clean shutdown: services stopped in order, disk synced).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "image/boot.sh: error: $*" >&2; exit 1; }

image="$here/build/zigral.qcow2"
http_port=${ZIGRAL_VM_HTTP_PORT:-8000} proxy_port=${ZIGRAL_VM_PROXY_PORT:-6081} ssh_port=${ZIGRAL_VM_SSH_PORT:-2222}
agent_port=${ZIGRAL_VM_AGENT_PORT:-}
profile="" kernel_boot=auto append="" ssh_key="" pw_file="" overlay="" snapshot=0 mem=2048 smp=2
appliance_name="" user_data="" seed=""
accel=auto serial_log="" monitor="" dry=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --http-port) http_port=$2; shift 2 ;;
    --proxy-port) proxy_port=$2; shift 2 ;;
    --ssh-port) ssh_port=$2; shift 2 ;;
    --agent-port) agent_port=$2; shift 2 ;;
    --profile) profile=$2; kernel_boot=1; shift 2 ;;
    --kernel-boot) kernel_boot=1; shift ;;
    --disk-boot) kernel_boot=0; shift ;;
    --append) append=$2; kernel_boot=1; shift 2 ;;
    --ssh-key) ssh_key=$2; shift 2 ;;
    --admin-password-file) pw_file=$2; shift 2 ;;
    --appliance-name) appliance_name=$2; shift 2 ;;
    --user-data) user_data=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --overlay) overlay=$2; shift 2 ;;
    --snapshot) snapshot=1; shift ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --serial-log) serial_log=$2; shift 2 ;;
    --monitor) monitor=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ -f "$image" ]] || die "no image at $image: build it with image/build.sh"
for p in "$http_port" "$proxy_port" "$ssh_port" ${agent_port:+"$agent_port"} "$mem" "$smp"; do
  [[ "$p" =~ ^[0-9]+$ ]] || die "ports, --mem and --smp must be numbers (got '$p')"
done
bind=""
case "$profile" in
  "") ;; dev) bind=127.0.0.1 ;; network) bind=0.0.0.0 ;;
  *) die "--profile must be dev or network, not '$profile'" ;;
esac
[[ -z "$ssh_key" || -r "$ssh_key" ]] || die "--ssh-key $ssh_key: not readable"
[[ -z "$pw_file" || -r "$pw_file" ]] || die "--admin-password-file $pw_file: not readable"
[[ -z "$appliance_name" || "$appliance_name" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
  die "--appliance-name must be a DNS label (a-z, 0-9 and '-', at most 63), not '$appliance_name'"
[[ -z "$user_data" || -r "$user_data" ]] || die "--user-data $user_data: not readable"
[[ -z "$seed" || -r "$seed" ]] || die "--seed $seed: not readable"
for f in "$pw_file" "$user_data" "$seed"; do
  [[ "$f" != *,* ]] || die "$f: QEMU option values cannot hold ',' here: use a path without one"
done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run scripts/install-deps.sh image"

case "$accel" in
  auto)
    if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; else accel=tcg; fi ;;
  tcg|kvm) ;;
  *) die "--accel must be auto, tcg or kvm" ;;
esac
if [[ $accel == kvm ]]; then cpu=(-accel kvm -cpu host); else cpu=(-accel tcg,thread=multi -cpu max); fi

disk="$image"
if [[ -n "$overlay" ]]; then
  # An overlay only makes sense on the exact image it was created from: a rebuilt image under
  # an old overlay reads as a corrupt file system. Remember the image's build stamp.
  stamp=$(cat "$image.stamp" 2>/dev/null || stat -c %Y "$image")
  if [[ -f "$overlay" ]]; then
    [[ "$(cat "$overlay.base-stamp" 2>/dev/null)" == "$stamp" ]] ||
      die "$overlay was made on an earlier build of $image; delete it (its changes are lost) or pass another --overlay"
  else
    qemu-img create -q -f qcow2 -b "$(realpath "$image")" -F qcow2 "$overlay"
    echo "$stamp" > "$overlay.base-stamp"
  fi
  disk="$overlay"
fi
fwd="hostfwd=tcp:127.0.0.1:$http_port-:8000,hostfwd=tcp:127.0.0.1:$proxy_port-:6081,hostfwd=tcp:127.0.0.1:$ssh_port-:22"
[[ -n "$agent_port" ]] && fwd+=",hostfwd=tcp:127.0.0.1:$agent_port-:8001"
args=(qemu-system-x86_64 -name zigral "${cpu[@]}" -smp "$smp" -m "$mem" -machine pc
  -drive "file=$disk,if=virtio,format=qcow2,cache=writeback,discard=unmap"
  -nic "user,model=virtio-net-pci,$fwd"
  -device virtio-rng-pci -no-reboot)
# The NoCloud seed after the root disk (vdb), read-only, as KubeVirt attaches its cidata ISO.
[[ -n "$seed" ]] && args+=(-drive "file=$seed,if=virtio,format=raw,readonly=on")
((snapshot)) && args+=(-snapshot)
if [[ "$kernel_boot" == auto ]]; then
  if [[ -f "$image.vmlinuz" && -f "$image.initrd" ]]; then kernel_boot=1; else kernel_boot=0; fi
fi
if ((kernel_boot)); then
  kernel="$image.vmlinuz" initrd="$image.initrd"
  # The uncompressed kernel boots through PVH: no real-mode setup, no in-guest decompression.
  [[ -f "$image.vmlinux" ]] && kernel="$image.vmlinux"
  if [[ ! -f "$kernel" || ! -f "$initrd" ]]; then
    kernel="$(dirname "$image")/vmlinuz" initrd="$(dirname "$image")/initrd.img"
  fi
  [[ -f "$kernel" && -f "$initrd" ]] || die "--kernel-boot needs $image.vmlinuz and $image.initrd (or vmlinuz and initrd.img next to it)"
  # Same kernel command line as the disk's GRUB menu (image/grub.cfg, first entry).
  cmdline=$(grep -m1 -E '^\s*linux /vmlinuz' "$here/grub.cfg" | sed -E 's/^\s*linux \/vmlinuz //')
  [[ -n "$bind" ]] && cmdline+=" ZIGRAL_BIND=$bind"
  [[ -n "$append" ]] && cmdline+=" $append"
  args+=(-kernel "$kernel" -initrd "$initrd" -append "$cmdline")
fi
[[ -n "$ssh_key" ]] && args+=(-fw_cfg "name=opt/zigral/authorized_keys,file=$ssh_key")
[[ -n "$pw_file" ]] && args+=(-fw_cfg "name=opt/zigral/admin_password,file=$pw_file")
[[ -n "$appliance_name" ]] && args+=(-fw_cfg "name=opt/zigral/appliance_name,string=$appliance_name")
[[ -n "$user_data" ]] && args+=(-fw_cfg "name=opt/zigral/user-data,file=$user_data")
[[ -n "$monitor" ]] && args+=(-monitor "unix:$monitor,server=on,wait=off")
args+=(-display none)
if [[ -n "$serial_log" ]]; then
  args+=(-serial "file:$serial_log")
  [[ -n "$monitor" ]] || args+=(-monitor none)
elif [[ -n "$monitor" ]]; then
  args+=(-serial stdio)
else
  args+=(-serial mon:stdio)   # Ctrl-a c toggles between the serial console and the monitor
fi

if ((dry)); then printf '%q ' "${args[@]}"; echo; exit 0; fi

profile_note=${profile:-"as built ($(sed -n 's/^profile=//p' "$image.release" 2>/dev/null || echo network))"}
cat >&2 <<EOF
Zigral appliance: booting $(basename "$disk") with QEMU ($accel, $smp vCPU, $mem MiB), profile $profile_note.
Under TCG (no KVM) expect ~8 s to the control plane and ~20 s until Chromium is up (kernel
boot; ~8 s more through GRUB). zigral-init prints the boot timeline once everything is ready.
  UI and API   http://127.0.0.1:$http_port/        (network profile)
  viewer proxy ws://127.0.0.1:$proxy_port/${agent_port:+
  agent        127.0.0.1:$agent_port (HAProxy agent-check: one line, N% free desktop slots)}
  login        user 'admin'; the password is printed ONCE on this console at first boot
               (or the one given at build time / with --admin-password-file)
  SSH          ssh -p $ssh_port zigral@127.0.0.1   (key-only: build with --ssh-key or boot with --ssh-key)
  dev profile  ssh -p $ssh_port -N -L 8000:127.0.0.1:8000 -L 6081:127.0.0.1:6081 zigral@127.0.0.1
               then open http://127.0.0.1:8000/
  stop         clean: Ctrl-a c, then 'system_powerdown' (ACPI power button); hard: Ctrl-a x
EOF
exec "${args[@]}"
