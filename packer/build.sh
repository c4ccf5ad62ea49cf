#!/usr/bin/env bash
# Builds the appliance image with Packer (Debian's packer 1.6.6 works; newer Packer: see README).
#   packer/build.sh [--base IMAGE] [--disk-size 8G] [--admin-password-file F] [--ssh-key PUB]
#                   [--accel tcg|kvm]
# 1. the base image: image/build.sh (cached OS layer; seconds when warm) unless --base is given;
# 2. the Zigral layer payload (image/build.sh --payload) and a throw-away SSH key for Packer;
# 3. packer build: boot the base under QEMU, upload + install the layer over SSH, seal, power off;
# 4. recompress the result with zstd -> packer/build/zigral.qcow2.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "packer/build.sh: error: $*" >&2; exit 1; }
base="" disk_size=8G pw_file="" ssh_key="" accel=tcg
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --disk-size) disk_size=$2; shift 2 ;;
    --admin-password-file) pw_file=$2; shift 2 ;;
    --ssh-key) ssh_key=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
command -v packer >/dev/null || die "packer missing: run scripts/install-deps.sh image"
out="$here/build"
mkdir -p "$out"
if [[ -z "$base" ]]; then
  "$repo/image/build.sh"
  base="$repo/image/build/zigral.qcow2"
fi
[[ -f "$base" ]] || die "no base image at $base"
"$repo/image/build.sh" --payload "$out/payload"
rm -f "$out/packer_key" "$out/packer_key.pub"
ssh-keygen -q -t ed25519 -N '' -C packer-build -f "$out/packer_key"
vars=(-var "base_image=$(realpath "$base")" -var "payload_dir=$out/payload" -var "disk_size=$disk_size"
      -var "ssh_private_key_file=$out/packer_key" -var "output_directory=$out/output" -var "accelerator=$accel")
if [[ -n "$ssh_key" ]]; then vars+=(-var "admin_ssh_public_key=$(head -n1 "$ssh_key")"); fi
if [[ -n "$pw_file" ]]; then vars+=(-var "admin_password=$(head -n1 "$pw_file")"); fi
rm -rf "$out/output"
echo "[packer] packer build (boots the base image under QEMU $accel; 2-5 min)..."
(cd "$here" && PACKER_LOG=${PACKER_LOG:-0} packer build -force "${vars[@]}" zigral.pkr.hcl)
echo "[packer] recompressing with zstd..."
qemu-img convert -O qcow2 -c -o compression_type=zstd "$out/output/zigral.qcow2" "$out/zigral.qcow2.tmp"
mv "$out/zigral.qcow2.tmp" "$out/zigral.qcow2"
rm -rf "$out/output" "$out/packer_key" "$out/packer_key.pub" "$out/payload"
echo "[packer] done: $out/zigral.qcow2 ($(du -h "$out/zigral.qcow2" | cut -f1)); boot: image/boot.sh --image $out/zigral.qcow2"
