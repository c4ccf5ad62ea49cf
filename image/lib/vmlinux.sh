#!/usr/bin/env bash
# Extracts the uncompressed kernel (an ELF vmlinux) from a bzImage, for a PVH direct boot:
# QEMU jumps straight into a vmlinux that has a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), so
# neither the real-mode setup nor the in-guest XZ decompression runs. Under TCG that takes the
# kernel's start from ~2.7 s to ~0.3 s after QEMU starts (measured: make bench-boot).
# Only XZ-compressed kernels (Debian's) are handled. Exits 2 with a note and writes nothing when
# the kernel cannot be extracted or has no PVH entry: image/boot.sh then boots the bzImage.
#
#   image/lib/vmlinux.sh BZIMAGE OUT
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: image/lib/vmlinux.sh BZIMAGE OUT" >&2; exit 64; }
in=$1 out=$2
[[ -f "$in" ]] || { echo "vmlinux: no kernel at $in" >&2; exit 1; }
command -v xz >/dev/null && command -v readelf >/dev/null \
  || { echo "vmlinux: needs xz and readelf (xz-utils, binutils)" >&2; exit 1; }
off=$(LC_ALL=C grep -abo -m1 $'\xfd7zXZ\x00' "$in" | head -n1 | cut -d: -f1 || true)
[[ -n "$off" ]] || { echo "vmlinux: note: $in is not XZ-compressed; no vmlinux (boot.sh boots the bzImage)" >&2; exit 2; }
tmp="$out.tmp"
# --single-stream: the bzImage goes on after the XZ stream; stop at its end.
xz -dc --single-stream < <(tail -c "+$((off + 1))" "$in" 2>/dev/null) > "$tmp"
if [[ "$(head -c4 "$tmp" | od -An -c | tr -d ' ')" != '177ELF' ]] \
   || ! readelf -n "$tmp" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)\|PHYS32_ENTRY'; then
  rm -f "$tmp"
  echo "vmlinux: note: the kernel in $in has no PVH entry; no vmlinux (boot.sh boots the bzImage)" >&2
  exit 2
fi
mv "$tmp" "$out"
