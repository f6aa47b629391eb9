"""gunicorn settings for several worker processes with one /metrics (``gunicorn -c
python:app.gunicorn_conf app.wsgi:app``; docs/operations.md).

prometheus_client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker
keeps its counters in files in that directory and ``/metrics`` in any worker adds them up.
The directory is emptied when the master starts (stale files would count twice), and a
worker's live gauges (SSE connections) are dropped when it exits.
"""
import os
import shutil

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gevent"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))  # SSE streams hold one each


def on_starting(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
