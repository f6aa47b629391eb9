"""The order in which the host answers (docs/security.md): routing (404, 405 with Allow) ->
authentication (401) -> authorization (403) -> CSRF -> rate limits -> Idempotency-Key -> the
view's validation (422). Each test sends a request that is wrong in two ways and checks that
the earlier answer wins."""
from __future__ import annotations

import pytest

NOTES = "tests.plugins.notes.plugin"


@pytest.fixture
def app(app_factory):
    return app_factory([NOTES])


def test_405_carries_allow_and_comes_before_the_idempotency_key(app, new_client):
    c = new_client(app)
    assert c.post("/api/notes", json={"title": "a"}, idem="used-key").status_code == 201
    # PUT is not a method of /api/notes: 405, not the key's 422 "used with a different request".
    r = c.put("/api/notes", json={"title": "b"}, idem="used-key")
    assert r.status_code == 405, r.json
    assert r.json["code"] == "method_not_allowed"
    assert set(r.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    # and before authentication: no credentials, still 405
    r = app.test_client().put("/api/notes", json={})
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


def test_unknown_path_is_404_before_authentication(app):
    r = app.test_client().post("/api/no-such-thing", json={}, headers={"Idempotency-Key": "x"})
    assert r.status_code == 404 and r.json["code"] == "not_found"


def test_a_literal_sub_path_never_reaches_the_id_route(app, new_client):
    """/api/notes/echo is a literal route (POST); /api/notes/<note_id> serves GET and PATCH.
    GET and PATCH on /echo must not be taken for a note called "echo"."""
    c = new_client(app)
    for method in ("GET", "PATCH"):
        r = c.http.open("/api/notes/echo", method=method, json={"title": "x"},
                        headers={"Authorization": f"Bearer {c.token}", "If-Match": '"1"'})
        assert r.status_code == 405, (method, r.status_code, r.json)
        assert set(r.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    r = c.http.open("/api/notes/echo", method="OPTIONS")
    assert set(r.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    # a real id still reaches the id route, and OPTIONS there lists its methods
    note = c.post("/api/notes", json={"title": "n"}).json
    assert c.get(f"/api/notes/{note['id']}").status_code == 200
    allow = set(c.http.open(f"/api/notes/{note['id']}", method="OPTIONS").headers["Allow"].split(", "))
    assert {"GET", "PATCH"} <= allow and "POST" not in allow


def test_a_non_admin_gets_403_before_the_body_is_validated(app, new_client):
    c = new_client(app)
    r = c.post("/api/notes/admin/purge", json={"unknown": 1})
    assert r.status_code == 403 and r.json["code"] == "admin_only", r.json
    assert "errors" not in r.json  # nothing about the route's fields leaks
    admin = new_client(app, admin=True)
    r = admin.post("/api/notes/admin/purge", json={"unknown": 1})
    assert r.status_code == 422 and "older_than_days" in r.json["errors"]["json"]
    assert admin.post("/api/notes/admin/purge", json={"older_than_days": 3}).status_code == 200


def test_401_comes_before_403_and_422(app):
    r = app.test_client().post("/api/notes/admin/purge", json={"unknown": 1})
    assert r.status_code == 401


def test_the_admin_403_is_documented(app):
    spec = app.test_client().get("/openapi.json").json
    assert "403" in spec["paths"]["/api/notes/admin/purge"]["post"]["responses"]
