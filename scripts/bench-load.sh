#!/usr/bin/env bash
# Load benchmark (issue 6): in ONE run on 127.0.0.1, with the same token and client certificate,
#
#   grpc  noop         ext_authz Check straight at a do-nothing server on the same stack
#   grpc  sessiongate  … straight at sessiongate, cached session
#   https noauth       through Envoy 1.40 with mTLS, no authorization (the ceiling)
#   https jwt+rbac     … Envoy's jwt_authn (JWT cache on) + rbac on the scope claim
#   https noop-authz   … Envoy ext_authz → the do-nothing server (the ceiling for ANY ext_authz
#                      server: what Envoy's own ext_authz round trip costs)
#   https sessiongate  … Envoy ext_authz → sessiongate
#   https module       … sessiongate inside Envoy (the dynamic module), no hop per request
#   grpc  uncached     straight at sessiongate, a never-seen token on every request
#   verify             the crypto library's own verification rate for that algorithm
#
# and prints a table and the ratios the issue's targets are stated in. Every response is
# checked (gRPC status in the trailers and the CheckResponse; HTTP status and what the upstream
# received); one bad answer fails the run. See BENCHMARKS.md for figures and what limits them.
#
# Knobs (environment): DURATION (s, per run, default 5), WARMUP (s, 1), GRPC_CONNECTIONS (2),
# GRPC_STREAMS (8 per connection), HTTPS_CONNECTIONS (16), CLIENT_THREADS (2),
# ENVOY_CONCURRENCY (2), FRESH_TOKENS (30000), ALG (ES256: the token's and the uncached run's
# algorithm), BASE_PORT (19400).
#
# Needs: a Rust toolchain, python3, Envoy 1.40 (installed by scripts/install-envoy.sh into
# .envoy/ when missing). Run it on a quiet machine: the ratios are only as good as the quiet.
# ENVOY_CONFIG_ONLY=FILE writes the Envoy config these runs use to FILE (the module's config
# path left as __MODULE_CONFIG__, the upstream on BASE_PORT) and stops: scripts/bench-instructions.sh
# counts instructions on exactly these listeners.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
GRPC_CONNECTIONS=${GRPC_CONNECTIONS:-2}
GRPC_STREAMS=${GRPC_STREAMS:-8}
HTTPS_CONNECTIONS=${HTTPS_CONNECTIONS:-16}
CLIENT_THREADS=${CLIENT_THREADS:-2}
ENVOY_CONCURRENCY=${ENVOY_CONCURRENCY:-2}
FRESH_TOKENS=${FRESH_TOKENS:-30000}
ALG=${ALG:-ES256}
BASE_PORT=${BASE_PORT:-19400}

UPSTREAM_PORT=$BASE_PORT
SG_PORT=$((BASE_PORT + 1))
NOOP_PORT=$((BASE_PORT + 2))
NOAUTH_PORT=$((BASE_PORT + 10))
JWT_PORT=$((BASE_PORT + 11))
EXTAUTHZ_PORT=$((BASE_PORT + 12))
NOOP_EXTAUTHZ_PORT=$((BASE_PORT + 13))
MODULE_PORT=$((BASE_PORT + 14))
ENVOY_ADMIN_PORT=$((BASE_PORT + 19))

ENVOY=${SESSIONGATE_ENVOY:-$ROOT/.envoy/bin/envoy}
if [[ ! -x $ENVOY ]]; then
  scripts/install-envoy.sh
fi

echo "== building (release)" >&2
cargo build --release --quiet --bin sessiongate \
  --example load --example noop_authz --example echo_upstream
cargo build --release --quiet -p sessiongate-envoy-module
BIN=$ROOT/target/release
LOAD=$BIN/examples/load

# The benchmarks measure how fast new tokens are verified, not the verification budget that
# bounds them for an attacker (README, "Bounded work"): lift it.
UNTHROTTLED='s/^\(    \(per_caller\|total\)\(_burst\)\{0,1\}:\) *[0-9]*/\1 10000000/'
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # port name
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not listen on $1; its log:" >&2
  cat "$WORK/$2.log" >&2 || true
  exit 1
}

# --- sessiongate: the example policy, ports moved --------------------------------------------
cp examples/jwks.json "$WORK/jwks.json"
sed -e "s/127.0.0.1:9191/127.0.0.1:$SG_PORT/" -e 's/127.0.0.1:9192/127.0.0.1:0/' \
  -e "$UNTHROTTLED" examples/sessiongate.yaml >"$WORK/sessiongate.yaml"
# The module's own copy of the same policy (its own revocation log and admin port).
mkdir -p "$WORK/module"
cp examples/jwks.json "$WORK/module/jwks.json"
sed -e 's/127.0.0.1:919[0-9]/127.0.0.1:0/' "$WORK/sessiongate.yaml" >"$WORK/module/sessiongate.yaml"
declare -A SERVERS # name -> pid, for CPU accounting
"$BIN/examples/echo_upstream" "127.0.0.1:$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
SERVERS[upstream]=$!
(cd "$WORK" && exec "$BIN/sessiongate" serve --config "$WORK/sessiongate.yaml") >"$WORK/sessiongate.log" 2>&1 &
PIDS+=($!)
SERVERS[sessiongate]=$!
"$BIN/examples/noop_authz" "127.0.0.1:$NOOP_PORT" >"$WORK/noop.log" 2>&1 &
PIDS+=($!)
SERVERS[noop]=$!

# --- Envoy: one process, three mTLS listeners that differ only in their HTTP filters ---------
CERTS=$ROOT/examples/certs
listener() { # name port filters-yaml
  cat <<EOF
    - name: $1
      address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                tls_certificates:
                  - certificate_chain: { filename: $CERTS/server.pem }
                    private_key: { filename: $CERTS/server-key.pem }
                validation_context: { trusted_ca: { filename: $CERTS/ca.pem } }
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: $1
                normalize_path: true
                merge_slashes: true
                route_config:
                  virtual_hosts:
                    - name: shop
                      domains: ["*"]
                      routes: [ { match: { prefix: / }, route: { cluster: upstream } } ]
                http_filters:
$3
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
}
JWT_FILTERS=$(cat <<EOF
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        example:
                          issuer: https://idp.example.test
                          audiences: [shop-api]
                          local_jwks: { filename: $ROOT/examples/jwks.json }
                          payload_in_metadata: jwt_payload
                          # The token reaches the upstream, as it does behind sessiongate (and
                          # the echo upstream sends it back): both rows carry the same bytes.
                          forward: true
                          # Verified tokens are cached, as sessiongate caches sessions.
                          jwt_cache_config: { jwt_cache_size: 10000 }
                      rules:
                        - match: { prefix: / }
                          requires: { provider_name: example }
                  - name: envoy.filters.http.rbac
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                      rules:
                        action: ALLOW
                        policies:
                          orders-read:
                            permissions:
                              - and_rules:
                                  rules:
                                    - url_path: { path: { prefix: /orders } }
                                    - header: { name: ":method", string_match: { exact: GET } }
                            principals:
                              - metadata:
                                  filter: envoy.filters.http.jwt_authn
                                  path: [ { key: jwt_payload }, { key: scope } ]
                                  value: { string_match: { safe_regex: { regex: "(.* )?orders:read( .*)?" } } }
EOF
)
grpc_cluster() { # name port: an HTTP/2 (gRPC) cluster on 127.0.0.1
  cat <<EOF
    - name: $1
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: { http2_protocol_options: {} }
      load_assignment:
        cluster_name: $1
        endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } } ] } ]
EOF
}
MODULE_FILTERS=$(cat <<EOF
                  - name: sessiongate
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
                      dynamic_module_config: { name: sessiongate_envoy, do_not_close: true }
                      filter_name: sessiongate
                      filter_config:
                        "@type": type.googleapis.com/google.protobuf.StringValue
                        value: $WORK/module/sessiongate.yaml
EOF
)
extauthz_filters() { # cluster
  cat <<EOF
                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      grpc_service: { envoy_grpc: { cluster_name: $1 }, timeout: 1s }
                      include_peer_certificate: true
                      failure_mode_allow: false
                      status_on_error: { code: 503 }
EOF
}
{
  cat <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_ADMIN_PORT } }
static_resources:
  listeners:
EOF
  listener noauth "$NOAUTH_PORT" ""
  listener jwt_rbac "$JWT_PORT" "$JWT_FILTERS"
  listener ext_authz "$EXTAUTHZ_PORT" "$(extauthz_filters sessiongate)"
  listener noop_ext_authz "$NOOP_EXTAUTHZ_PORT" "$(extauthz_filters noop)"
  listener module "$MODULE_PORT" "$MODULE_FILTERS"
  echo "  clusters:"
  grpc_cluster sessiongate "$SG_PORT"
  grpc_cluster noop "$NOOP_PORT"
  cat <<EOF
    - name: upstream
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: upstream
        endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UPSTREAM_PORT } } } } ] } ]
EOF
} >"$WORK/envoy.yaml"
if [[ -n ${ENVOY_CONFIG_ONLY:-} ]]; then
  sed "s|$WORK/module/sessiongate.yaml|__MODULE_CONFIG__|" "$WORK/envoy.yaml" >"$ENVOY_CONFIG_ONLY"
  exit 0
fi
ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$BIN "$ENVOY" -c "$WORK/envoy.yaml" \
  --concurrency "$ENVOY_CONCURRENCY" -l warning --use-dynamic-base-id >"$WORK/envoy.log" 2>&1 &
PIDS+=($!)
SERVERS[envoy]=$!

wait_port "$UPSTREAM_PORT" upstream
wait_port "$SG_PORT" sessiongate
wait_port "$NOOP_PORT" noop
for port in $NOAUTH_PORT $JWT_PORT $EXTAUTHZ_PORT $NOOP_EXTAUTHZ_PORT $MODULE_PORT; do wait_port "$port" envoy; done

# --- the runs -----------------------------------------------------------------------------------
"$LOAD" token --alg "$ALG" >"$WORK/token"
# The module answers 503 until it has loaded its keys and revocations: wait for its first allow.
status=000
for _ in $(seq 1 300); do
  status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.pem" \
    --cert "$CERTS/frontend.pem" --key "$CERTS/frontend-key.pem" \
    --resolve "localhost:$MODULE_PORT:127.0.0.1" -H "authorization: Bearer $(cat "$WORK/token")" \
    "https://localhost:$MODULE_PORT/orders/42" || true)
  [[ $status == 200 ]] && break
  sleep 0.1
done
[[ $status == 200 ]] || { echo "the module never allowed the token (last $status)" >&2; cat "$WORK/envoy.log" >&2; exit 1; }
RESULTS=$WORK/results.jsonl
COMMON=(--duration "$DURATION" --warmup "$WARMUP" --threads "$CLIENT_THREADS" --token-file "$WORK/token")
GRPC=(--connections "$GRPC_CONNECTIONS" --streams "$GRPC_STREAMS")
HTTPS=(--connections "$HTTPS_CONNECTIONS")
# CPU time (user + system, in clock ticks) a process used so far.
cpu_ticks() { # pid
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# Runs the load generator and adds to its result line the server-side CPU each process spent
# per request (µs): what decides req/s when every process shares the same two cores.
run() { # label, then load's arguments
  local label=$1
  shift
  echo "== $label" >&2
  local before=() name
  for name in "${!SERVERS[@]}"; do before+=("$name=$(cpu_ticks "${SERVERS[$name]}")"); done
  local line
  line=$("$LOAD" "$@" --label "$label")
  local cpu="" entry
  for entry in "${before[@]}"; do
    name=${entry%%=*}
    cpu+="\"$name\":$(( ($(cpu_ticks "${SERVERS[$name]}") - ${entry#*=}) * TICK_US )),"
  done
  # The result line is one JSON object; the CPU figures are totals over warm-up and run.
  echo "${line%\}},\"cpu_us\":{${cpu%,}}}" | tee -a "$RESULTS" >&2
}
run grpc-noop grpc --target "127.0.0.1:$NOOP_PORT" "${GRPC[@]}" "${COMMON[@]}"
run grpc-sessiongate grpc --target "127.0.0.1:$SG_PORT" --expect-identity "${GRPC[@]}" "${COMMON[@]}"
run envoy-noauth https --target "127.0.0.1:$NOAUTH_PORT" --expect-body '"/orders/42"' "${HTTPS[@]}" "${COMMON[@]}"
run envoy-jwt-rbac https --target "127.0.0.1:$JWT_PORT" --expect-body '"/orders/42"' "${HTTPS[@]}" "${COMMON[@]}"
run envoy-noop-authz https --target "127.0.0.1:$NOOP_EXTAUTHZ_PORT" --expect-body '"/orders/42"' "${HTTPS[@]}" "${COMMON[@]}"
run envoy-sessiongate https --target "127.0.0.1:$EXTAUTHZ_PORT" --expect-body x-sessiongate-subject "${HTTPS[@]}" "${COMMON[@]}"
run envoy-module https --target "127.0.0.1:$MODULE_PORT" --expect-body x-sessiongate-subject "${HTTPS[@]}" "${COMMON[@]}"
run envoy-module-uncached https --target "127.0.0.1:$MODULE_PORT" --expect-body x-sessiongate-subject \
  --fresh-tokens "$FRESH_TOKENS" --alg "$ALG" "${HTTPS[@]}" "${COMMON[@]}"
run grpc-uncached grpc --target "127.0.0.1:$SG_PORT" --expect-identity --fresh-tokens "$FRESH_TOKENS" \
  --alg "$ALG" "${GRPC[@]}" "${COMMON[@]}"
run verify-raw verify-rate --alg "$ALG" --threads 2 --duration "$DURATION"

# --- table and ratios ---------------------------------------------------------------------------
python3 - "$RESULTS" "$ALG" "$WARMUP" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    rows[row["label"]] = row
alg = sys.argv[2]
print(f"\n{'run':<20}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}{'ok':>10}")
for label, row in rows.items():
    print(f"{label:<20}{row['rps']:>10}{row.get('p50_us', ''):>10}{row.get('p99_us', ''):>10}{row.get('ok', ''):>10}")
print("\nserver CPU per request, µs (user + system, warm-up included; the load generator not counted):")
print(f"{'run':<20}" + "".join(f"{name:>13}" for name in ("envoy", "sessiongate", "noop", "upstream", "total")))
for label, row in rows.items():
    cpu = row.get("cpu_us")
    if not cpu or "ok" not in row:
        continue
    # Warm-up requests are not in "ok" (the fresh-token run has none).
    warmup = 0 if label.endswith("-uncached") else float(sys.argv[3])
    requests = row["ok"] + row["rps"] * warmup
    per = {name: cpu.get(name, 0) / requests for name in ("envoy", "sessiongate", "noop", "upstream")}
    print(f"{label:<20}" + "".join(f"{per[name]:>13.1f}" for name in per) + f"{sum(per.values()):>13.1f}")
def ratio(name, a, b, key, target, higher=True):
    value = rows[a][key] / rows[b][key]
    met = value >= target if higher else value <= target
    sign = ">=" if higher else "<="
    print(f"{name:<52}{value:>7.2f}x  (target {sign} {target}x: {'met' if met else 'MISSED'})")
print("\nratios (same run):")
ratio("straight gRPC: sessiongate / noop, req/s", "grpc-sessiongate", "grpc-noop", "rps", 0.85)
ratio("via Envoy: sessiongate / jwt_authn+rbac, req/s", "envoy-sessiongate", "envoy-jwt-rbac", "rps", 1.0)
ratio("via Envoy: sessiongate / jwt_authn+rbac, p99", "envoy-sessiongate", "envoy-jwt-rbac", "p99_us", 1.2, higher=False)
ratio("via Envoy: sessiongate / no auth, req/s", "envoy-sessiongate", "envoy-noauth", "rps", 0.5)
print("for reference, the ceiling of any ext_authz server (Envoy ext_authz -> do-nothing Check):")
def plain(name, a, b):
    print(f"{name:<52}{rows[a]['rps'] / rows[b]['rps']:>7.2f}x")
plain("  do-nothing / jwt_authn+rbac, req/s", "envoy-noop-authz", "envoy-jwt-rbac")
plain("  do-nothing / no auth, req/s", "envoy-noop-authz", "envoy-noauth")
plain("  sessiongate / do-nothing, req/s", "envoy-sessiongate", "envoy-noop-authz")
print("in-process (Envoy loading the sessiongate module, no hop per request):")
ratio("  module / jwt_authn+rbac, req/s", "envoy-module", "envoy-jwt-rbac", "rps", 1.0)
ratio("  module / jwt_authn+rbac, p99", "envoy-module", "envoy-jwt-rbac", "p99_us", 1.0, higher=False)
ratio("  module / no auth, req/s", "envoy-module", "envoy-noauth", "rps", 0.9)
def envoy_cpu(label):
    row = rows[label]
    return row["cpu_us"]["envoy"] / (row["ok"] + row["rps"] * float(sys.argv[3]))
value = envoy_cpu("envoy-module") / envoy_cpu("envoy-jwt-rbac")
print(f"{'  Envoy CPU per request, module / jwt_authn+rbac':<52}{value:>7.2f}x  (target <= 1.0x: {'met' if value <= 1.0 else 'MISSED'})")
plain("  module / ext_authz -> sessiongate, req/s", "envoy-module", "envoy-sessiongate")
ratio(f"uncached {alg}: sessiongate / raw verify (2 threads)", "grpc-uncached", "verify-raw", "rps", 0.8)
ratio(f"uncached {alg} through Envoy: module / raw verify (2 threads)", "envoy-module-uncached", "verify-raw", "rps", 0.8)
noauth = rows["envoy-noauth"]["rps"]
ceiling = 1 / (1 / rows["verify-raw"]["rps"] + 1 / noauth)
print(f"  a verify-only filter in Envoy (no auth's cost plus the raw verification): {ceiling:,.0f} req/s;")
print(f"  the module reaches {rows['envoy-module-uncached']['rps'] / ceiling:.2f}x of that")
# What the uncached figure is up against on one box: a server whose only work beyond the
# stack's were the raw verification would still pay the do-nothing server's cost per request.
verify, noop = rows["verify-raw"]["rps"], rows["grpc-noop"]["rps"]
ceiling = 1 / (1 / verify + 1 / noop)
print(f"  a raw-verify-only server behind this stack and load generator: {ceiling:,.0f} req/s = {ceiling / verify:.2f}x of raw;")
print(f"  sessiongate reaches {rows['grpc-uncached']['rps'] / ceiling:.2f}x of that")
cpu = rows["grpc-uncached"].get("cpu_us", {}).get("sessiongate")
if cpu:
    per_request = cpu / rows["grpc-uncached"]["ok"]
    per_verify = rows["verify-raw"].get("threads", 2) * 1e6 / verify
    print(f"  CPU per new session {per_request:.0f} µs, of which the raw verification {per_verify:.0f} µs ({per_verify / per_request:.2f}x)")
EOF
