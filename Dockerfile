# tradeloop: one image for the app (gunicorn -k gevent), the relay and the worker.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/tradeloop
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY setup.cfg pyproject.toml README.md* ./
COPY app ./app
COPY bus ./bus
COPY plugins ./plugins
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 1000 tradeloop
USER tradeloop
EXPOSE 8000
CMD ["gunicorn", "-k", "gevent", "--worker-connections", "10000", "--bind", "0.0.0.0:8000", "app.wsgi:app"]
