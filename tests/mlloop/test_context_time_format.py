"""A market context's features carry ``snapshot_time`` in the one time format (UTC ISO with
milliseconds), like every other time in the API (the breaker saw ``2025-01-06T15:00:00Z``)."""
from __future__ import annotations

import re

import pytest

from tests.mlloop.mlloop_fixtures import AS_OF, context_body, idea

UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def app(app_factory):
    return app_factory(["mlloop"])


def test_context_and_decision_features_give_snapshot_time_with_milliseconds(app, new_client, run_consumers):
    """The fixture's history has a snapshot every few minutes of the session, one exactly at
    AS_OF (2025-01-06 15:00 UTC), so the latest snapshot at or before AS_OF is at AS_OF:
    "2025-01-06T15:00:00.000Z"."""
    cl = new_client(app)
    r = cl.post("/api/ml/contexts", json=context_body("ctx-ms"))
    assert r.status_code == 201, r.json
    assert AS_OF.isoformat() == "2025-01-06T15:00:00+00:00"
    assert r.json["contexts"][0]["features"]["snapshot_time"] == "2025-01-06T15:00:00.000Z"
    got = cl.get("/api/ml/contexts/ctx-ms")
    assert got.status_code == 200 and UTC_MS.match(got.json["features"]["snapshot_time"]), got.json
    s = cl.post("/api/ml/score", json={"context_id": "ctx-ms", "ideas": [idea()]})
    assert s.status_code == 200, s.json
    run_consumers(app)  # the decision record is written by mlloop's consumer
    d = cl.get(f"/api/ml/decisions/{s.json['ideas'][0]['decision_id']}")
    assert d.status_code == 200 and d.json["status"] == "recorded", d.json
    assert d.json["features"]["snapshot_time"] == "2025-01-06T15:00:00.000Z"
