"""Fixtures for the security tests: an app of its own per test where counters must start at
zero (a unique CACHE_NAMESPACE keys its rate-limit counts apart, in Redis too)."""
from __future__ import annotations

import uuid

import pytest

NOTES = "tests.plugins.notes.plugin"
ORIGIN = "http://localhost"  # the Flask test client's own origin


@pytest.fixture
def app(app_factory):
    return app_factory([NOTES])


@pytest.fixture
def fresh_app(app_factory):
    """``fresh_app(**config)``: an app whose rate-limit counters are its own."""
    def make(**overrides):
        return app_factory([NOTES], CACHE_NAMESPACE=f"t{uuid.uuid4().hex[:10]}", **overrides)
    return make


def browser(app, token, *, origin=ORIGIN, user_agent=None):
    """A test client signed in through POST /api/auth/login (same origin), as a browser is."""
    http = app.test_client()
    if user_agent:
        http.environ_base["HTTP_USER_AGENT"] = user_agent
    r = http.post("/api/auth/login", json={"token": token}, headers={"Origin": origin})
    assert r.status_code == 200, r.json
    return http
