#!/usr/bin/env bash
# Builds the Zigral VM appliance image: one command, no Packer needed.
#
#   image/build.sh [options]            -> image/build/zigral.qcow2 (+ .vmlinuz, .initrd)
#
# Stages (each prints a progress line; the slow ones are cached under image/cache/):
#   1. os     mmdebstrap bookworm minbase + image/packages.txt, no systemd   (~3-4 min, cached:
#             key = hash of packages.txt + lib/rootfs.sh)
#   2. base   slimming (MODULES=list initramfs, module pruning), users, no baked identities
#             (~30 s, cached: key = os key + lib/tune.sh + lib/base.sh + modules.txt)
#   3. layer  our binaries, UI, overlay files, /etc/zigral/init.toml for the profile  (~1 s)
#   4. disk   ext4 via mkfs.ext4 -d, GRUB in the MBR gap, qcow2 (zstd)              (~15 s)
# A rebuild with unchanged inputs is a no-op ("up to date"); after a code change only 3-4 run.
#
# Options:
#   --out FILE              output qcow2 (default image/build/zigral.qcow2)
#   --profile network|dev   network (default): control plane :8000 and proxy :6081 bind 0.0.0.0.
#                           dev: every listener binds 127.0.0.1; reach them through an SSH tunnel.
#                           (A kernel argument ZIGRAL_BIND=127.0.0.1|0.0.0.0 overrides at boot.)
#   --ssh-key FILE          public key authorized for `zigral` and `root` (repeatable)
#   --admin-password-file F admin password baked in (else $ZIGRAL_ADMIN_PASSWORD, else generated
#                           at first boot and printed once on the serial console)
#   --disk-size SIZE        virtual disk size (default 4G; sparse, so the file stays small)
#   --compress zstd|zlib|none   qcow2 compression (default zstd; zlib for old QEMU/importers)
#   --bin-dir DIR           where zigral and zigral-init are (default: newest of
#                           $ZIGRAL_BIN_DIR, $CARGO_TARGET_DIR/release, target/release)
#   --ui-dir DIR            built UI (default ui/dist when present)
#   --update-key FILE       minisign public key of signed updates, baked in as /etc/zigral/update.pub
#                           (default: the development key of scripts/update-key.sh)
#   --mirror SRC            apt source for the OS layer (deb822 file or URL; default: host's)
#   --os-only               build/refresh the cached OS+base layers only (CI cache warm-up)
#   --payload DIR           only assemble the layer payload into DIR (used by packer/)
#   --force                 rebuild the disk even when the inputs are unchanged
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
t0=$EPOCHREALTIME
step() { printf '[image %6.1fs] %s\n' "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$*"; }
die() { echo "image/build.sh: error: $*" >&2; exit 1; }

out="$here/build/zigral.qcow2" profile=network disk_size=4G compress=zstd
bin_dir="" ui_dir="" update_key="" mirror="" os_only=0 payload_only="" force=0 pw_file=""
ssh_keys=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --ssh-key) ssh_keys+=("$2"); shift 2 ;;
    --admin-password-file) pw_file=$2; shift 2 ;;
    --disk-size) disk_size=$2; shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --ui-dir) ui_dir=$2; shift 2 ;;
    --update-key) update_key=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --os-only) os_only=1; shift ;;
    --payload) payload_only=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
case "$profile" in network) bind=0.0.0.0 ;; dev) bind=127.0.0.1 ;; *) die "--profile must be network or dev, not '$profile'" ;; esac
case "$compress" in zstd|zlib|none) ;; *) die "--compress must be zstd, zlib or none" ;; esac
[[ "$disk_size" =~ ^[0-9]+[MG]$ ]] || die "--disk-size must look like 4G or 3500M, not '$disk_size'"
for k in "${ssh_keys[@]}"; do
  [[ -r "$k" ]] || die "--ssh-key $k: not readable"
  grep -qE '^(ssh-|ecdsa-|sk-)' "$k" || die "--ssh-key $k: not an OpenSSH public key"
done
admin_pw="${ZIGRAL_ADMIN_PASSWORD:-}"
if [[ -n "$pw_file" ]]; then
  [[ -r "$pw_file" ]] || die "--admin-password-file $pw_file: not readable"
  admin_pw=$(head -n1 "$pw_file")
  [[ -n "$admin_pw" ]] || die "--admin-password-file $pw_file: empty"
fi
if [[ -n "$admin_pw" && ${#admin_pw} -lt 8 ]]; then die "admin password must be at least 8 characters"; fi
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap/chroot for the OS layer, file ownership in the image)"

cache="$here/cache"
mkdir -p "$cache"
# One build at a time (make image, the image tests and packer/build.sh may race).
exec 8>"$cache/.lock"
flock 8
hash() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- payload (our layer)
find_bin_dir() {
  local best="" best_t=0 d t
  for d in "${ZIGRAL_BIN_DIR:-}" "${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/release}" "$repo/target/release"; do
    [[ -n "$d" && -x "$d/zigral" && -x "$d/zigral-init" ]] || continue
    t=$(stat -c %Y "$d/zigral-init" "$d/zigral" | sort -n | tail -n1)
    if ((t > best_t)); then best=$d best_t=$t; fi
  done
  echo "$best"
}
make_payload() { # make_payload DIR
  local p=$1
  if [[ -z "$bin_dir" ]]; then bin_dir=$(find_bin_dir); fi
  [[ -n "$bin_dir" && -x "$bin_dir/zigral" && -x "$bin_dir/zigral-init" ]] ||
    die "zigral and zigral-init are not built (looked in ${bin_dir:-\$ZIGRAL_BIN_DIR, \$CARGO_TARGET_DIR/release, target/release}); run: cargo build --release -p zigral-init -p zigral"
  if [[ -z "$ui_dir" && -f "$repo/ui/dist/index.html" ]]; then ui_dir="$repo/ui/dist"; fi
  rm -rf "$p"; mkdir -p "$p/bin"
  cp "$bin_dir/zigral" "$bin_dir/zigral-init" "$p/bin/"
  strip --strip-debug "$p/bin/zigral" "$p/bin/zigral-init" 2>/dev/null || true
  if [[ -n "$ui_dir" ]]; then
    [[ -f "$ui_dir/index.html" ]] || die "--ui-dir $ui_dir has no index.html"
    # The whole tree: index.html + novnc/ (the proxy's viewer) and app/ (the web app the
    # control plane serves at /, --web-dir /usr/share/zigral/ui/app).
    [[ -f "$ui_dir/app/index.html" ]] ||
      echo "image/build.sh: warning: $ui_dir has no app/index.html (run ui/build.sh): the appliance's http://HOST:8000/ will answer 404" >&2
    cp -a "$ui_dir" "$p/ui"
  fi
  cp -a "$here/overlay" "$p/overlay"
  # The services' definitions (into the update slot: an update brings its own) and, outside
  # the slots, the machine's profile: its bind address (kernel arg ZIGRAL_BIND overrides it).
  grep -q '^bind = ' "$here/init.toml" || die "image/init.toml has no 'bind = ...' line in [vars]"
  cp "$here/init.toml" "$p/init.toml"
  printf '# The machine-local side of /etc/zigral/init.toml (which an update replaces): the\n# profile (%s). Edit bind here to switch for good; kernel argument ZIGRAL_BIND overrides it.\n[vars]\nbind = "%s"\n' \
    "$profile" "$bind" > "$p/local.toml"
  if [[ ${#ssh_keys[@]} -gt 0 ]]; then cat "${ssh_keys[@]}" > "$p/authorized_keys"; fi
  if [[ -n "$admin_pw" ]]; then (umask 077; printf '%s\n' "$admin_pw" > "$p/admin-password"); fi
  cp "$here/lib/layer.sh" "$p/layer.sh"
  # The update key the appliance trusts (development key pair from scripts/update-key.sh unless
  # --update-key names the production public key).
  if [[ -z "$update_key" ]]; then update_key=$("$repo/scripts/update-key.sh"); fi
  [[ -r "$update_key" ]] || die "--update-key $update_key: not readable"
  grep -q '^untrusted comment: minisign public key' "$update_key" || die "--update-key $update_key: not a minisign public key"
  cp "$update_key" "$p/update.pub"
  {
    echo "version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")"
    # Bundles built later (serial = their build time) count as newer than the image.
    echo "serial=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)"
    echo "schema=$(sed -n 's/^pub const SCHEMA_VERSION: u64 = \([0-9]*\);/\1/p' "$repo/appliance/crates/store/src/migrate.rs")"
    echo "profile=$profile"
    echo "git=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- 2>/dev/null || echo +dirty)"
    echo "zigral_sha256=$(sha256sum < "$p/bin/zigral" | cut -c1-16)"
    echo "zigral_init_sha256=$(sha256sum < "$p/bin/zigral-init" | cut -c1-16)"
    echo "ui=$([[ -d "$p/ui" ]] && echo yes || echo no)"
  } > "$p/release"
}

if [[ -n "$payload_only" ]]; then
  make_payload "$payload_only"
  step "payload ready in $payload_only ($(du -sh "$payload_only" | cut -f1))"
  exit 0
fi

# ---------------------------------------------------------------- 1. os layer
os_key=$(cat "$here/packages.txt" "$here/lib/rootfs.sh" | hash)
os_tar="$cache/os-$os_key.tar"
if [[ -f "$os_tar" ]]; then
  step "os layer: cached ($(basename "$os_tar"), $(du -h "$os_tar" | cut -f1))"
else
  command -v mmdebstrap >/dev/null || die "mmdebstrap missing: run scripts/install-deps.sh image"
  step "os layer: mmdebstrap bookworm minbase + $(grep -cvE '^\s*(#|$)' "$here/packages.txt") packages (3-4 min)..."
  "$here/lib/rootfs.sh" "$here/packages.txt" "$os_tar" "$mirror" > "$cache/os-$os_key.log" 2>&1 ||
    die "mmdebstrap failed; see $cache/os-$os_key.log"
  step "os layer: built ($(du -h "$os_tar" | cut -f1))"
fi

# ---------------------------------------------------------------- 2. base layer
base_key=$( (echo "$os_key"; cat "$here/lib/tune.sh" "$here/lib/base.sh" "$here/modules.txt") | hash)
base="$cache/base-$base_key"
if [[ -f "$base.ok" && -d "$base" ]]; then
  step "base layer: cached ($(basename "$base"))"
else
  step "base layer: unpacking and slimming..."
  rm -rf "$base" "$base.ok"; mkdir -p "$base"
  tar -C "$base" -xf "$os_tar"
  "$here/lib/base.sh" "$base"
  "$here/lib/tune.sh" "$base" "$here/modules.txt" | sed 's/^/    /'
  touch "$base.ok"
  step "base layer: ready ($(du -sh "$base" | cut -f1))"
fi
# Keep only the current cache entries (each base tree is ~0.9 GB).
for old in "$cache"/os-*.tar "$cache"/base-*; do
  case "$old" in "$os_tar"|"$base"|"$base.ok"|*.log) ;; *) rm -rf "$old" ;; esac
done
if ((os_only)); then step "done (--os-only)"; exit 0; fi

# ---------------------------------------------------------------- 3. layer
mkdir -p "$(dirname "$out")"
out=$(realpath "$out")
# The work tree hard-links the cached base, so it must live on the cache's file system.
work="$here/build/.work-$(echo "$out" | hash)"
mkdir -p "$here/build"
rm -rf "$work"; mkdir -p "$work"
make_payload "$work/payload"
stamp=$( (echo "$base_key $disk_size $compress"; cat "$here/grub.cfg" "$here/lib/disk.sh"; cd "$work/payload" && find . -type f ! -name release -print0 | sort -z | xargs -0 sha256sum) | hash)
if ((force == 0)) && [[ -f "$out" && "$(cat "$out.stamp" 2>/dev/null)" == "$stamp" ]]; then
  rm -rf "$work"
  step "up to date: $out ($(du -h "$out" | cut -f1), profile $profile)"
  exit 0
fi
step "layer: $(cat "$work/payload/release" | tr '\n' ' ')"
tree="$work/tree"
cp -al "$base" "$tree"           # hard links: instant, the cache is never written through
"$here/lib/layer.sh" "$tree" "$work/payload"
# GRUB modules + config (read by core.img from the ext4 root).
rm -rf "$tree/boot/grub"; mkdir -p "$tree/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$tree/boot/grub/i386-pc/"
cp "$here/grub.cfg" "$tree/boot/grub/grub.cfg"

# ---------------------------------------------------------------- 4. disk
step "disk: ext4 ($disk_size) + GRUB + qcow2 ($compress)..."
"$here/lib/disk.sh" "$tree" "$out" "$disk_size" "$compress"
kver=$(readlink "$tree/vmlinuz"); kver=${kver#boot/vmlinuz-}
cp -L "$tree/vmlinuz" "$(dirname "$out")/vmlinuz"
cp -L "$tree/initrd.img" "$(dirname "$out")/initrd.img"
# This image's own kernel and initramfs: image/boot.sh boots them directly (no BIOS disk reads
# by GRUB, several seconds faster under TCG); the disk's GRUB boots the same pair.
cp -L "$tree/vmlinuz" "$out.vmlinuz"
cp -L "$tree/initrd.img" "$out.initrd"
# ... and the same kernel uncompressed, which QEMU enters through its PVH note (no real-mode
# setup, no in-guest decompression: the kernel starts ~2 s sooner under TCG).
rm -f "$out.vmlinux"
"$here/lib/vmlinux.sh" "$out.vmlinuz" "$out.vmlinux" || [[ $? -eq 2 ]]
cp "$work/payload/release" "$out.release"
echo "$stamp" > "$out.stamp"
rm -rf "$work"
step "done: $out ($(du -h "$out" | cut -f1) compressed, $disk_size virtual, kernel $kver, profile $profile)"
echo "boot it: image/boot.sh --image $out"
