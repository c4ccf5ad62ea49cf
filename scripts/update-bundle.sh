#!/usr/bin/env bash
# Builds and signs an update bundle for the appliance's A/B slots from the tree (make update-bundle).
#
#   scripts/update-bundle.sh [options]   -> DIR/zigral-VERSION-SERIAL.tar.zst (+ .minisig)
#
# The bundle holds one slot: bin/zigral, ui/ (the built web app and viewer) and release. Its
# detached minisign signature carries the manifest in the trusted comment
# (zigral-bundle version=... serial=... schema=... git=...), which the appliance checks against
# the key baked into its image before it unpacks anything.
#
# Options:
#   --out DIR        where to write (default image/build/updates)
#   --version X.Y.Z  version (default: the workspace version in Cargo.toml)
#   --serial N       build serial ordering bundles of one version (default: now, epoch seconds)
#   --key FILE       minisign secret key (default: $ZIGRAL_UPDATE_KEY_DIR/update.key, .keys/update.key)
#   --zigral FILE    the zigral binary (default: target/release/zigral)
#   --ui-dir DIR     the built UI (default ui/dist)
# Apply it: curl -u ... -F bundle=@FILE -F signature=@FILE.minisig http://APPLIANCE:8000/api/v1/admin/update
# (with an admin bearer token), or copy both files into the appliance's /var/lib/zigral/updates/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "scripts/update-bundle.sh: error: $*" >&2; exit 1; }
out="$repo/image/build/updates" version="" serial=$(date +%s) key="" zigral="" ui_dir="$repo/ui/dist"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --serial) serial=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --zigral) zigral=$2; shift 2 ;;
    --ui-dir) ui_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
if [[ -z "$version" ]]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--version must be MAJOR.MINOR.PATCH, not '$version'"
[[ "$serial" =~ ^[0-9]+$ ]] || die "--serial must be a number, not '$serial'"
if [[ -z "$key" ]]; then
  "$repo/scripts/update-key.sh" >/dev/null
  key="${ZIGRAL_UPDATE_KEY_DIR:-$repo/.keys}/update.key"
fi
[[ -r "$key" ]] || die "--key $key: not readable"
if [[ -z "$zigral" ]]; then zigral="${ZIGRAL_BIN_DIR:-$repo/target/release}/zigral"; fi
[[ -x "$zigral" ]] || die "$zigral is not built (cargo build --release -p zigral)"
[[ -f "$ui_dir/index.html" && -f "$ui_dir/app/index.html" ]] || die "--ui-dir $ui_dir: not a built UI (run ui/build.sh)"
command -v minisign >/dev/null || die "minisign missing: run scripts/install-deps.sh image"
command -v zstd >/dev/null || die "zstd missing: run scripts/install-deps.sh image"
schema=$(sed -n 's/^pub const SCHEMA_VERSION: u64 = \([0-9]*\);/\1/p' "$repo/appliance/crates/store/src/migrate.rs")
[[ -n "$schema" ]] || die "cannot read the store's SCHEMA_VERSION"
git=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- 2>/dev/null || echo +dirty)

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
cp "$zigral" "$stage/bin/zigral"; chmod 0755 "$stage/bin/zigral"
strip --strip-debug "$stage/bin/zigral" 2>/dev/null || true
cp -a "$ui_dir" "$stage/ui"
# The services' definitions (the image reads them from the slot); the profile is machine-local.
cp "$repo/image/init.toml" "$stage/init.toml"
printf 'version=%s\nserial=%s\nschema=%s\ngit=%s\nzigral_sha256=%s\n' "$version" "$serial" "$schema" "$git" \
  "$(sha256sum < "$stage/bin/zigral" | cut -c1-16)" > "$stage/release"
mkdir -p "$out"
name="$out/zigral-$version-$serial.tar.zst"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -cf - . | zstd -q -T0 -10 -f -o "$name"
minisign -S -s "$key" -m "$name" -t "zigral-bundle version=$version serial=$serial schema=$schema git=$git" >/dev/null ||
  die "minisign could not sign $name"
echo "bundle: $name ($(du -h "$name" | cut -f1)), signature: $name.minisig"
echo "manifest: version=$version serial=$serial schema=$schema git=$git"
