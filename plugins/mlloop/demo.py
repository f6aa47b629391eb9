"""Demo ML history for ``tradeloop serve --demo`` (the ``load_demo_data`` hook): settled
decisions with ML scores, so the console's ML panel and the go-live checklist show real
numbers instead of zeros.

The hook only schedules the work: once the demo user's transaction has committed, it starts
``python -m plugins.mlloop.demo USER_ID`` as a separate process on the same database (training
is CPU-heavy and must never run on the server's gevent loop). That process, through the same
use cases as real traffic:

1. simulates ``RULE_DAYS`` days of the synthetic SPX market (``sim.drive``), scored by the
   rules alone, and settles every idea;
2. trains a small CatBoost model walk-forward on those settled ideas (four expanding
   windows: enough held-out evidence for the promotion gates, which it must pass like any
   model) and promotes it champion, with ``ML_WEIGHT`` blend weight;
3. simulates ``ML_DAYS`` more days (the same world, continued), now scored with the model,
   and settles them; then runs the consumers.

About a minute on 2 cores (``DEMO_ML_IDEAS_PER_DAY`` ideas a day), at a lower CPU priority
(nice 10) than the server. ``TRADELOOP_DEMO_ML=0`` skips it. The console's ML panel re-reads the evaluation until the history is there.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)

SEED = 20260105
RULE_DAYS = 6
ML_DAYS = 4
IDEAS_PER_DAY = int(os.environ.get("DEMO_ML_IDEAS_PER_DAY", "300"))
ML_WEIGHT = 0.5
TRAIN_PARAMS = {"iterations": 80, "depth": 4, "random_seed": 7}
TRAIN_OPTIONS = {"train_days": 2, "val_days": 1, "step_days": 1, "embargo_days": 0.0,
                 "min_train_samples": 100, "max_windows": 4, "min_regime_samples": 20}


def load(conn, user_id: int) -> None:
    """The hook: start the history's process after this transaction commits."""
    if os.environ.get("TRADELOOP_DEMO_ML", "1").lower() in ("0", "false", "no", "off"):
        return
    from bus.sql import on_commit
    url = conn.engine.url.render_as_string(hide_password=False)
    on_commit(conn, lambda: start(url, user_id))


def start(database_url: str, user_id: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "ACCESS_LOG": "false",
           "TRADELOOP_DEMO_PARENT": str(os.getpid())}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    print("demo: building an ML history in the background (about a minute; the ML panel fills when it is done)",
          file=sys.stderr)
    return subprocess.Popen([sys.executable, "-m", "plugins.mlloop.demo", str(user_id)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)


def build_history(ext, user_id: int) -> dict:
    """Steps 1-3 of the module docstring on ``ext``'s database; returns what was made."""
    from plugins.mlloop import service
    from plugins.mlloop.sim import drive
    first = drive.run(ext.db, user_id, days=RULE_DAYS, ideas_per_day=IDEAS_PER_DAY, seed=SEED,
                      ledger="traded", mode="normal")
    drive.drain(ext)
    model = service.training.train(ext.db, params=TRAIN_PARAMS, options=TRAIN_OPTIONS,
                                   description="demo model (serve --demo)", actor_user_id=user_id)
    with ext.db.transaction() as conn:
        service.registry.promote(conn, model["id"], actor_user_id=user_id, reason="demo: champion for the demo history")
        service.settings.update_settings(conn, {"ml_weight": ML_WEIGHT}, actor_user_id=user_id)
    second = drive.run(ext.db, user_id, days=ML_DAYS, ideas_per_day=IDEAS_PER_DAY, seed=SEED,
                       ledger="traded", mode="normal", start_day=RULE_DAYS)
    drive.drain(ext)
    return {"ideas": first.ideas + second.ideas, "settled": first.settled + second.settled,
            "model_id": model["id"]}


def _exit_with_parent(pid: int) -> None:
    """End this process when the server that started it has gone (a stopped demo server
    leaves nothing running behind it)."""
    import threading
    import time

    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass
    threading.Thread(target=watch, name="demo-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    from app import create_app
    user_id = int(argv[0])
    if hasattr(os, "nice"):
        # A background build: the web process (and the person clicking through the demo) comes
        # first for the CPU; this one takes what is left (on 2 cores it competed for a minute).
        os.nice(10)
    if os.environ.get("TRADELOOP_DEMO_PARENT"):
        _exit_with_parent(int(os.environ["TRADELOOP_DEMO_PARENT"]))
    app = create_app()
    with app.app_context():
        try:
            made = build_history(app.extensions["tradeloop"], user_id)
        except Exception:
            log.exception("demo: the ML history could not be built")
            return 1
    print(f"demo: ML history ready: {made}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
