# Builds the nephrocare service image used by compose.yaml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nephrocare

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent nephrocare
COPY --from=build /src/target/release/nephrocare /usr/local/bin/nephrocare
USER nephrocare
EXPOSE 8080 1883 8083
ENTRYPOINT ["nephrocare"]
CMD ["serve"]
