# syntax=docker/dockerfile:1
#
# Herald's image: a small Debian runtime with one static-ish binary, run as a non-root user.
#   docker build -t herald .
#   docker run -e HERALD_DATABASE_URL=postgres://... -e HERALD_API_TOKENS=... -p 8071:8071 herald

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies only, in their own layer: it is rebuilt when Cargo.toml/Cargo.lock change,
#    not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/herald-bench \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/herald-bench/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin herald \
 && rm -rf src

# 2. Herald itself. Migrations are embedded into the binary at build time.
COPY src ./src
COPY migrations ./migrations
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked --bin herald \
 && strip target/release/herald

FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid herald --no-create-home --shell /usr/sbin/nologin herald
WORKDIR /app
COPY --from=build /src/target/release/herald /usr/local/bin/herald
COPY config ./config
ENV HERALD_CONFIG_DIR=/app/config \
    HERALD_ENVIRONMENT=production \
    HERALD_LISTEN=0.0.0.0:8071
USER herald:herald
EXPOSE 8071
# SIGTERM drains in-flight deliveries (HERALD_SHUTDOWN_GRACE, default 20s): give the
# orchestrator's stop timeout a little more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/herald"]
