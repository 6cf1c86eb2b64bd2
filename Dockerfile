# syntax=docker/dockerfile:1.7
#
# One multi-target Dockerfile for the three Floodgate binaries:
#
#   docker build --target app      -t floodgate-app:0.1.0 .
#   docker build --target operator -t floodgate-operator:0.1.0 .
#   docker build --target loadtest -t floodgate-loadtest:0.1.0 .
#
# Stages: `chef` (toolchain + cargo-chef) -> `planner` (dependency recipe from the manifests)
# -> `builder` (dependencies cooked in their own layer, then the workspace) -> one runtime
# target per binary. The app and the operator run on distroless `cc` (glibc, CA certificates,
# no shell, no package manager) as the distroless `nonroot` user (65532). The load generator
# runs on Debian slim, also as 65532: it is a client tool, and the Indexed Job in
# loadtest/k8s/job.yaml drives its shards through /bin/sh (segment index, exit-code mapping,
# globbing shard summaries). Changing only Rust sources reuses the cooked dependency layer.
#
# VERSION and REVISION (the workspace version and the git commit) become the
# org.opencontainers.image.version/revision labels; a build must pass both:
#   --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)"
# `make images` (scripts/images.sh) builds the same three images without an engine: it reads
# every runtime setting below (labels, env, user, ports, entrypoint, cmd, binary path) from
# this file, so this file is the one home of those values.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG LOADTEST_RUNTIME_IMAGE=debian:bookworm-slim

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer stays cached until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
        --bin floodgate-app --bin floodgate-operator --bin floodgate-loadtest \
    && mkdir -p /out \
    && cp target/release/floodgate-app target/release/floodgate-operator \
          target/release/floodgate-loadtest /out/

# ---------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS app
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="floodgate-app" \
      org.opencontainers.image.description="Floodgate commerce API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/floodgate-app /usr/local/bin/floodgate-app
ENV FLOODGATE_LISTEN_ADDR=0.0.0.0:8080 \
    FLOODGATE_ENV=production
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/floodgate-app"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS operator
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="floodgate-operator" \
      org.opencontainers.image.description="Kubernetes operator for Floodgate Campaign and QueueConfig" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/floodgate-operator /usr/local/bin/floodgate-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/floodgate-operator"]
CMD ["controller", "--listen", "0.0.0.0:9090"]

# ---------------------------------------------------------------------------------------
FROM ${LOADTEST_RUNTIME_IMAGE} AS loadtest
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="floodgate-loadtest" \
      org.opencontainers.image.description="Floodgate load generator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/floodgate-loadtest /usr/local/bin/floodgate-loadtest
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/floodgate-loadtest"]
CMD ["--help"]
