# syntax=docker/dockerfile:1
# Deadbolt's image: deadbolt-operator (the entrypoint) and deadbolt-sidecar in
# /usr/local/bin, on distroless cc (glibc, libgcc, CA certificates; no shell),
# running as nonroot (65532).
#
#   docker build -t ghcr.io/deadbolt-dev/deadbolt:0.1.0 .
#
# Without Docker, scripts/image-layout.sh assembles the same image from
# already-built binaries as an OCI image layout.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and target/ between builds; the binaries are
# copied out of target/ in the same step, since a cache mount is not part of
# the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p deadbolt-operator -p deadbolt-sidecar \
 && install -D -m 0755 target/release/deadbolt-operator /out/deadbolt-operator \
 && install -D -m 0755 target/release/deadbolt-sidecar /out/deadbolt-sidecar

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="deadbolt" \
      org.opencontainers.image.description="Deadbolt operator and proxy sidecars" \
      org.opencontainers.image.source="https://github.com/deadbolt-dev/deadbolt" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/deadbolt-operator /out/deadbolt-sidecar /usr/local/bin/
USER 65532:65532
# lock view, webhooks, metrics (the sidecars listen where their flags say).
EXPOSE 8443 9443 9090
ENTRYPOINT ["/usr/local/bin/deadbolt-operator"]
