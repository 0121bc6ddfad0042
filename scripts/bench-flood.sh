#!/usr/bin/env bash
# Flood benchmark (issue 10, bounded verification work): does one attacker flooding
# bad-signature tokens at full speed slow a legitimate cached check?
#
# In ONE run on 127.0.0.1, against sessiongate on the example policy (examples/sessiongate.yaml),
# a legitimate caller sends one cached ES256 check at a time over its own connection and its
# latency is recorded (p50, p99), while an attacker (its own SPIFFE ID, FLOOD_CONNECTIONS
# connections x FLOOD_STREAMS concurrent calls, i.e. as fast as the server answers) sends:
#
#   baseline        nothing (the legitimate caller alone)
#   flood-same      one forged token (known kid, bad signature) over and over
#   flood-fresh     a new forged token on every request (new bytes each time)
#   flood-no-token  requests without any token (`missing_token`, the cheapest denial there
#                   is): the control, what any flood of requests costs without verification
#   flood-fresh-unbounded   the same against a server whose budgets are lifted and whose
#                   rejection memory is off: what the bounds buy
#
# Every answer is checked: the legitimate check must be allowed, every flood answer must be a
# denial with `bad_signature` or `verification_throttled`. It prints a table, the signatures
# sessiongate verified during each run, and p99 under flood / p99 baseline against the target
# (at most 2x, with the bounds on).
#
# Knobs (environment): DURATION (s, per run, default 5), WARMUP (s, 1), FLOOD_CONNECTIONS (2:
# with sessiongate's one thread per CPU on two cores, the legitimate connection then shares a
# thread with an attacker connection; 1 gives it a thread of its own), FLOOD_STREAMS (16),
# BASE_PORT (19500). Run it on a quiet machine.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-2}
FLOOD_STREAMS=${FLOOD_STREAMS:-16}
BASE_PORT=${BASE_PORT:-19500}

echo "== building (release)" >&2
cargo build --release --quiet --bin sessiongate --example load
BIN=$ROOT/target/release
LOAD=$BIN/examples/load

WORK=$(mktemp -d)
SG=""
stop_sessiongate() {
  if [[ -n $SG ]]; then kill "$SG" 2>/dev/null || true; wait "$SG" 2>/dev/null || true; fi
  SG=""
}
cleanup() {
  stop_sessiongate
  rm -rf "$WORK"
}
trap cleanup EXIT

cp examples/jwks.json "$WORK/jwks.json"
"$LOAD" token --alg ES256 >"$WORK/token"

# start_sessiongate NAME SED...: the example config, edited by the sed expressions, on fresh
# ports; waits until both listeners answer.
start_sessiongate() {
  local name=$1
  shift
  GRPC_PORT=$((GRPC_PORT_NEXT))
  OPS_PORT=$((GRPC_PORT_NEXT + 1))
  GRPC_PORT_NEXT=$((GRPC_PORT_NEXT + 2))
  sed -e "s/127.0.0.1:9191/127.0.0.1:$GRPC_PORT/" -e "s/127.0.0.1:9192/127.0.0.1:$OPS_PORT/" \
    "$@" examples/sessiongate.yaml >"$WORK/$name.yaml"
  (cd "$WORK" && exec "$BIN/sessiongate" serve --config "$WORK/$name.yaml") \
    >"$WORK/$name.log" 2>&1 &
  SG=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$GRPC_PORT") 2>/dev/null &&
      (exec 3<>"/dev/tcp/127.0.0.1/$OPS_PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "sessiongate ($name) did not start:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}
GRPC_PORT_NEXT=$BASE_PORT

# verifications: signatures the running sessiongate has verified so far.
verifications() {
  python3 - "$OPS_PORT" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith("sessiongate_signature_verifications"):
        print(int(float(line.split()[-1])))
        break
else:
    print(0)
EOF
}

legit() {
  "$LOAD" grpc --target "127.0.0.1:$GRPC_PORT" --connections 1 --streams 1 --threads 1 \
    --duration "$DURATION" --warmup "$WARMUP" --token-file "$WORK/token" --expect-identity \
    --label "$1"
}

# run LABEL [FORGERIES]: the legitimate caller, with the attacker flooding FORGERIES meanwhile.
RESULTS=()
run() {
  local label=$1 forgeries=${2:-} flood="" before after line
  before=$(verifications)
  if [[ -n $forgeries ]]; then
    "$LOAD" flood --target "127.0.0.1:$GRPC_PORT" --connections "$FLOOD_CONNECTIONS" \
      --streams "$FLOOD_STREAMS" --threads 1 --forgeries "$forgeries" --warmup 0 \
      --duration "$(python3 -c "print($DURATION + $WARMUP + 1)")" --label "$label-attacker" \
      >"$WORK/$label-attacker.json" &
    flood=$!
  fi
  line=$(legit "$label")
  if [[ -n $flood ]]; then wait "$flood"; fi
  after=$(verifications)
  echo "$line" >"$WORK/$label.json"
  RESULTS+=("$label $((after - before))")
  echo "$line" >&2
  if [[ -n $flood ]]; then cat "$WORK/$label-attacker.json" >&2; fi
}

echo "== sessiongate with the example's bounds" >&2
start_sessiongate bounded
# One allowed request pins and caches the legitimate session before any measurement.
"$LOAD" grpc --target "127.0.0.1:$GRPC_PORT" --connections 1 --streams 1 --duration 0.2 \
  --warmup 0 --token-file "$WORK/token" --label warm >/dev/null
run baseline
run flood-same same
run flood-fresh fresh
run flood-no-token none
run baseline-again
stop_sessiongate

echo "== sessiongate with the bounds lifted (budgets unlimited, no rejection memory)" >&2
start_sessiongate unbounded \
  -e 's/^\(    \(per_caller\|total\)\(_burst\)\{0,1\}:\) *[0-9]*/\1 10000000/' \
  -e 's/^\(    ttl:\) *30s/\1 0s/'
"$LOAD" grpc --target "127.0.0.1:$GRPC_PORT" --connections 1 --streams 1 --duration 0.2 \
  --warmup 0 --token-file "$WORK/token" --label warm >/dev/null
run baseline-unbounded
run flood-fresh-unbounded fresh
stop_sessiongate

python3 - "$WORK" "${RESULTS[@]}" <<'EOF'
import json, sys
work, rows = sys.argv[1], [r.split() for r in sys.argv[2:]]
def load(label):
    return json.load(open(f"{work}/{label}.json"))
def attacker(label):
    try:
        return json.load(open(f"{work}/{label}-attacker.json"))
    except FileNotFoundError:
        return None
print(f"{'run':<24}{'legit p50 us':>13}{'legit p99 us':>13}{'attacker rps':>14}{'verified':>10}")
for label, verified in rows:
    legit = load(label)
    flood = attacker(label)
    rps = f"{flood['rps']:.0f}" if flood else "-"
    print(f"{label:<24}{legit['p50_us']:>13}{legit['p99_us']:>13}{rps:>14}{verified:>10}")
base = load("baseline")["p99_us"]
print()
print("p99 under flood / p99 baseline (target <= 2.0x with the bounds on):")
for label in ["flood-same", "flood-fresh"]:
    ratio = load(label)["p99_us"] / base
    verdict = "met" if ratio <= 2.0 else "MISSED"
    print(f"  {label:<22}{ratio:5.2f}x  {verdict}")
control = load("flood-no-token")["p99_us"] / base
print(f"  {'flood-no-token':<22}{control:5.2f}x  (control: a flood that needs no verification)")
unbounded = load("flood-fresh-unbounded")["p99_us"] / load("baseline-unbounded")["p99_us"]
print(f"  {'flood-fresh-unbounded':<22}{unbounded:5.2f}x  (bounds lifted, for comparison)")
EOF
