# sessiongate container image: a static-ish release build on Debian 12, run from distroless
# (glibc and libgcc, no shell, no package manager) as the unprivileged `nonroot` user (65532).
#
#   docker build -t sessiongate:dev .
#   docker run --rm -v "$PWD/examples:/etc/sessiongate:ro" sessiongate:dev \
#       check-config /etc/sessiongate/sessiongate.yaml
#
# The k8s/ manifests run it with a read-only root filesystem; the only place it writes is the
# revocation log (`revocation.path`), which they put on an emptyDir.

# The builder's Debian release must match the runtime's (bookworm = Debian 12): the binary links
# the glibc it was built against. The toolchain must be at least Cargo.toml's rust-version.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: build exactly the dependency versions the tests ran with. protox compiles the
# admin API's .proto files in Rust, so no protoc is needed.
RUN cargo build --release --locked --bin sessiongate \
 && install -D -m 0755 target/release/sessiongate /out/sessiongate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sessiongate /usr/local/bin/sessiongate
USER 65532:65532
# 9191 ext_authz gRPC (+ grpc.health.v1), 9192 ops HTTP (/metrics, /healthz, /readyz).
# The admin API (9193) is meant for loopback and is not exposed.
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["serve", "--config", "/etc/sessiongate/sessiongate.yaml", "--log-format", "json"]
