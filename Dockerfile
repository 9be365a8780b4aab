# syntax=docker/dockerfile:1
# innohook: multi-stage build, small non-root runtime image. Needs BuildKit (the default
# since Docker 23; the cache mounts below): the classic builder refuses it.
#   docker build -t innohook .
#   docker run -p 8080:8080 -v innohook-data:/data -e INNOHOOK_AUTH__AUTHORIZATION='Bearer …' innohook

FROM rust:1-bookworm AS build
WORKDIR /src
# The whole crate (.dockerignore leaves out target/ and .git/), so every target Cargo.toml
# names is there; the registry and the target directory are BuildKit caches, so a rebuild
# compiles only what changed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin innohook \
    && cp target/release/innohook /usr/local/bin/innohook \
    && strip --strip-debug /usr/local/bin/innohook

FROM debian:bookworm-slim
# CA certificates: TLS to a NATS server, a RabbitMQ broker or a forward target under a
# public CA checks against the system's roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /data innohook \
    && mkdir /data && chown innohook /data
COPY --from=build /usr/local/bin/innohook /usr/local/bin/innohook
# The built-in defaults are the image's: listen 0.0.0.0:8080, store ./data (= /data from
# the working directory /), log sink on. Override any key with INNOHOOK_<SECTION>__<KEY>,
# or mount a file and set INNOHOOK_CONFIG to it (not --config, which the HEALTHCHECK would
# not see; no ENV here, so the file's values are not overridden).
WORKDIR /
USER innohook
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["innohook", "healthcheck"]
ENTRYPOINT ["innohook"]
CMD ["serve"]
