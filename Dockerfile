# syntax=docker/dockerfile:1
#
# Dunetrace Sidecar: a small runtime image. Python slim, the daemon in a virtualenv built in a
# separate stage (no compilers, pip or caches in the final image), running as UID 10001.
#
#   docker build -t dunetrace-sidecar .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 8002:8002 \
#     -e DUNETRACE_API_KEYS=<a random key of 16+ characters> \
#     -v dunetrace-data:/var/lib/dunetrace dunetrace-sidecar
#
# The baked config (deploy/docker/config.yaml) listens on 0.0.0.0 and allows an API without keys
# only until DUNETRACE_API_KEYS is set: always set it (the Helm chart does, from a Secret).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel from these sources, installed with its dependencies into /opt/dunetrace ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proto/ proto/
COPY dunetrace_sidecar/ dunetrace_sidecar/
COPY receiver/ receiver/
COPY detectors/ detectors/
COPY store/ store/
COPY explain/ explain/
# Every dependency ships manylinux wheels for CPython 3.11, so nothing is compiled. pip compiles
# the bytecode at install time: the running container never writes .pyc files (read-only root).
RUN python -m venv /opt/dunetrace \
 && /opt/dunetrace/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
 && /opt/dunetrace/bin/pip install --no-cache-dir /tmp/wheels/dunetrace_sidecar-*.whl \
 && /opt/dunetrace/bin/pip uninstall --yes pip setuptools \
 && mkdir -p /var/lib/dunetrace

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="dunetrace-sidecar" \
      org.opencontainers.image.description="Receives an AI agent's OTLP traces and detects failures while the run is live." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/dunetrace/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/dunetrace /opt/dunetrace
COPY --from=build --chown=10001:10001 /var/lib/dunetrace /var/lib/dunetrace
COPY deploy/docker/config.yaml /etc/dunetrace/config.yaml
USER 10001:10001
WORKDIR /var/lib/dunetrace
VOLUME ["/var/lib/dunetrace"]
# OTLP/gRPC, OTLP/HTTP, the HTTP API (/healthz, /readyz, /metrics, /v1/...)
EXPOSE 4317 4318 8002
# No curl in a slim image: the daemon itself asks its /healthz, where its settings (the config
# file, DUNETRACE_* variables) put the API, over HTTPS when api.tls is set. Not 200: exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/dunetrace/bin/dunetrace-sidecar", "--config", "/etc/dunetrace/config.yaml", "healthcheck"]
ENTRYPOINT ["/opt/dunetrace/bin/dunetrace-sidecar"]
CMD ["--config", "/etc/dunetrace/config.yaml"]
