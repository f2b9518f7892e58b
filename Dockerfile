# rje: one image for every kind of process (rje serve, rje worker, rje migrate).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rje

FROM debian:bookworm-slim
# procps: `ps`/`kill` for operators; the worker itself needs only `sh`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/rje rje
COPY --from=build /src/target/release/rje /usr/local/bin/rje
USER rje
WORKDIR /var/lib/rje
ENV RJE_BIND=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["rje"]
CMD ["serve"]
