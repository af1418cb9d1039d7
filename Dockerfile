# One image for every service and the rctc tool; the command picks what runs (docker-compose.yml, deploy/k8s/).
# The package is installed from its wheel, non-editable, as an operator installs it anywhere: the schemas and the
# topic declarations are package data inside it (pyproject.toml), so the code needs no source tree beside it.
# tests/unit/test_dockerfile.py lints this file (hadolint) and checks what compose and Kubernetes run from it.

# The wheel alone: its build tools and the source stay in this stage.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RCTC_LOG__FORMAT=json RCTC_OPS__HOST=0.0.0.0
# openssl: docker-compose's init makes the broker's CA and certificate and every random secret with it
# (deploy/compose/init.sh, deploy/kafka/make-pki.sh); the slim image has the library but not the command.
# Not pinned to a version: Debian's security updates replace it in the archive, so a pinned one stops building.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
# The wheel's dependencies are pinned by its own metadata (pyproject.toml), as for any installed package.
# hadolint ignore=DL3013
RUN for wheel in /wheels/*.whl; do pip install --no-cache-dir "${wheel}[fast]"; done \
    && rm -rf /wheels && useradd --system --uid 10001 rctc
# Not code: the deployments' scripts and the demo's registry, which compose and the Kubernetes Job run from /app.
COPY deploy/bootstrap.sh ./deploy/
COPY deploy/registry ./deploy/registry
COPY deploy/compose ./deploy/compose
COPY deploy/kafka/make-pki.sh deploy/kafka/server.properties.template ./deploy/kafka/
# A number, not the name: Kubernetes' runAsNonRoot can verify only a numeric user. The uid owns the secrets
# compose's init writes; Kubernetes gives it the mounted ones through fsGroup (deploy/k8s/rctc.yaml).
USER 10001
# SIGTERM starts the bounded graceful shutdown of every service.
STOPSIGNAL SIGTERM
CMD ["rctc", "--help"]
