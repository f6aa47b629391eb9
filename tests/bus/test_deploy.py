"""compose.yml and the Dockerfile, checked structurally (no Docker engine in CI here, so
``docker compose config`` cannot run; this loads the YAML and checks what it must contain)."""
from __future__ import annotations

import os

import yaml

from tests.conftest import ROOT


def _compose():
    with open(os.path.join(ROOT, "compose.yml")) as f:
        return yaml.safe_load(f)


def test_compose_has_the_production_stack_with_health_checks():
    doc = _compose()
    svc = doc["services"]
    assert set(svc) >= {"mysql", "redis", "redpanda", "app", "relay", "worker", "migrate"}
    assert svc["mysql"]["image"].startswith("mysql:8")
    assert svc["redis"]["image"].startswith("redis:7")
    assert svc["redpanda"]["image"].startswith("docker.redpanda.com/redpandadata/redpanda")
    for name in ("mysql", "redis", "redpanda", "app", "relay", "worker"):
        hc = svc[name]["healthcheck"]
        assert hc["test"] and hc["interval"], name


def test_app_runs_under_gunicorn_gevent_with_raised_connection_limit():
    cmd = _compose()["services"]["app"]["command"]
    assert cmd[0] == "gunicorn" and cmd[cmd.index("-k") + 1] == "gevent"
    assert int(cmd[cmd.index("--worker-connections") + 1]) > 1000
    assert cmd[-1] == "app.wsgi:app"
    import importlib.util
    assert importlib.util.find_spec("app.wsgi") is not None


def test_app_relay_and_worker_share_one_configuration_and_wait_for_dependencies():
    svc = _compose()["services"]
    assert svc["relay"]["command"] == ["tradeloop", "relay"]
    assert svc["worker"]["command"] == ["tradeloop", "worker"]
    assert svc["migrate"]["command"] == ["tradeloop", "db", "upgrade"]
    for name in ("app", "relay", "worker"):
        env = svc[name]["environment"]
        assert env["DATABASE_URL"].startswith("mysql+pymysql://") and "@mysql:3306/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "redpanda:9092"
        deps = svc[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        for d in ("mysql", "redis", "redpanda"):
            assert deps[d]["condition"] == "service_healthy"
    # every env var the services set is a real setting (app/config.py DEFAULTS)
    from app.config import DEFAULTS
    # (PROMETHEUS_MULTIPROC_DIR is read by prometheus_client itself: app/observability.py)
    extra = set(svc["app"]["environment"]) - set(DEFAULTS) - {"PYTHONUNBUFFERED", "PROMETHEUS_MULTIPROC_DIR"}
    assert not extra, extra


def test_dockerfile_installs_the_package_and_serves_with_gevent():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    assert text.startswith("#") and "FROM python:3.11" in text
    assert "pip install ." in text and "gevent" in text and "app.wsgi:app" in text
