# Every pp binary in one image, for docker-compose.yml's "app" profile.
# Build: docker compose --profile app build   (or: docker build -t pp .)

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home pp
COPY --from=build /out/ /usr/local/bin/
USER pp
ENV RUST_LOG=info
EXPOSE 3000
CMD ["pp_backend_api"]
