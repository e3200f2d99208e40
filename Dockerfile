# syntax=docker/dockerfile:1
# trm-forge, two targets from one file:
#   docker build --target cpu -t trm-forge:0.1.0-cpu .   Node 22 + OpenBLAS (native kernels only)
#   docker build --target gpu -t trm-forge:0.1.0-gpu .   CUDA 11.2 + cuDNN 8.1 (tfjs-node-gpu 4.22)
# Both run `trm-forge serve --http` as user 10001 and keep nothing writable outside /data and /tmp,
# so `docker run --read-only --tmpfs /tmp -v trm-forge-data:/data` works, as does the k8s Deployment.
#
# /app is the package as `npm pack` ships it (package.json `files`), its production dependencies
# from the lock file, and the native kernels built in the build stage (the runtime has no
# compiler). test/k8s/packed-install.test.ts repeats these steps without Docker and runs the result.
# The cpu image has no tfjs-node: `backend: auto` picks the native kernels there, the backend the
# parity and speed tests run.
#
# tfjs-node-gpu 4.22 loads libtensorflow 2.9.1, which TensorFlow built and tested against CUDA 11.2
# and cuDNN 8.1: the gpu runtime base is that pair. Node 22 is copied in from the official image
# (its binaries need glibc >= 2.28; Ubuntu 20.04 has 2.31).

ARG NODE_VERSION=22.20.0
ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

# ---- Node itself (binary, npm and headers), for the CUDA-based stages ---------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS node

# ---- cpu: build ---------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas-dev g++ make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first (cached while only the sources change); scripts run once everything is here.
# No optional dependencies: they are the tfjs-node builds, which this image does not ship.
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json binding.gyp ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build \
 && npm pack --ignore-scripts --pack-destination /tmp
# The packed package with the lock file's production dependencies; the native kernels are built
# here (and the build fails if they did not build).
WORKDIR /app
RUN tar -xzf /tmp/trm-forge-*.tgz --strip-components=1 \
 && cp /src/package-lock.json ./ \
 && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
 && npm run install \
 && node -e "process.exit(require('./build/native-status.json').built ? 0 : 1)" \
 && rm -rf build/Release/obj.target \
 && chmod 0755 dist/cli.js

# ---- cpu: runtime -------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 trm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin trm \
 && mkdir -p /data \
 && chown 10001:10001 /data
WORKDIR /app
# Code stays root-owned and read-only to the process.
COPY --from=build-cpu /app /app
RUN ln -s /app/dist/cli.js /usr/local/bin/trm-forge
ENV NODE_ENV=production HOME=/data
WORKDIR /data
USER 10001:10001
EXPOSE 8750
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8750/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["trm-forge"]
CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "8750"]

# ---- gpu: build ---------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build-gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas-dev g++ make python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/include/node /usr/local/include/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json binding.gyp ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build \
 && npm pack --ignore-scripts --pack-destination /tmp
# As the cpu build, plus tfjs-node-gpu (an optional dependency) with its install script, which
# downloads libtensorflow; the cpu tfjs-node build is dropped.
WORKDIR /app
RUN tar -xzf /tmp/trm-forge-*.tgz --strip-components=1 \
 && cp /src/package-lock.json ./ \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm run install \
 && node -e "process.exit(require('./build/native-status.json').built ? 0 : 1)" \
 && rm -rf node_modules/@tensorflow/tfjs-node build/Release/obj.target \
 && npm rebuild @tensorflow/tfjs-node-gpu --no-audit --no-fund \
 && chmod 0755 dist/cli.js

# ---- gpu: runtime -------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 trm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin trm \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build-gpu /app /app
RUN ln -s /app/dist/cli.js /usr/local/bin/trm-forge
ENV NODE_ENV=production HOME=/data
WORKDIR /data
USER 10001:10001
EXPOSE 8750
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8750/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["trm-forge"]
CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "8750"]
