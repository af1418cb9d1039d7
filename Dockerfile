# One image for every service and the rctc tool; the command picks what runs (docker-compose.yml, deploy/k8s/).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RCTC_LOG__FORMAT=json RCTC_OPS__HOST=0.0.0.0
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
COPY deploy/topics.yaml ./deploy/topics.yaml
COPY deploy/registry ./deploy/registry
RUN pip install --no-cache-dir '.[fast]' && useradd --system --uid 10001 rctc
USER rctc
# SIGTERM starts the bounded graceful shutdown of every service.
STOPSIGNAL SIGTERM
CMD ["rctc", "--help"]
