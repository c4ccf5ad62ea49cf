#!/usr/bin/env bash
# `make test`: everything the suite needs, one release build, then every test: each crate's
# unit and integration tests (real Xvfb, x11vnc, Chromium, noVNC, redb, schemathesis, the MCP
# SDK), the whole host-mode stack, and the VM image booted under QEMU (the `#[ignore]`d tests of
# tests/tests/image.rs, incl. `packer validate` and a Packer build). A test whose tool is
# missing fails; none skips.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

step "Debian packages (scripts/install-deps.sh all)"
scripts/install-deps.sh all

# The image's OS layer (mmdebstrap, ~4 min, mostly downloads and unpacking) is cached in
# image/cache/ and independent of our code: build it while cargo compiles.
mkdir -p target
step "VM image OS layer, in the background (log: target/os-layer.log)"
image/build.sh --os-only > target/os-layer.log 2>&1 &
os_pid=$!
trap 'kill "$os_pid" 2>/dev/null || true' EXIT

step "web app and viewer (ui/build.sh)"
ui/build.sh
step "Python test tools (scripts/setup-python.sh)"
scripts/setup-python.sh
# One build: --workspace --all-targets resolves features exactly as the `cargo test
# --workspace` runs below do, so nothing is compiled twice.
step "build (cargo build --release --workspace --all-targets)"
cargo build --release --workspace --all-targets

step "tests: every crate and the whole host-mode stack (cargo test --release --workspace)"
cargo test --release --workspace --no-fail-fast

step "VM image (waiting for the OS layer)"
if ! wait "$os_pid"; then
  cat target/os-layer.log
  echo "image OS layer failed" >&2
  exit 1
fi
trap - EXIT
image/build.sh
step "VM image tests (QEMU, TCG; packer validate; packer build + boot)"
cargo test --release --workspace --test image -- --ignored --test-threads=1
step "all tests passed"
