# Builds TracSeq Events on Debian 12 (the platform it is developed and tested
# on) and ships the binaries in a slim Debian 12 image.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN apt-get update && ./scripts/install-deps.sh \
 && cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j"$(nproc)" --target tracseq-events \
 && (cmake --build build -j"$(nproc)" --target tracseq-rest-bridge || true) \
 && mkdir -p /opt/tracseq && cp build/tracseq-events /opt/tracseq/ \
 && (cp build/rest-bridge/tracseq-rest-bridge /opt/tracseq/ || true)

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libhiredis0.14 libuuid1 libjansson4 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/tracseq /opt/tracseq
EXPOSE 50051 8087
CMD ["/opt/tracseq/tracseq-events"]
