# sessiongate container image: a static-ish release build on Debian 12, run from distroless
# (glibc and libgcc, no shell, no package manager) as the unprivileged `nonroot` user (65532).
#
#   docker build -t sessiongate:dev .
#   docker run --rm -v "$PWD/examples:/etc/sessiongate:ro" sessiongate:dev \
#       check-config /etc/sessiongate/sessiongate.yaml
#
# The k8s/ manifests run it with a read-only root filesystem; the only place it writes is the
# revocation log (`revocation.path`), which they put on an emptyDir.
#
# The image also carries the in-process mode's Envoy dynamic module, built from the same
# commit: /usr/local/lib/sessiongate/libsessiongate_envoy.so (Envoy 1.40.x only; README,
# "In-process mode"). An Envoy container gets it from an init container running this image,
# which copies it into an emptyDir both containers mount (the image has no shell or `cp`):
#
#   initContainers: [{ name: sessiongate-module, image: <this image>,
#                      args: ["install-module", "/modules"], volumeMounts: [<emptyDir at /modules>] }]
#
# and Envoy runs with ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/modules (k8s/module/deployment.yaml).

# The builder's Debian release must match the runtime's (bookworm = Debian 12): the binary links
# the glibc it was built against. The toolchain must be at least Cargo.toml's rust-version.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly the dependency versions the tests ran with. protox compiles the
# admin API's .proto files in Rust, so no protoc is needed. One build for the server and the
# module, so both come from the same dependency graph.
RUN cargo build --release --locked --bin sessiongate -p sessiongate-envoy-module \
 && install -D -m 0755 target/release/sessiongate /out/sessiongate \
 && install -D -m 0644 target/release/libsessiongate_envoy.so /out/libsessiongate_envoy.so

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sessiongate /usr/local/bin/sessiongate
COPY --from=build /out/libsessiongate_envoy.so /usr/local/lib/sessiongate/libsessiongate_envoy.so
USER 65532:65532
# 9191 ext_authz gRPC (+ grpc.health.v1), 9192 ops HTTP (/metrics, /healthz, /readyz).
# The admin API (9193) is meant for loopback and is not exposed.
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["serve", "--config", "/etc/sessiongate/sessiongate.yaml", "--log-format", "json"]
