#!/usr/bin/env bash
# Memory benchmark (issue 6): the resident set of a real `sessiongate serve` holding SESSIONS
# cached sessions. Starts sessiongate with the example policy (cache_capacity raised to fit),
# sends SESSIONS checks over gRPC, each with a never-seen EdDSA token (verified, cached, pinned,
# allowed; every answer checked), and prints the resident set before and after, with the cache's
# own count from /metrics.
#
# Knobs (environment): SESSIONS (1000000), PORT (19601). Needs a Rust toolchain; about two
# minutes for a million sessions, most of it minting tokens and verifying them.
# (`cargo run --release --example session_memory -- N` measures the gate alone, in-process.)
set -euo pipefail

cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000000}
PORT=${PORT:-19601}

echo "== building (release)" >&2
cargo build --release --quiet --bin sessiongate --example load
BIN=$PWD/target/release

# The benchmarks measure how fast new tokens are verified, not the verification budget that
# bounds them for an attacker (README, "Bounded work"): lift it.
UNTHROTTLED='s/^\(    \(per_caller\|total\)\(_burst\)\{0,1\}:\) *[0-9]*/\1 10000000/'
WORK=$(mktemp -d)
SG=""
cleanup() {
  if [[ -n $SG ]]; then kill "$SG" 2>/dev/null || true; wait "$SG" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cp examples/jwks.json "$WORK/jwks.json"
OPS_PORT=$((PORT + 1))
sed -e "s/127.0.0.1:9191/127.0.0.1:$PORT/" -e "s/127.0.0.1:9192/127.0.0.1:$OPS_PORT/" \
  -e "s/cache_capacity: 100000/cache_capacity: $((SESSIONS + SESSIONS / 10 + 1000))/" \
  -e "$UNTHROTTLED" examples/sessiongate.yaml >"$WORK/sessiongate.yaml"
(cd "$WORK" && exec "$BIN/sessiongate" serve --config "$WORK/sessiongate.yaml") >"$WORK/sessiongate.log" 2>&1 &
SG=$!
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SG/status"; }
cached() { curl -sf "127.0.0.1:$OPS_PORT/metrics" | awk '/^sessiongate_session_cache_entries / { print $2 }'; }

BEFORE=$(rss_kib)
"$BIN/examples/load" token --alg EdDSA >"$WORK/token"
"$BIN/examples/load" grpc --target "127.0.0.1:$PORT" --expect-identity --fresh-tokens "$SESSIONS" \
  --alg EdDSA --connections 2 --streams 8 --threads 2 --token-file "$WORK/token" \
  --duration 1 --warmup 0 --label memory >&2
AFTER=$(rss_kib)
CACHED=$(cached)
python3 - "$SESSIONS" "$CACHED" "$BEFORE" "$AFTER" <<'PY'
import sys
sessions, cached, before, after = int(sys.argv[1]), int(float(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
print(f"sessions sent {sessions:,}, cached {cached:,}")
print(f"resident: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after "
      f"({(after - before) * 1024 / max(cached, 1):.0f} bytes per cached session)")
print(f"target: 1,000,000 sessions in at most 512 MiB resident")
PY
