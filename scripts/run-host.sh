#!/usr/bin/env bash
# `make run`: the Zigral stack in host mode, in the foreground (Ctrl-C or SIGTERM stops it).
# Installs the Debian packages it needs, builds, then runs zigral-init on config/host.toml
# with the state under .state/. Once every service is ready zigral-init prints where
# everything runs (X display, VNC, CDP).
#
# To run beside another X server or on other ports (desktop N uses base+N):
#   ZIGRAL_DISPLAY_BASE=10 ZIGRAL_VNC_BASE=5910 ZIGRAL_CDP_BASE=9232 make run
# Extra arguments go to `zigral-init run` (e.g. scripts/run-host.sh --set screen_width=1920).
set -euo pipefail
cd "$(dirname "$0")/.."

display_base=${ZIGRAL_DISPLAY_BASE:-0}
vnc_base=${ZIGRAL_VNC_BASE:-5900}
cdp_base=${ZIGRAL_CDP_BASE:-9222}
proxy_port=${ZIGRAL_PROXY_PORT:-6081}
control_port=${ZIGRAL_CONTROL_PORT:-8000}
state_dir=${ZIGRAL_STATE_DIR:-.state}

scripts/install-deps.sh run

if ! command -v cargo >/dev/null; then
  echo "run-host: cargo not found: install Rust (https://rustup.rs) and retry" >&2
  exit 1
fi

# Fail early and clearly when the display or ports are taken.
x_taken() {
  local d=$1
  if [[ -e /tmp/.X${d}-lock ]]; then
    local pid
    pid=$(tr -d ' \n' < "/tmp/.X${d}-lock" 2>/dev/null || true)
    [[ -n $pid && -d /proc/$pid ]] && return 0
  fi
  [[ -S /tmp/.X11-unix/X${d} ]] && command -v xdpyinfo >/dev/null \
    && xdpyinfo -display ":${d}" >/dev/null 2>&1 && return 0
  return 1
}
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if x_taken "$display_base"; then
  echo "run-host: X display :${display_base} is already taken (another X server is running there)." >&2
  echo "run-host: pick a free display number, e.g.:  ZIGRAL_DISPLAY_BASE=10 make run" >&2
  exit 1
fi
for p in "$vnc_base:ZIGRAL_VNC_BASE:VNC" "$cdp_base:ZIGRAL_CDP_BASE:Chrome DevTools" \
         "$proxy_port:ZIGRAL_PROXY_PORT:proxy" "$control_port:ZIGRAL_CONTROL_PORT:control plane"; do
  IFS=: read -r port var what <<<"$p"
  if port_taken "$port"; then
    echo "run-host: 127.0.0.1:${port} (${what}) is already in use." >&2
    echo "run-host: pick another base, e.g.:  ${var}=$((port + 10)) make run" >&2
    exit 1
  fi
done

# The web app and viewer are rebuilt when any of their sources is newer than the build.
if [[ ! -f ui/dist/app/index.html ]] ||
   [[ -n "$(find ui/app ui/viewer ui/package-lock.json ui/vite.config.ts ui/build.sh \
            -newer ui/dist/app/index.html -print -quit)" ]]; then
  if ! command -v npm >/dev/null; then
    echo "run-host: npm is needed to build the web app (ui/build.sh): apt-get install npm" >&2
    exit 1
  fi
  echo "run-host: building the web app and viewer (ui/build.sh)"
  ui/build.sh
fi

# The same build as `make test` / `make build` (one profile, one feature set): running after
# testing (or the reverse) compiles nothing again.
echo "run-host: building (cargo build --release --workspace --all-targets)"
cargo build --release --workspace --all-targets

# First start: the control plane creates user `admin`. Unless ZIGRAL_ADMIN_PASSWORD is set,
# generate the password here and show it on this terminal only: services' output is also
# written to .state/logs/, and a password must never land in a log file.
if [[ ! -e "$state_dir/zigral.redb" && -z "${ZIGRAL_ADMIN_PASSWORD:-}" ]]; then
  ZIGRAL_ADMIN_PASSWORD=$(head -c 15 /dev/urandom | base64 | tr '+/' 'xy')
  export ZIGRAL_ADMIN_PASSWORD
  echo "run-host: first start: web/API login  user: admin  password: ${ZIGRAL_ADMIN_PASSWORD}"
  echo "run-host: (shown only now; change it with POST /api/v1/auth/password)"
fi

bin="${CARGO_TARGET_DIR:-target}/release/zigral-init"
export ZIGRAL_DISPLAY_BASE=$display_base ZIGRAL_VNC_BASE=$vnc_base ZIGRAL_CDP_BASE=$cdp_base \
  ZIGRAL_PROXY_PORT=$proxy_port ZIGRAL_CONTROL_PORT=$control_port
if [[ $(id -u) -eq 0 ]]; then
  echo "run-host: as root, zigral-init is the only root process: the proxy and control plane run as"
  echo "run-host: user zigral, desktop N as user zigral-dN (created on first use; Chromium keeps its"
  echo "run-host: sandbox), and the VNC/DevTools ports are private to zigral (nftables)"
fi
echo "run-host: starting zigral-init (state in ${state_dir}/, logs in ${state_dir}/logs/)"
exec "$bin" run --config config/host.toml --state-dir "$state_dir" --set "ui_dir=$PWD/ui/dist" "$@"
