# TracSeq Events in containers: the event service and the REST bridge
# (docker-compose.yml runs both, with Redis 7).
#
# Stages:
#   build     Debian 12, scripts/install-deps.sh build, then the CMake path of
#             the README's `make build` (configure RelWithDebInfo into build/,
#             build), installed with `cmake --install` (components service,
#             bridge, cli) into /opt/tracseq
#   runtime   debian:bookworm-slim with only the shared libraries
#             (scripts/install-deps.sh runtime), a non-root user, and the
#             programs: tracseq-events, tracseq-rest-bridge, eventctl
#   bridge    runtime + the bridge's command and health check (/health)
#   service   runtime + the service's command and health check (eventctl
#             health: SERVING once Redis answers); the default target
#
#   docker build -t tracseq-events .                      # the service
#   docker build --target bridge -t tracseq-rest-bridge .
#
# Settings come from the environment (README, Configuration).

FROM debian:bookworm AS build
WORKDIR /src
# The package list first, so the dependency layer survives source edits.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN ./scripts/install-deps.sh build
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j"$(nproc)" --target tracseq-events tracseq-rest-bridge eventctl \
 && cmake --install build --prefix /opt/tracseq --component service --strip \
 && cmake --install build --prefix /opt/tracseq --component bridge --strip \
 && cmake --install build --prefix /opt/tracseq --component cli --strip

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin tracseq
COPY --from=build /opt/tracseq/bin/ /usr/local/bin/
USER tracseq
# No settings file in the image: /etc/tracseq-events/ is empty, the
# environment sets everything. GRPC_LISTEN is every interface (a container
# must): the service then starts only with AUTH_TOKENS_FILE (mount the
# tokens file) or ALLOW_UNAUTHENTICATED_REMOTE=true (docker-compose.yml,
# host ports on loopback); docs/security.md.
ENV GRPC_LISTEN=0.0.0.0:50051 \
    EVENT_SERVICE_ADDR=event-service:50051 \
    HOST=0.0.0.0 \
    PORT=8087

FROM runtime AS bridge
EXPOSE 8087
# GET /health over bash's /dev/tcp (no curl in the image): healthy on 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
CMD ["tracseq-rest-bridge"]

FROM runtime AS service
EXPOSE 50051
# grpc.health.v1 Check: exit 0 only when SERVING (Redis reachable).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["sh", "-c", "exec eventctl --server \"127.0.0.1:${GRPC_LISTEN##*:}\" --timeout 4000 health"]
STOPSIGNAL SIGTERM
CMD ["tracseq-events"]
