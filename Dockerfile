# syntax=docker/dockerfile:1
# The agent's image: one binary on distroless, running as uid 65532.
#
#   docker build -t queue-scaler:0.1.0 .        (or: podman build, buildah bud, kaniko; BuildKit for the cache mounts)
#   docker build --build-arg FEATURES=kube,rabbitmq -t queue-scaler:0.1.0-rabbitmq .
#
# FEATURES picks what is built in: `agent` (the default) is every source and the cluster client; a smaller image
# names `kube` and its sources (kafka, rabbitmq, sqs, pubsub, prometheus). A config naming a source the image was
# built without fails `check` and `run` with the feature to add.
#
# Static as far as is realistic: OpenSSL (which librdkafka links) and zlib are linked statically, so the binary
# needs only glibc and libgcc_s, which distroless/cc provides. A fully static musl build would need a musl-built
# OpenSSL (rdkafka's ssl-vendored feature) and buys little over this.

FROM rust:1.95-bookworm AS build
# libssl-dev ships libssl.a and libcrypto.a.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
# LIBZ_SYS_STATIC builds zlib into the binary. openssl-sys honours OPENSSL_STATIC only when told where OpenSSL is
# (pkg-config would choose the shared libraries), hence the directories, which depend on the build machine's arch.
ENV LIBZ_SYS_STATIC=1 \
    OPENSSL_STATIC=1 \
    OPENSSL_INCLUDE_DIR=/usr/include \
    CARGO_TERM_COLOR=never
ARG FEATURES=agent
WORKDIR /src
COPY . .
# The last line refuses a binary that would look for OpenSSL or zlib at run time: distroless/cc has neither.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    OPENSSL_LIB_DIR="/usr/lib/$(gcc -dumpmachine)" cargo build --release --locked --bin queue-scaler \
       --no-default-features --features "$FEATURES" \
 && cp target/release/queue-scaler /queue-scaler \
 && ! ldd /queue-scaler | grep -E 'lib(ssl|crypto|z)\.so'

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /queue-scaler /usr/local/bin/queue-scaler
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/queue-scaler"]
CMD ["run", "--config", "/etc/queue-scaler/config.yaml", "--log-format", "json"]
