# syntax=docker/dockerfile:1
# mesh-guard container image.
#   docker build -t <registry>/mesh-guard:<tag> .
# Stages: build (npm ci + tsc), deps (production dependencies only), runtime (distroless Node,
# no shell, no package manager, numeric non-root user). test/deploy-image.test.ts runs the same
# install, build and start steps outside Docker, and keeps the Node major of the three stages and
# of CI's Node 24 run (scripts/node24.sh) the same.
#
# Node 24 LTS ('Krypton'). distroless publishes its Node images for Debian 13 only (nodejs22, 24
# and 26-debian13, GoogleContainerTools/distroless README.md and nodejs/config.bzl; the debian12
# builds were removed, nodejs20 is deprecated), so the build stages use Debian 13 (trixie) too.

ARG NODE_IMAGE=node:24-trixie-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian13:nonroot

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
# MALLOC_ARENA_MAX=2, as `npm start` sets it: glibc gives every thread that allocates (libuv's
# pool writing logs, the certificate worker) its own malloc arena, and those are never handed
# back; two arenas keep ~5 MiB off the resident size (bench/RESULTS.md).
ENV NODE_ENV=production MALLOC_ARENA_MAX=2
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --from=build --chown=0:0 /app/dist/src ./dist/src
COPY --chown=0:0 package.json ./
# Files owned by root and read-only for the process; it writes nothing when TLS_CERT_FILE and
# TLS_KEY_FILE are set (the Deployment runs it with readOnlyRootFilesystem).
USER 65532:65532
EXPOSE 8443
# The distroless entrypoint is node itself; no shell is involved. The flags are `npm start`'s:
# node's own code on 2 MiB pages where the kernel allows transparent huge pages (fewer TLB
# misses per review; a no-op, without a warning, where it does not), and an 8 MiB semi-space,
# which caps V8's young generation at 16 MiB instead of 32 MiB and keeps ~15 MiB off the
# resident size under load at no measurable CPU cost (bench/RESULTS.md, changes 8 and 16).
CMD ["--max-semi-space-size=8", "dist/src/server/main.js"]
