"""CPU work a request must wait for, off the gevent loop: a process pool awaited cooperatively.

For ``math`` (issue 15's heavy riskgraph analyses) and anyone with a CPU-bound computation of
roughly 50 ms to a few seconds whose result the response needs. Longer work, or work the
client need not wait for, should be a job (``register_job_kinds``) instead.

    from app.jobs.offloop import run_cpu

    result = run_cpu(analyze_grid, legs, grid, timeout=30)   # in a view or service function

Rules for ``fn`` and its data:

* ``fn`` is a module-level function (pickled by reference, imported in the child);
  arguments and the result are plain picklable data (dicts, Decimals, numpy arrays). No
  database connections, no Flask objects: load in the request, compute in the pool, save in
  the request.
* Only the calling greenlet waits; the loop keeps serving /health, SSE and every other
  request meanwhile (a test holds /health p99 under 50 ms while a pool computation runs).
* Without gevent (CLI, tests, a job worker) the call simply blocks.

The pool: ``CPU_POOL_SIZE`` processes (0 = one less than the cores, at least 1), created on
first use in each process with the ``forkserver`` start method, so children inherit none of
the web process's sockets, database pool or gevent state, at a lower CPU priority (nice 10)
than the process serving requests. A call longer than ``timeout``
raises ``OffloopTimeout`` (503 ``computation_timeout``) and the pool is replaced (its
processes killed), so a runaway computation does not keep a core; a child that crashed
(segfault, OOM kill) raises ``OffloopUnavailable`` (503) and the pool is replaced too.
Exceptions raised by ``fn`` itself (a ``ValueError``, a domain error) propagate unchanged.
"""
from __future__ import annotations

import logging
import os
import threading

from app import errors

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
NICE = 10
_pool = None
_pool_size = None
_lock = threading.Lock()


class OffloopTimeout(errors.DomainError):
    """The computation took longer than its time limit; it was stopped."""
    status = 503
    code = "computation_timeout"


class OffloopUnavailable(errors.DomainError):
    """The computation's worker process died; retry."""
    status = 503
    code = "computation_unavailable"


def pool_size(configured: int | None = None) -> int:
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 2) - 1)


def _configured_size() -> int:
    try:
        from flask import current_app
        return pool_size(current_app.config.get("CPU_POOL_SIZE"))
    except RuntimeError:  # no app context (a script): the default
        return pool_size(int(os.environ.get("CPU_POOL_SIZE") or 0))


def _lower_priority() -> None:
    """Pool processes yield the CPU to the web process that serves requests."""
    try:
        os.nice(NICE)
    except OSError:
        pass


def get_pool(size: int | None = None):
    """The process's pool (created on first use)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            _pool_size = size or _configured_size()
            _pool = ProcessPoolExecutor(_pool_size, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_lower_priority)
        return _pool


def reset_pool() -> None:
    """Kill the pool's processes and forget it (the next call starts a fresh one)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    for proc in list(getattr(pool, "_processes", {}).values()):  # no public API before 3.14
        try:
            proc.kill()
        except Exception:
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass


def run_cpu(fn, /, *args, timeout: float | None = DEFAULT_TIMEOUT, **kwargs):
    """``fn(*args, **kwargs)`` in the process pool; the calling greenlet waits cooperatively.

    Raises ``OffloopTimeout`` after ``timeout`` seconds (None: no limit), ``OffloopUnavailable``
    when the worker process died, and whatever ``fn`` raised."""
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool
    try:
        future = get_pool().submit(fn, *args, **kwargs)
    except BrokenProcessPool:
        reset_pool()
        future = get_pool().submit(fn, *args, **kwargs)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        log.warning("%s.%s exceeded %ss: replacing the CPU pool", fn.__module__, fn.__qualname__, timeout)
        reset_pool()
        raise OffloopTimeout(f"the computation took longer than {timeout:g} s and was stopped")
    except BrokenProcessPool:
        reset_pool()
        raise OffloopUnavailable("the computation's worker process died; retry")
