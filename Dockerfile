# The orchestrator image: one image for the worker, the API and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# every Python object through malloc, and malloc is jemalloc, which hands free pages back by
# itself: otherwise a burst of open handoffs stays resident (orchestrator/allocator.py)
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONMALLOC=malloc
ENV LD_PRELOAD=libjemalloc.so.2
ENV MALLOC_CONF=background_thread:true
WORKDIR /app

COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY cli ./cli
COPY pipeline ./pipeline
COPY db ./db
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api
COPY simulation ./simulation
COPY worker.py ./
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 orchestrator
USER orchestrator

CMD ["orchestrator", "worker"]
