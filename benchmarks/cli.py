"""Benchmark: how long the ``tradeloop`` command takes to start (issue 12, item 2; aim < 1.5 s).

Run as ``python -m benchmarks.cli``. Each command runs as a fresh process, the way a person
types it, against a private SQLite file (migrated once first, outside the timings):

  baseline           ``python -c pass`` (the interpreter alone)
  --help             ``tradeloop --help`` (builds the app: every plugin's imports and routes)
  users create NAME  creates a user and prints its token (one write transaction)

Prints the median and the slowest of ``BENCH_CLI_RUNS`` runs (default 7) interleaved, each
as seconds and as a multiple of the baseline measured in the same run. Asserts nothing
(tests/app/test_startup.py checks that no heavy module is imported).

Bytecode: an installed package runs from cached ``.pyc`` files; a shell with
``PYTHONDONTWRITEBYTECODE=1`` (some CI and container images) compiles the repository's modules
on every run (~0.3 s more here). The first table is the installed case (a private
``PYTHONPYCACHEPREFIX``, written by an untimed warm-up run, so the tree stays clean); when this
shell disables bytecode, a second table shows the commands as it runs them.
With ``hyperfine`` on PATH, ``hyperfine --warmup 2 'tradeloop --help'`` gives a second opinion.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

RUNS = int(os.environ.get("BENCH_CLI_RUNS", "7"))
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run; CPU time moves less when the machine
    is busy with other work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def table(title: str, env: dict) -> None:
    commands = {
        "python -c pass": lambda: [sys.executable, "-c", "pass"],
        "tradeloop --help": lambda: [TRADELOOP, "--help"],
        "tradeloop users create": lambda: [TRADELOOP, "users", "create", f"bench_{uuid.uuid4().hex[:8]}"],
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for name, cmd in commands.items():  # warm the OS file cache (and the .pyc files) once
        timed(cmd(), env)
    for _ in range(RUNS):
        for name, cmd in commands.items():
            times[name].append(timed(cmd(), env))
    base = statistics.median(w for w, _ in times["python -c pass"])
    base_cpu = statistics.median(c for _, c in times["python -c pass"])
    print(f"\n{title}: {RUNS} runs each (fresh process per run; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"{'command':<26}{'wall median s':>14}{'max s':>8}{'x baseline':>12}{'CPU median s':>14}{'x baseline':>12}")
    for name, xs in times.items():
        med = statistics.median(w for w, _ in xs)
        cpu = statistics.median(c for _, c in xs)
        print(f"{name:<26}{med:>14.3f}{max(w for w, _ in xs):>8.3f}{med / base:>12.1f}{cpu:>14.3f}{cpu / base_cpu:>12.1f}")


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="tl_bench_cli_")
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env["DATABASE_URL"] = f"sqlite:///{workdir}/cli.db"
    subprocess.run([TRADELOOP, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=300)
    installed = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    installed["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    table("as installed (bytecode cached)", installed)
    if env.get("PYTHONDONTWRITEBYTECODE"):
        table("as this shell runs it (PYTHONDONTWRITEBYTECODE: the repository's modules compiled each run)", env)
    print("aim: tradeloop --help and users create under 1.5 s")


if __name__ == "__main__":
    main()
