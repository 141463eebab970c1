# syntax=docker/dockerfile:1
# One slim image for both processes of the platform:
#   docker run IMAGE                 -> tcloud-api (API + portal on TCLOUD_API_HOST:TCLOUD_API_PORT, 0.0.0.0:3000;
#                                       the Cloud Ops API over gRPC on TCLOUD_CLOUD_API_PORT, :3001)
#   docker run IMAGE tcloud-worker   -> the control-plane worker (metrics on :9464)
# Configuration is the TCLOUD_* environment (tcloud/settings.py); the Helm chart in charts/tcloud sets it.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

# --- The portal's front-end packages, exactly as package-lock.json pins them.
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# --- The project and its dependencies in a virtualenv (no compilers in the final image).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml ./
COPY tcloud ./tcloud
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
# Editable install: the code stays in /app, where the API finds api/static and /app/node_modules.
RUN pip install -e .

# --- Runtime.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tcloud" \
      org.opencontainers.image.description="Self-hosted Temporal-as-a-Service control plane: API and worker" \
      org.opencontainers.image.source="https://github.com/tcloud/tcloud"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TCLOUD_API_HOST=0.0.0.0 \
    TCLOUD_API_PORT=3000 \
    TCLOUD_WORKER_METRICS_HOST=0.0.0.0 \
    TCLOUD_WORKER_METRICS_PORT=9464 \
    TCLOUD_STATE_DIR=/var/lib/tcloud
RUN groupadd --system --gid 10001 tcloud \
    && useradd --system --uid 10001 --gid tcloud --home-dir /var/lib/tcloud --create-home tcloud
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --from=frontend /src/node_modules /app/node_modules
WORKDIR /app
USER 10001:10001
EXPOSE 3000 3001 9464
# The API's liveness endpoint; for the worker, set HEALTHCHECK_URL=http://127.0.0.1:9464/metrics.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:3000/healthz'), timeout=4)"]
CMD ["tcloud-api"]
