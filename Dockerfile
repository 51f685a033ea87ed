# pgsplit and users-api in one small image (docker-compose.yml runs both
# from it). Build: docker build -t pgsplit .
#
# Stage 1 builds with the full Rust toolchain; stage 2 is Debian slim with
# just the two stripped binaries (no TLS library: neither binary uses TLS).

# The release rust-toolchain.toml pins: the image has it installed, so the
# file copied below picks it without a download.
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer, so that editing pgsplit's source
# does not rebuild them: build the manifest with empty stand-in sources.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# Cargo.toml names tests/users_api.rs (a [[test]] with required-features):
# Cargo wants the file to exist even when not building tests.
RUN mkdir -p src/bin/users_api tests \
 && touch tests/users_api.rs \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/users_api/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --features demo --bin pgsplit --bin users-api \
 && rm -rf src

COPY src ./src
# The stand-ins above are newer than nothing Cargo tracks: touch the real
# roots so both crates are rebuilt from them.
RUN touch src/main.rs src/lib.rs src/bin/users_api/main.rs \
 && cargo build --release --locked --features demo --bin pgsplit --bin users-api \
 && strip target/release/pgsplit target/release/users-api

FROM debian:bookworm-slim
# An unprivileged user; nothing here needs root.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgsplit
COPY --from=builder /src/target/release/pgsplit /src/target/release/users-api /usr/local/bin/
USER pgsplit
# 6432: PostgreSQL clients; 9930: /metrics, /status, /healthz; 8000: users-api.
EXPOSE 6432 9930 8000
CMD ["pgsplit", "--help"]
