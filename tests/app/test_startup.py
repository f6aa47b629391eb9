"""The command line starts without importing heavy libraries (issue 12, item 2).

``tradeloop --help`` builds the app (it lists the plugins' commands), so every plugin's
module-level imports run. CatBoost, scipy, pandas, confluent-kafka and the exchange calendars
cost seconds together; they belong inside the functions that use them, or in modules only
loaded when needed. This runs the real command in
a fresh interpreter and fails naming each heavy module it imported and the chain of imports
that pulled it in (read from ``python -X importtime``). The start-up times themselves are
printed by ``python -m benchmarks.cli`` (tests assert no timings).

numpy is allowed: it is the array type of the scoring and pricing code and costs ~0.1 s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("catboost", "scipy", "pandas", "confluent_kafka", "exchange_calendars", "pandas_market_calendars",
         "sklearn", "matplotlib", "plotly", "pyarrow", "torch",
         # lighter, but only some commands use them (~0.1 s together): the job queue and
         # riskgraph's HTTP client to the trade log
         "huey", "requests")

RUN = """
import json, sys
from app.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print("\\n__MODULES__" + json.dumps(sorted(sys.modules)))
"""


def import_chains(importtime: str, wanted: set[str]) -> dict[str, list[str]]:
    """From ``-X importtime`` output: for each wanted top-level module, the chain of imports
    from the script down to it (a module's line comes after the modules it imported, one
    indentation level deeper)."""
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, name.strip()))
    chains = {}
    for i, (depth, name) in enumerate(rows):
        top = name.split(".")[0]
        if top not in wanted or top in chains:
            continue
        chain, d = [name], depth
        for depth2, name2 in rows[i + 1:]:
            if depth2 < d:
                chain.append(name2)
                d = depth2
        chain.reverse()
        first = next(k for k, n in enumerate(chain) if n.split(".")[0] == top)
        chains[top] = chain[:first + 1]  # down to the heavy package, not into it
    return chains


def run_cli(args: list[str], env: dict) -> tuple[set[str], str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = json.loads(proc.stdout.split("__MODULES__", 1)[1])
    return set(modules), proc.stderr


def assert_light(args: list[str], env: dict) -> None:
    modules, importtime = run_cli(args, env)
    heavy = {m.split(".")[0] for m in modules} & set(HEAVY)
    if heavy:
        chains = import_chains(importtime, heavy)
        lines = [f"{m}: " + " -> ".join(chains.get(m, ["?"])) for m in sorted(heavy)]
        pytest.fail(f"`tradeloop {' '.join(args)}` imported heavy modules; import them where they are "
                    "used:\n  " + "\n  ".join(lines), pytrace=False)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRADELOOP_PLUGINS")}
    env.update(DATABASE_URL=f"sqlite:///{d}/cli.db", PYTHONPATH=ROOT)
    return env


def test_help_imports_no_heavy_module(cli_env):
    assert_light(["--help"], cli_env)


def test_users_create_imports_no_heavy_module(cli_env):
    subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "db", "upgrade"], env=cli_env,
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert_light(["users", "create", "startup-check"], cli_env)


def test_the_check_names_the_import_chain():
    """The failure message points at the culprit: the chain is read from importtime's tree."""
    out = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       10 |         10 |         scipy.special",
        "import time:       10 |         20 |       scipy",
        "import time:       10 |         30 |     plugins.x.pricing",
        "import time:       10 |         40 |   plugins.x.service",
        "import time:       10 |         50 | plugins.x.plugin",
        "import time:       10 |         10 | pandas",
    ])
    chains = import_chains(out, {"scipy", "pandas"})
    assert chains["scipy"] == ["plugins.x.plugin", "plugins.x.service", "plugins.x.pricing", "scipy"]
    assert chains["pandas"] == ["pandas"]
