# syntax=docker/dockerfile:1
#
# Herald's image: a small Debian runtime with one static-ish binary, run as a non-root user.
#   docker build -t herald .
#   docker run -e HERALD_DATABASE_URL=postgres://... -e HERALD_API_TOKENS=... \
#     -e HERALD_ENCRYPTION_KEY=$(openssl rand -base64 32) -p 8071:8071 herald
#   docker run --rm herald verify --secret whsec_... --id ... --timestamp ... --signature ... < body
# or, with PostgreSQL, `docker compose up` (see docker-compose.yml and the README).

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies only, in their own layer: it is rebuilt when Cargo.toml/Cargo.lock change,
#    not on every source edit. Cargo refuses a manifest whose declared targets are missing,
#    so every `path = "..."` in Cargo.toml gets a stub (the real sources are copied below).
COPY Cargo.toml Cargo.lock ./
RUN grep -o '^path = "[^"]*"' Cargo.toml | cut -d'"' -f2 | while read -r target; do \
        mkdir -p "$(dirname "$target")" && echo 'fn main() {}' > "$target"; \
    done \
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
# Readiness: the database answers and every dispatcher actor sent a heartbeat recently
# (`herald healthcheck --live` would only check that the process serves HTTP). Every role
# listens on HERALD_LISTEN, worker-only replicas included, so this works for all of them.
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/herald", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["serve"]
