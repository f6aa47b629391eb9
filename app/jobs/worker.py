"""Job workers: the ``tradeloop jobs worker`` process and the one ``tradeloop serve`` starts.

A worker process runs a Huey consumer: ``JOBS_WORKER_THREADS`` threads taking job messages,
and a scheduler thread that moves delayed messages (retries) onto the queue and, every
``JOBS_TICK_SECONDS``, calls ``JobSystem.maintenance``: reclaim runs whose worker died,
re-enqueue queued jobs whose message is missing, submit the schedule's due slots. Run as many
worker processes as you like (compose.yml scales them with ``replicas``): every step is
conditional SQL, so none of it is doubled.

Job work is CPU-bound Python (CatBoost releases the GIL; pandas mostly does), so it runs here
— a process of its own — and never on the gevent loop that serves requests.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

log = logging.getLogger(__name__)


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM this process when its parent (``tradeloop serve``) dies."""
    if not parent_pid or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def run(ext, *, threads: int | None = None, run_schedule: bool = True, tick_seconds: float | None = None,
        parent_pid: int | None = None) -> None:
    """Run a consumer until SIGINT (graceful: running jobs finish) or SIGTERM (stop now: the
    running jobs' leases expire and another worker takes them back)."""
    _die_with_parent(parent_pid)
    nice = int(ext.config["JOBS_WORKER_NICE"])
    if nice:
        try:
            os.nice(nice)  # on a shared machine the web process gets the CPU first
        except OSError:
            pass
    system = ext.jobs
    cfg = ext.config
    threads = int(threads or cfg["JOBS_WORKER_THREADS"])
    tick = float(tick_seconds or cfg["JOBS_TICK_SECONDS"])

    def on_tick():
        if parent_pid and os.getppid() != parent_pid:
            log.warning("parent %s is gone: stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if run_schedule:
            system.maintenance()
        else:
            system.recover()

    consumer = system.queue.consumer(threads=threads, on_tick=on_tick, tick_seconds=tick)
    log.info("job worker: %s thread(s), queue %s (%s), schedule %s", threads, system.queue.backend,
             system.queue.location, "on" if run_schedule else "off")
    try:
        consumer.run()
    finally:
        # Stopped with jobs still running (SIGTERM, or a graceful stop that timed out):
        # hand them back now rather than let their leases run out.
        from app.jobs.runner import release_all
        released = release_all(system)
        if released:
            log.warning("released %d unfinished job(s) to the queue: %s", len(released), ", ".join(released))


def start_process(extra_args: list[str] | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m app.jobs worker`` as a child of this process (``tradeloop serve`` on
    the embedded default). It inherits the environment, so it serves the same deployment, and
    dies with its parent."""
    cmd = [sys.executable, "-m", "app.jobs", "worker", "--parent-pid", str(os.getpid()), *(extra_args or [])]
    env = dict(env if env is not None else os.environ)
    nice = int(env.get("JOBS_WORKER_NICE") or 10)
    env["JOBS_WORKER_NICE"] = "0"  # lowered below, before its imports, not again in run()

    def lower_priority():
        try:
            os.nice(nice)
        except OSError:
            pass
    return subprocess.Popen(cmd, env=env, preexec_fn=lower_priority if nice else None)
