#!/usr/bin/env bash
# Validates the fleet deployment files offline and exits non-zero on any error:
#   - KubeVirt objects against the vendored JSON schemas (deploy/schemas/, python jsonschema)
#     and the names/labels/probe/ports the routing relies on
#   - core Kubernetes objects with kubernetes-validate --strict (unknown kinds fail here)
#   - Nomad jobs parsed as HCL2 (python-hcl2) plus structural assertions (qemu, /readyz)
#   - haproxy -c on haproxy.cfg with every backends file and the Nomad template, the generated
#     backends in sync with gen-backends.sh, the session-pinning rules
# Usage: deploy/check.sh [DIR]
#   DIR: a deploy/ tree to check (default: the directory of this script). The tools always come
#   from this repository: Python ones from its .venv (scripts/setup-python.sh, or $ZIGRAL_VENV),
#   haproxy from PATH (Debian: apt-get install haproxy).
set -euo pipefail

usage() { sed -n '9,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "deploy/check.sh: $*" >&2; exit 2; }

[[ $# -le 1 ]] || usage
[[ "${1:-}" != -h && "${1:-}" != --help ]] || usage
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dir="${1:-$here}"
[[ -d "$dir" ]] || die "no such directory: $dir"
for sub in haproxy kubevirt nomad schemas; do
    [[ -d "$dir/$sub" ]] || die "$dir has no $sub/ directory: not a deploy/ tree"
done

venv="${ZIGRAL_VENV:-$root/.venv}"
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"
[[ -x "$py" ]] || die "missing $py: run scripts/setup-python.sh (installs tests/requirements.txt)"
[[ -x "$kv" ]] || die "missing $kv: run scripts/setup-python.sh (installs tests/requirements.txt)"
haproxy="$(command -v haproxy || true)"
[[ -n "$haproxy" ]] || die "haproxy not found in PATH: apt-get install haproxy"

echo "deploy/check.sh: checking $dir with $("$haproxy" -v | head -1 | cut -d' ' -f1-3), $("$kv" --version 2>&1 | head -1)"
exec "$py" "$here/lib/check.py" --dir "$dir" --haproxy "$haproxy" --kubernetes-validate "$kv"
