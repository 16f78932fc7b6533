# The orchestrator image: one image for the worker, the API and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# every Python object through malloc, whose free pages the worker hands back: Python's own
# arenas kept a burst of open handoffs resident for good (orchestrator/allocator.py)
ENV PYTHONMALLOC=malloc
WORKDIR /app

COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
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
