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
    assert jobs["environment"] == svc["app"]["environment"]  # the same deployment (Redis queue)
    assert jobs["environment"]["REDIS_URL"].startswith("redis://")
    assert jobs["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert jobs["healthcheck"]["test"]
    # the web process does not run jobs in production (gunicorn, no `serve --jobs`)
    assert "jobs" not in " ".join(svc["app"]["command"])
