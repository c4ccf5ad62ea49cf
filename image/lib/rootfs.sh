#!/usr/bin/env bash
# Builds the slow OS layer: a Debian bookworm minbase rootfs (no systemd) as a tarball.
# Usage: image/lib/rootfs.sh PACKAGES_FILE OUT_TARBALL [APT_SOURCES]
# Mirror: the host's apt sources (deb822 file) unless APT_SOURCES is given (a file or a mirror URL).
set -euo pipefail
pkgs_file=$1 out=$2
sources=${3:-}
if [[ -z "$sources" ]]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [[ -s "$f" ]] && { sources=$f; break; }
  done
fi
sources=${sources:-http://deb.debian.org/debian}
pkgs=$(grep -vE '^\s*(#|$)' "$pkgs_file" | awk '{print $1}' | paste -sd, -)
tmp="$out.partial.tar"
rm -f "$tmp"
# Chromium -> libgtk-3 -> dconf -> dbus-user-session -> libpam-systemd -> systemd(-sysv):
# dbus-x11 satisfies dbus-session-bus, and the pin forbids the systemd packages (kept in the image).
mmdebstrap --variant=minbase --mode=root --format=tar \
  --include="$pkgs" \
  --setup-hook='mkdir -p "$1/etc/apt/preferences.d"; printf "Package: systemd systemd-sysv libpam-systemd dbus-user-session\nPin: release *\nPin-Priority: -1\n" > "$1/etc/apt/preferences.d/no-systemd"' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -f "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages* ; rm -rf "$1"/var/cache/apt/archives/*.deb' \
  bookworm "$tmp" "$sources"
mv "$tmp" "$out"
