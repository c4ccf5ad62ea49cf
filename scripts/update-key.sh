#!/usr/bin/env bash
# Prints the path of the update signing key pair's public half, creating a development key pair
# (minisign, Ed25519, no password) when there is none yet.
#
#   scripts/update-key.sh            -> $ZIGRAL_UPDATE_KEY_DIR/update.pub (default: .keys/ in the repo)
#
# image/build.sh bakes update.pub into the image (/etc/zigral/update.pub); scripts/update-bundle.sh
# signs with update.key. A production appliance uses a key kept offline instead: set
# ZIGRAL_UPDATE_KEY_DIR to where its update.pub (and, on the signing machine, update.key) live.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${ZIGRAL_UPDATE_KEY_DIR:-$repo/.keys}
die() { echo "scripts/update-key.sh: error: $*" >&2; exit 1; }
if [[ -f "$dir/update.pub" ]]; then echo "$dir/update.pub"; exit 0; fi
command -v minisign >/dev/null || die "minisign missing: run scripts/install-deps.sh image"
mkdir -p "$dir"; chmod 0700 "$dir"
minisign -G -W -p "$dir/update.pub" -s "$dir/update.key" >/dev/null ||
  die "minisign could not create a key pair in $dir"
echo "scripts/update-key.sh: created a development update key pair in $dir (not for production)" >&2
echo "$dir/update.pub"
