"""Heavy risk analyses off the gevent loop that serves requests.

A small process pool (``spawn`` start method: a gevent-patched process is never forked),
created on first use in each server process, runs pure functions (``risk.analysis_json``)
and hands back their result. Waiting on the future is cooperative under gevent: the
executor's manager thread and the future's condition are gevent-patched, so other
greenlets (``/health``, SSE) keep running while a worker process computes. Outside gevent
(tests, CLI) it simply blocks.

``RISKGRAPH_POOL_WORKERS`` (default 1) sets the pool size: an analysis is already
vectorised, so one process per spare core is the useful maximum.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            workers = max(1, int(os.environ.get("RISKGRAPH_POOL_WORKERS", "1")))
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def run(fn, *args):
    """``fn(*args)`` in a worker process; its exception is re-raised here. A pool whose
    worker died is replaced once, then the call is retried (it is pure, so safe to repeat)."""
    global _pool
    try:
        return _executor().submit(fn, *args).result()
    except BrokenProcessPool:
        with _lock:
            _pool = None
        return _executor().submit(fn, *args).result()
