"""No user learns another user's identity from the breakers (the breaker's finding: a
deployment-wide orders kill switch vetoed everyone's orders with "... by demo (user 1) at
2026-11-29 16:08:18Z"): someone else's actor is "an administrator", times are UTC ISO with
milliseconds."""
from __future__ import annotations

import re
import uuid

import pytest

pytest.importorskip("plugins.tradelog.plugin")

UTC_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _new_order(c):
    return c.post("/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
        {"instrument_type": "stock", "quantity": 1}]}, "limit_price": "10.00"}, idem=str(uuid.uuid4()))


def test_a_deployment_kill_switch_and_limit_do_not_name_the_admin(app_factory, new_client):
    app = app_factory(["tradelog", "breakers"])
    admin, other = new_client(app, admin=True), new_client(app)
    admin_actor = f"{admin.user.name} (user {admin.user.id})"
    reason = f"halt all {uuid.uuid4().hex[:6]}"
    r = admin.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": reason, "scope": "deployment"})
    assert r.status_code == 200, r.json
    assert r.json["engaged_by"] == admin_actor  # the admin sees their own name
    engaged_at = r.json["engaged_at"]
    assert re.fullmatch(UTC_MS, engaged_at)
    try:
        v = _new_order(other)
        assert v.status_code == 403 and v.json["code"] == "order_vetoed", v.json
        (veto,) = v.json["vetoes"]
        text = str(v.json)
        assert admin.user.name not in text and f"user {admin.user.id})" not in text
        assert veto["message"] == (f"the orders kill switch is engaged (deployment) by an administrator "
                                   f"at {engaged_at}: {reason}")
        status = other.get("/api/breakers/status").json
        (ks,) = [k for k in status["kill_switches"] if k["scope"] == "deployment"]
        assert ks["engaged_by"] == "an administrator"
        assert status["trading_state"]["reason"] == f"orders kill switch by an administrator: {reason}"
        assert admin.user.name not in str(status)
        # a deployment-wide limit set by the admin: its author is not shown either
        assert admin.put("/api/breakers/config/order_rate", json={"limit": "1000", "scope": "deployment"}
                         ).status_code == 200
        cfg = other.get("/api/breakers/config/order_rate").json
        assert cfg["deployment"]["updated_by"] == "an administrator"
        audit = other.get("/api/breakers/audit").json
        actors = {e["actor"] for e in audit}  # newest first: the config_set and kill_switch_engaged above
        assert "an administrator" in actors and not any(admin.user.name in a for a in actors)
    finally:
        admin.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "resume",
                                                              "scope": "deployment"})
        admin.put("/api/breakers/config/order_rate", json={"limit": "1000", "scope": "deployment", "enabled": False})
    assert _new_order(other).status_code == 201


def test_a_users_own_switch_still_names_them(app_factory, new_client):
    app = app_factory(["tradelog", "breakers"])
    c = new_client(app)
    r = c.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": "mine"})
    assert r.status_code == 200
    try:
        (veto,) = _new_order(c).json["vetoes"]
        assert f"(you) by {c.user.name} (user {c.user.id}) at {r.json['engaged_at']}: mine" in veto["message"]
    finally:
        c.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "done"})
