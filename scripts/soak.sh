#!/usr/bin/env bash
# The soak (RELIABILITY.md): mixed load through real Envoys to two sessiongate replicas sharing
# a real Redis, while revocations (admin API and SSF), reloads, key rotations, Redis restarts
# and kill -9 happen under it; every answer is checked against the model, and resident memory
# and open file descriptors are sampled.
#
#   scripts/soak.sh [--seconds N] [--out DIR] [--rate REQ_PER_S] [--seed N]
#
# Defaults: 1800 s (30 minutes), 100 req/s, output in target/soak/<date>. Builds in release
# mode, installs Envoy when missing (redis-server must be installed: scripts/test.sh does it),
# runs `cargo test --release --test soak`, then prints the summary. Exit status: the test's
# (non-zero on any wrong answer, lost revocation, revocation refused outside a declared fault,
# or, for runs of 10 minutes or more, memory or file descriptors that do not level off).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

seconds=1800
out=""
rate=100
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$out" ]; then out="target/soak/$(date -u +%Y%m%dT%H%M%SZ)"; fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [ -z "${SESSIONGATE_ENVOY:-}" ]; then
  SESSIONGATE_ENVOY="$(scripts/install-envoy.sh | tail -n 1)"
  export SESSIONGATE_ENVOY
fi

echo "== soak: ${seconds} s at ${rate} req/s, output in ${out}"
status=0
SESSIONGATE_SOAK_SECONDS="$seconds" SESSIONGATE_SOAK_OUT="$out" SESSIONGATE_SOAK_RATE="$rate" \
  SESSIONGATE_SOAK_SEED="$seed" \
  cargo test --release --test soak -- --nocapture soak 2>&1 | tee "$out/soak.log" || status=$?
echo
if [ -f "$out/summary.md" ]; then cat "$out/summary.md"; fi
echo
echo "== files: $out/{summary.md,summary.json,samples.csv,plot.svg,soak.log}"
exit "$status"
