"""Heavy risk analyses off the gevent loop that serves requests.

The host's off-loop process pool (``app.jobs.offloop.run_cpu``: forkserver children at a lower
CPU priority, created on first use in each server process, ``CPU_POOL_SIZE`` processes) runs
pure functions (``risk.analysis_json``) and hands back their result; only the waiting
greenlet blocks, so ``/health`` and SSE keep running while a worker process computes.
Outside gevent (tests, CLI) it simply blocks. One pool per process serves every plugin.
"""
from __future__ import annotations

TIMEOUT_SECONDS = 120.0  # a runaway analysis is stopped (503 computation_timeout)


def run(fn, *args):
    """``fn(*args)`` in a worker process; its exception is re-raised here. A pool whose
    worker died is replaced, and the call is retried once (it is pure, so safe to repeat)."""
    from app.jobs.offloop import OffloopUnavailable, run_cpu
    try:
        return run_cpu(fn, *args, timeout=TIMEOUT_SECONDS)
    except OffloopUnavailable:
        return run_cpu(fn, *args, timeout=TIMEOUT_SECONDS)
