#!/usr/bin/env bash
# sessiongate in a minute: a real Envoy 1.40 with mTLS in front of an echo application, and
# sessiongate deciding every request. Prints one line per case: HTTP status, deny reason and
# WWW-Authenticate challenge, for an allow and each kind of deny.
#
#   scripts/demo.sh
#
# What runs (all on 127.0.0.1, stopped again when the script exits, however it exits):
#   echo upstream :10080   cargo run --example echo_upstream
#   sessiongate   :9191    sessiongate serve --config examples/sessiongate.yaml
#   Envoy         :10443   examples/envoy.yaml, run from examples/ (its cert paths are relative)
#                 :9901    Envoy admin
# Tokens come from `cargo run --example mint`, client certificates from examples/certs/ (demo-only).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

envoy="${SESSIONGATE_ENVOY:-$(scripts/install-envoy.sh | tail -n 1)}"
echo "building sessiongate and the examples…"
cargo build --quiet --bin sessiongate --example mint --example echo_upstream
target="${CARGO_TARGET_DIR:-$repo/target}/debug"

for port in 9191 9901 10080 10443; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use: stop whatever listens there and retry" >&2
        exit 1
    fi
done

logs="$(mktemp -d "${TMPDIR:-/tmp}/sessiongate-demo.XXXXXX")"
pids=()
stop() {
    local status=$? pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $status -eq 0 ]]; then
        rm -rf "$logs"
        echo "stopped echo upstream, sessiongate and Envoy"
    else
        echo "stopped; logs kept in $logs" >&2
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

"$target/examples/echo_upstream" >"$logs/echo.log" 2>&1 &
pids+=($!)
"$target/sessiongate" serve --config examples/sessiongate.yaml >"$logs/sessiongate.log" 2>&1 &
pids+=($!)
(cd examples && exec "$envoy" -c envoy.yaml --concurrency 1 -l warning --use-dynamic-base-id) \
    >"$logs/envoy.log" 2>&1 &
pids+=($!)

# Wait (bounded) until all three serve; Envoy says so on its admin /ready endpoint.
ready() {
    (exec 3<>/dev/tcp/127.0.0.1/10080) 2>/dev/null &&
        (exec 3<>/dev/tcp/127.0.0.1/9191) 2>/dev/null &&
        curl -fsS -o /dev/null http://127.0.0.1:9901/ready 2>/dev/null
}
for _ in $(seq 1 200); do
    ready && break
    sleep 0.1
done
if ! ready; then
    echo "the demo stack did not come up; logs in $logs:" >&2
    tail -n 20 "$logs"/*.log >&2
    exit 1
fi

mint() { "$target/examples/mint" "$@"; }

# call LABEL WORKLOAD METHOD PATH [curl args…]: one request through Envoy as WORKLOAD.
call() {
    local label=$1 workload=$2 method=$3 path=$4
    shift 4
    local status reason challenge
    status=$(curl -sS -o "$logs/body" -D "$logs/headers" -w '%{http_code}' \
        --cacert examples/certs/ca.pem \
        --cert "examples/certs/$workload.pem" --key "examples/certs/$workload-key.pem" \
        --resolve localhost:10443:127.0.0.1 -X "$method" "$@" \
        "https://localhost:10443$path") || status="curl failed"
    reason=$(sed -n 's/.*"reason" *: *"\([^"]*\)".*/\1/p' "$logs/body")
    challenge=$(sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *//p' "$logs/headers" | tr -d '\r')
    printf '%-50s %-9s %-4s %-21s %s\n' "$label" "$workload" "$status" "${reason:-allowed}" "$challenge"
}

# upstream_saw HEADER: what the echo application received for HEADER in the last call.
upstream_saw() {
    grep -o "\"$1\":\[[^]]*\]" "$logs/body" || echo "\"$1\": (absent)"
}

batch_spiffe=spiffe://cluster.local/ns/shop/sa/batch

echo
printf '%-50s %-9s %-4s %-21s %s\n' CASE CALLER HTTP REASON WWW-AUTHENTICATE
echo "--- allowed"
call "GET /orders/42, ES256, scope orders:read" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --alg ES256 --scope orders:read --sub alice)" \
    -H "x-sessiongate-subject: root" -H "x-sessiongate-debug: 1"
echo "    the upstream saw (client tried to spoof x-sessiongate-subject: root, x-sessiongate-debug: 1):"
for header in x-sessiongate-subject x-sessiongate-scopes x-sessiongate-workload \
    x-sessiongate-session x-sessiongate-debug; do
    echo "      $(upstream_saw "$header")"
done
call "GET /orders/42, RS256" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --alg RS256)"
call "GET /orders/42, EdDSA" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --alg EdDSA)"
call "POST /orders, scope orders:write" frontend POST /orders \
    -H "authorization: Bearer $(mint --scope orders:write)"
call "GET /healthz, public route, no token" frontend GET /healthz
call "GET /admin (Envoy route policy), scope admin" frontend GET /admin/users \
    -H "authorization: Bearer $(mint --scope admin)"
call "token bound (cnf) to the caller's certificate" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --cnf-cert examples/certs/frontend.pem)"

echo "--- the Authorization header"
call "no token" frontend GET /orders/42
call "Basic credential" frontend GET /orders/42 -u alice:secret
call "two Bearer credentials" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint), Bearer $(mint)"
call "not a JWT" frontend GET /orders/42 -H "authorization: Bearer not-a-jwt"

echo "--- who signed it"
call "signed by a key not in the JWKS" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --key tests/fixtures/keys/es256.pem --kid example-es256)"
call "unknown issuer" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --iss https://evil.example.test)"
call "unknown kid" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --kid rotated-away)"
call "other audience" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --aud billing-api)"
call "alg none (unsigned)" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --alg none)"
call "HS256 keyed with the RSA public key" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --alg HS256)"

echo "--- time"
call "expired 5 minutes ago" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --exp-in -5m)"
call "not valid for another 5 minutes" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --nbf-in 5m)"
call "issued 20m ago (max_token_age 15m)" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --age 20m)"
call "issued 5m ago, POST /orders (route: 2m)" frontend POST /orders \
    -H "authorization: Bearer $(mint --age 5m --scope orders:write)"
call "user logged in 9h ago (max_auth_age 8h)" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --auth-age 9h)"
call "/admin, user logged in 2h ago (route: 1h)" frontend GET /admin/users \
    -H "authorization: Bearer $(mint --scope admin --auth-age 2h)"

echo "--- scope and workload"
call "POST /orders with only orders:read" frontend POST /orders \
    -H "authorization: Bearer $(mint --scope orders:read)"
call "/admin without scope admin" frontend GET /admin/users \
    -H "authorization: Bearer $(mint --scope orders:read)"
call "token bound (cnf) to batch's certificate" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --cnf-cert examples/certs/batch.pem)"
call "client_id names batch" frontend GET /orders/42 \
    -H "authorization: Bearer $(mint --client-id "$batch_spiffe")"
call "POST /orders by batch (frontend only)" batch POST /orders \
    -H "authorization: Bearer $(mint --scope orders:write)"
shared="$(mint)"
call "a token, first used by frontend" frontend GET /orders/42 -H "authorization: Bearer $shared"
call "the same token, replayed by batch" batch GET /orders/42 -H "authorization: Bearer $shared"

echo "--- routes"
call "GET /inventory (no route)" frontend GET /inventory \
    -H "authorization: Bearer $(mint)"

echo
echo "session_idle is not shown: examples/sessiongate.yaml idles sessions after 10m, and for one"
echo "idle_timeout after start-up unseen tokens are adopted (a restart empties the cache)."
echo "cargo test --test e2e_envoy session_idle shows it with a 2s idle_timeout."
