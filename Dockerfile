# The pipeline image: `siem` is the entrypoint, so `docker run IMAGE run|demo|setup kibana|...` runs sub-commands.

# Build stage: the parsers and the Sigma engine are compiled to C extensions by mypyc at install (setup.py), which
# needs a C compiler; the runtime image gets only the built wheel.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="siem-pipeline" \
      org.opencontainers.image.description="Streaming SIEM: Kafka -> ECS -> Sigma -> Elasticsearch" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid so orchestrators can verify runAsNonRoot.
RUN groupadd --system --gid 10001 siem \
 && useradd --system --uid 10001 --gid siem --home-dir /app --no-create-home --shell /usr/sbin/nologin siem

WORKDIR /app
# .dockerignore keeps the virtualenv, the local stack, git data and caches out of the context.
COPY . /app
# Installs the compiled package and its pinned-range dependencies (binary wheels exist for all of them on 3.11).
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && siem --help >/dev/null

# Rules and samples are data files next to the code, not part of the installed package, so point the
# settings at the copies in /app (the default is relative to the installed `siem` package).
ENV SIEM_RULES__DIRECTORIES='["/app/sigma_rules"]'

USER 10001:10001

# Prometheus /metrics and /healthz of `siem run` (PipelineSettings.metrics_port).
EXPOSE 19464

ENTRYPOINT ["siem"]
CMD ["run"]
