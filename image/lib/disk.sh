#!/usr/bin/env bash
# Turns a root file-system tree into a self-booting disk image, without loop devices or root
# mounts: MBR with one ext4 partition at 1 MiB (filled by `mkfs.ext4 -d`), GRUB's boot.img in the
# MBR and core.img in the gap before the partition (what grub-install would do, done with dd).
# GRUB then reads /boot/grub/grub.cfg, /vmlinuz and /initrd.img from the ext4 root.
# Usage: image/lib/disk.sh TREE OUT.qcow2 DISK_SIZE COMPRESSION(zstd|zlib|none)
set -euo pipefail
tree=$1 out=$2 size=$3 comp=${4:-zstd}
grubdir=/usr/lib/grub/i386-pc
for t in mkfs.ext4 sfdisk qemu-img grub-mkimage; do
  command -v "$t" >/dev/null || { echo "disk: missing $t (run scripts/install-deps.sh image)" >&2; exit 1; }
done
[[ -f "$grubdir/boot.img" ]] || { echo "disk: missing $grubdir (install grub-pc-bin)" >&2; exit 1; }
raw="$out.raw"
rm -f "$raw"
truncate -s "$size" "$raw"
bytes=$(stat -c %s "$raw")
off=$((1024 * 1024))
# 1. Partition table: one Linux partition from 1 MiB to the end, bootable.
printf 'label: dos\nunit: sectors\nstart=2048, type=83, bootable\n' | sfdisk -q --no-reread --no-tell-kernel "$raw" >/dev/null
# 2. ext4 filled from the tree, inside the partition (mke2fs writes at the byte offset).
blocks=$(((bytes - off) / 4096))
mkfs.ext4 -q -F -L zigral-root -b 4096 -E "offset=$off,root_owner=0:0" -d "$tree" "$raw" "$blocks"
# 3. GRUB: core.img knows where its modules and grub.cfg live: (hd0,msdos1)/boot/grub.
early=$(mktemp)
printf 'set root=(hd0,msdos1)\nset prefix=(hd0,msdos1)/boot/grub\n' > "$early"
core=$(mktemp)
grub-mkimage -O i386-pc -o "$core" -p '(hd0,msdos1)/boot/grub' -c "$early" \
  biosdisk part_msdos ext2 normal linux configfile echo serial terminal test search
rm -f "$early"
core_sectors=$((($(stat -c %s "$core") + 511) / 512))
((core_sectors < 2047)) || { echo "disk: GRUB core.img too big for the MBR gap" >&2; exit 1; }
# boot.img: only the 440 code bytes (keep the partition table); it loads sector 1 = core.img.
dd if="$grubdir/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$core" of="$raw" bs=512 seek=1 conv=notrunc status=none
rm -f "$core"
# 4. qcow2 (compressed: zstd is ~6x faster than zlib at the same size; needs QEMU >= 5.1).
case "$comp" in
  zstd) qemu-img convert -O qcow2 -c -o compression_type=zstd "$raw" "$out.tmp" ;;
  zlib) qemu-img convert -O qcow2 -c "$raw" "$out.tmp" ;;
  none) qemu-img convert -O qcow2 "$raw" "$out.tmp" ;;
  *) echo "disk: unknown compression '$comp' (zstd|zlib|none)" >&2; exit 2 ;;
esac
rm -f "$raw"
mv "$out.tmp" "$out"
