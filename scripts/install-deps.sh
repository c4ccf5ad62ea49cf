#!/usr/bin/env bash
# Installs the Debian packages Zigral needs, only those that are missing.
# Usage: scripts/install-deps.sh [run|test|image|all]   (default: run)
#   run   - what `make run` needs: Xvfb, x11vnc, Chromium, fonts
#   test  - run + what the test suite and benchmarks use (peers, X tools, node, python venv)
#   image - what building and booting the VM image needs (mmdebstrap, qemu, packer, grub)
#   all   - everything
set -euo pipefail
profile=${1:-run}

run_pkgs=(xvfb x11vnc chromium jq fonts-dejavu-core fonts-liberation2 fonts-noto-cjk x11-utils ca-certificates nftables passwd)
test_pkgs=(tini xdotool scrot imagemagick xclip websockify novnc socat redis-server redis-tools hyperfine
           ffmpeg python3-venv iproute2 curl procps util-linux psmisc minisign zstd haproxy)
image_pkgs=(mmdebstrap e2fsprogs grub-pc-bin fdisk zstd packer openssh-client dosfstools minisign xz-utils binutils)
# qemu-system-x86 and qemu-utils must come from the same suite (see ARCHITECTURE.md / image/README.md):
qemu_pkgs=(qemu-system-x86 qemu-utils)

case "$profile" in
  run) want=("${run_pkgs[@]}") ;;
  test) want=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  image) want=("${image_pkgs[@]}") ;;
  all) want=("${run_pkgs[@]}" "${test_pkgs[@]}" "${image_pkgs[@]}") ;;
  *) echo "install-deps: unknown profile '$profile' (run|test|image|all)" >&2; exit 2 ;;
esac

# Node.js: the machine may carry its own nodejs (with npm inside); only add Debian's when absent.
# (npm fetches noVNC for the web viewer, so even `run` needs it.)
if [[ "$profile" != image ]] && ! command -v npm >/dev/null; then
  want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
need_qemu=0
if [[ "$profile" == image || "$profile" == all ]]; then
  command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null || need_qemu=1
fi

if [[ ${#missing[@]} -eq 0 && $need_qemu -eq 0 ]]; then
  echo "install-deps: all $profile packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: these Debian packages are missing: ${missing[*]} ${need_qemu:+qemu-system-x86 qemu-utils}" >&2
  echo "install-deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $need_qemu -eq 1 ]]; then
  # bookworm's qemu-system-x86 (7.2) would remove a newer qemu-utils from backports; take
  # both from bookworm-backports through a throw-away apt config so system sources stay as they are.
  K=/usr/share/keyrings/debian-archive-keyring.gpg
  D=$(mktemp -d /tmp/zigral-apt-bpo.XXXXXX)
  mkdir -p "$D/lists/partial" "$D/archives/partial"
  # The first non-security Debian mirror the machine's own (uncommented) sources use.
  mirror=$( { grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
              grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list 2>/dev/null | awk '{for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; break}}'; } \
            | grep -v security | awk 'NR==1' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-updates main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
    "$K" "$mirror" "$K" "$mirror" "$K" "$mirror" > "$D/sources.list"
  O=(-o "Dir::Etc::sourcelist=$D/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$D/lists"
     -o "Dir::Cache::archives=$D/archives" -o APT::Sandbox::User=root)
  echo "install-deps: installing qemu-system-x86 + qemu-utils from bookworm-backports"
  apt-get "${O[@]}" update -qq
  apt-get "${O[@]}" install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
  rm -rf "$D"
fi
echo "install-deps: done ($profile)"
