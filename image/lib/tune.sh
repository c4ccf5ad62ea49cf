#!/usr/bin/env bash
# Slims an extracted OS layer in place and makes it bootable on its own:
#   - initramfs with MODULES=list (only the storage/fs modules needed to find the root fs),
#     zstd-compressed, plus the modules the appliance needs early (power button, evdev, fw_cfg);
#   - kernel modules pruned to the list in image/modules.txt and their dependencies;
#   - /vmlinuz and /initrd.img symlinks at the root for the bootloader.
# Usage: image/lib/tune.sh ROOTFS_DIR MODULES_FILE
set -euo pipefail
root=$1 modfile=$2
kver=$(ls "$root/lib/modules" | sort -V | tail -n1)
[[ -n "$kver" ]] || { echo "tune: no kernel in $root/lib/modules" >&2; exit 1; }
moddir="$root/lib/modules/$kver"

# 1. Which modules to keep: the listed names plus everything they depend on (modules.dep).
mapfile -t want < <(grep -vE '^\s*(#|$)' "$modfile" | awk '{print $1}')
keep=$(mktemp)
# modprobe --show-depends prints "insmod /lib/modules/<kver>/<path>" for the module, its
# dependencies and soft dependencies (e.g. ext4 -> crc32c), or "builtin <name>".
for m in "${want[@]}"; do
  chroot "$root" modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' \
    || echo "tune: note: module $m not available (built in or absent)" >&2
done | sed "s|^/lib/modules/$kver/||; s|^/usr/lib/modules/$kver/||" | sort -u > "$keep"
echo "tune: keeping $(wc -l < "$keep") kernel modules ($(echo "${want[@]}" | wc -w) listed)"
# Delete every module not in the keep list, then regenerate modules.dep & co.
(cd "$moddir" && find kernel updates -type f -name '*.ko*' 2>/dev/null || true) | sort > "$keep.all"
comm -23 "$keep.all" "$keep" | (cd "$moddir" && xargs -r rm -f)
find "$moddir" -depth -type d -empty -delete
rm -f "$keep" "$keep.all"
chroot "$root" depmod -a "$kver"

# 2. initramfs: only what finds and mounts the root fs; early-load the appliance's modules.
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' > "$root/etc/initramfs-tools/conf.d/zigral.conf"
# Loaded in the initramfs (init-top) and kept loaded: no udev runs after switch_root, so nothing
# else would load them. button -> "Power Button" input device; evdev -> /dev/input/event*.
grep -vE '^\s*(#|$)' "$modfile" | awk '$2 == "initramfs" {print $1}' > "$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
chroot "$root" update-initramfs -u -k "$kver" >/dev/null
umount "$root/proc"; trap - EXIT
ln -sfn "boot/vmlinuz-$kver" "$root/vmlinuz"
ln -sfn "boot/initrd.img-$kver" "$root/initrd.img"
rm -f "$root"/boot/*.old "$root"/vmlinuz.old "$root"/initrd.img.old
echo "tune: kernel $kver, initrd $(du -h "$root/boot/initrd.img-$kver" | cut -f1), modules $(du -sh "$moddir" | cut -f1)"
