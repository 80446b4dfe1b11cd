# syntax=docker/dockerfile:1
# Multi-stage: build with the Swift toolchain, run on a slim Debian with only the runtime libraries of hiredis and
# libargon2, as non-root.

FROM swift:6.3-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis-dev libargon2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every path Package.swift names must be in the context, or SwiftPM refuses the manifest.
COPY Package.swift ./
COPY Tests ./Tests
COPY Sources ./Sources
COPY Benchmarks ./Benchmarks
COPY Examples ./Examples
RUN swift package resolve \
    && swift build -c release --product session-service --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/session-service" /usr/local/bin/session-service

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis0.14 libargon2-1 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /usr/local/bin/session-service /usr/local/bin/session-service
USER 10001
ENV HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/session-service"]
