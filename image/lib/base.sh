#!/usr/bin/env bash
# OS-level configuration of the base layer (cached with it): the unprivileged `zigral` user,
# no baked secrets or per-machine identities, a few large unneeded files removed.
# Usage: image/lib/base.sh ROOTFS_DIR
set -euo pipefail
root=$1
# The login for the SSH-tunnel dev mode (key-only; no password).
if ! chroot "$root" id -u zigral >/dev/null 2>&1; then
  chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash zigral
fi
chroot "$root" passwd -l root >/dev/null
# Per-machine identities are created on first boot (image/overlay/usr/lib/zigral/provision).
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"
: > "$root/etc/machine-id"; rm -f "$root/etc/machine-id"
# dhclient writes resolv.conf; do not carry the build host's.
rm -f "$root/etc/resolv.conf"; : > "$root/etc/resolv.conf"
# Slimming: Chromium UI translations other than en-US, logs and caches of the build.
find "$root/usr/lib/chromium/locales" -name '*.pak' ! -name 'en-US.pak' -delete 2>/dev/null || true
rm -rf "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/var/cache/man
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/root/.cache
