#!/usr/bin/env bash
# Installs the Zigral layer (our binaries, UI, overlay files, init config, keys) into a root
# file-system tree. Used by image/build.sh on the build tree and by the Packer provisioner
# inside a running VM (TREE=/). Replaces files by unlink+create (never writes through an
# existing inode: the build tree shares inodes with the cached base layer).
# Usage: image/lib/layer.sh TREE PAYLOAD_DIR
# PAYLOAD_DIR: bin/zigral, bin/zigral-init, [ui/], overlay/, init.toml, local.toml, update.pub,
#              [authorized_keys], [admin-password], release
set -euo pipefail
T=${1%/} P=$2
[[ -d "$T/usr/sbin" && -d "$T/etc" ]] || { echo "layer: $T is not a root file system" >&2; exit 1; }
for f in bin/zigral bin/zigral-init overlay init.toml local.toml release update.pub; do
  [[ -e "$P/$f" ]] || { echo "layer: payload $P lacks $f" >&2; exit 1; }
done
put() { # put MODE SRC DST
  rm -f "$T$3"; install -D -m "$1" "$2" "$T$3"
}
# Signed A/B updates: our files live in slot a (slot b is filled by the first update);
# `current` points to the active slot, and the well-known paths point through it. zigral-init
# itself stays outside the slots: it is the part that switches and rolls back.
S=/usr/lib/zigral/slots
rm -rf "$T$S"; mkdir -p "$T$S/a/bin"
install -m 0755 "$P/bin/zigral" "$T$S/a/bin/zigral"
if [[ -d "$P/ui" ]]; then cp -a "$P/ui" "$T$S/a/ui"; fi
install -m 0644 "$P/release" "$T$S/a/release"
# The services' definitions too: zigral-init reads /etc/zigral/init.toml through `current`
# (and `reload`s it when an update switches); the profile stays in /etc/zigral/local.toml.
install -m 0644 "$P/init.toml" "$T$S/a/init.toml"
ln -s a "$T$S/current"
rm -f "$T/usr/bin/zigral"; ln -s "$S/current/bin/zigral" "$T/usr/bin/zigral"
put 0755 "$P/bin/zigral-init" /usr/sbin/zigral-init
# The kernel runs /sbin/init (= /usr/sbin/init on merged-/usr Debian): that is zigral-init.
rm -f "$T/usr/sbin/init"; ln -s zigral-init "$T/usr/sbin/init"
rm -rf "$T/usr/share/zigral/ui"
mkdir -p "$T/usr/share/zigral"; ln -s "$S/current/ui" "$T/usr/share/zigral/ui"
cp -a --remove-destination "$P/overlay/." "$T/"
mkdir -p "$T/etc/zigral"
rm -f "$T/etc/zigral/init.toml"; ln -s "$S/current/init.toml" "$T/etc/zigral/init.toml"
put 0644 "$P/local.toml" /etc/zigral/local.toml
put 0644 "$P/release" /etc/zigral/release
put 0644 "$P/update.pub" /etc/zigral/update.pub
if [[ -s "$P/authorized_keys" ]]; then put 0644 "$P/authorized_keys" /etc/zigral/authorized_keys; fi
if [[ -s "$P/admin-password" ]]; then put 0600 "$P/admin-password" /etc/zigral/admin-password; fi
mkdir -p "$T/var/lib/zigral" && chmod 0750 "$T/var/lib/zigral"
