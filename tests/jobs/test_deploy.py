"""compose.yml's job workers, checked structurally (no Docker engine here)."""
from __future__ import annotations

import os

import yaml

from tests.conftest import ROOT


def test_compose_runs_job_workers_as_their_own_scaled_service():
    with open(os.path.join(ROOT, "compose.yml")) as f:
        svc = yaml.safe_load(f)["services"]
    jobs = svc["jobs"]
    assert jobs["command"] == ["tradeloop", "jobs", "worker"]
    assert jobs["deploy"]["replicas"] >= 2
    assert jobs["stop_signal"] == "SIGINT"  # Huey's graceful stop: running jobs finish
    # the same deployment (database, Redis queue, broker): every job setting is the app's; the
    # app alone adds what only a web process needs (the metrics directory of gunicorn's workers)
    assert jobs["environment"].items() <= svc["app"]["environment"].items()
    assert {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SECRET_KEY"} <= set(jobs["environment"])
    assert jobs["environment"]["REDIS_URL"].startswith("redis://")
    assert jobs["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert jobs["healthcheck"]["test"]
    # the web process does not run jobs in production (gunicorn, no `serve --jobs`)
    assert "jobs" not in " ".join(svc["app"]["command"])
