# syntax=docker/dockerfile:1
# The netfence image: the release binary on distroless, as a non-root user.
#   docker build -t ghcr.io/netfence/netfence:0.1.0 .
# The binary links only glibc (libc, libm) and libgcc_s (rustls with ring: no OpenSSL), which
# the distroless cc image carries; its `nonroot` variant runs as 65532, the user config/manager
# expects (operator/tests/deploy.rs checks that they agree).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: exactly the crate versions of Cargo.lock. --no-default-features: without the
# `sandbox` feature, so the image carries no in-memory API server (a test double); its
# `netfence sandbox` says which build has one (.ci/run checks the binary). The caches keep the
# registry and the build between image builds; the binary is copied out of the cached target
# directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p netfence --no-default-features \
    && cp target/release/netfence /usr/local/bin/netfence
# The release profile builds no debug info; the image keeps the symbols, so a panic still names
# its functions, and drops any debug section the standard library brings.
RUN strip --strip-debug /usr/local/bin/netfence

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/netfence /netfence
USER 65532:65532
# glibc's malloc gives each thread that allocates an arena of its own, and memory freed in one
# arena is not reused by another: at 10,000 namespaces two arenas took the operator's peak RSS
# from 100.4 to 94.6 MiB (the template fan-out), one arena to 90.7-92.1 MiB against 95.8-97.0
# with two on 2026-12-05, at no cost in time the runs could show (docs/performance.md, 27).
# The scale benchmark runs its operator with the ENV lines of this file that start with MALLOC_
# (one KEY=value each).
ENV MALLOC_ARENA_MAX=1
EXPOSE 8080
ENTRYPOINT ["/netfence"]
