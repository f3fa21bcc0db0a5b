# syntax=docker/dockerfile:1
# mesh-guard container image.
#   docker build -t <registry>/mesh-guard:<tag> .
# Stages: build (npm ci + tsc), deps (production dependencies only), runtime (distroless Node,
# no shell, no package manager, numeric non-root user). test/deploy-image.test.ts runs the same
# install, build and start steps outside Docker.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs20-debian12:nonroot

# --- build: all dependencies, compile TypeScript to dist/ ------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build

# --- deps: production dependencies only --------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime -------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist/src ./dist/src
COPY --chown=0:0 package.json ./
# Files owned by root and read-only for the process; it writes nothing when TLS_CERT_FILE and
# TLS_KEY_FILE are set (the Deployment runs it with readOnlyRootFilesystem).
USER 65532:65532
EXPOSE 8443
# The distroless entrypoint is node itself; no shell is involved.
CMD ["dist/src/server/main.js"]
