# syntax=docker/dockerfile:1
#
# sidekick container image: one statically linked binary on distroless/static
# (CA certificates, /etc/passwd with the nonroot user, tzdata; no shell).
#
#   docker build -t sidekick .
#   docker run --rm -p 8080:8080 sidekick --health-path=/minio/health/ready http://minio{1...4}:9000
#
# The binary is linked statically against glibc (crt-static): no libc in the image,
# and glibc's allocator and resolver (files, then DNS with the search domains of
# /etc/resolv.conf, as Kubernetes needs) rather than musl's. The target triple is the
# build platform's, so `docker buildx build --platform linux/arm64` works as well.

FROM rust:1-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# .dockerignore lets only Cargo.toml, Cargo.lock and src/ in.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target"; \
    install -D -m 0755 "target/$target/release/sidekick" /out/sidekick; \
    if readelf -d /out/sidekick | grep -q NEEDED; then \
        echo "sidekick is not statically linked" >&2; exit 1; \
    fi; \
    /out/sidekick --version; \
    /out/sidekick --check --health-path=/minio/health/ready 'http://minio{1...4}:9000'

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="sidekick" \
      org.opencontainers.image.description="High-performance sidecar HTTP load balancer" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"
COPY --from=build /out/sidekick /usr/local/bin/sidekick
# Numeric, so that Kubernetes' runAsNonRoot can verify it (65532 is distroless' nonroot).
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: the image has no shell and no HTTP client to run one. Probe
# GET /v1/health on port 8080 from outside instead (200 while any backend is up,
# 502 otherwise): Kubernetes readiness and liveness probes in deploy/k8s/. Where a
# Docker HEALTHCHECK is a must, build on gcr.io/distroless/static-debian12:debug-nonroot
# and check with busybox: ["CMD", "/busybox/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/v1/health"].
# SIGTERM drains in-flight requests for up to 30 s: give it a stop timeout of 35 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sidekick"]
