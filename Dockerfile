# One image for every service and the rctc tool; the command picks what runs (docker-compose.yml, deploy/k8s/).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RCTC_LOG__FORMAT=json RCTC_OPS__HOST=0.0.0.0
# The code finds deploy/topics.yaml and schemas/ beside its own package (services/common/topics.py, codec.py):
# /app/services must be the one imported, by `rctc` too, not the copy pip puts in site-packages.
ENV PYTHONPATH=/app
# openssl: docker-compose's init makes the broker's CA and certificate and every random secret with it
# (deploy/compose/init.sh, deploy/kafka/make-pki.sh); the slim image has the library but not the command.
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
COPY deploy/topics.yaml deploy/bootstrap.sh ./deploy/
COPY deploy/registry ./deploy/registry
COPY deploy/compose ./deploy/compose
COPY deploy/kafka/make-pki.sh deploy/kafka/server.properties.template ./deploy/kafka/
RUN pip install --no-cache-dir '.[fast]' && useradd --system --uid 10001 rctc
# A number, not the name: Kubernetes' runAsNonRoot can verify only a numeric user. The uid owns the secrets
# compose's init writes; Kubernetes gives it the mounted ones through fsGroup (deploy/k8s/rctc.yaml).
USER 10001
# SIGTERM starts the bounded graceful shutdown of every service.
STOPSIGNAL SIGTERM
CMD ["rctc", "--help"]
