"""CSRF (issue 18, item 2): a signed-in browser's cookie rides along on requests that other
sites make; cookie-authenticated writes must come from this app's own origin with a JSON body.
Bearer-token clients carry no ambient credential and are unaffected."""
from __future__ import annotations

import pytest

from tests.security.conftest import ORIGIN, browser

FORM = "application/x-www-form-urlencoded"


def test_cross_origin_form_post_with_a_session_is_refused_and_changes_nothing(app, new_client):
    """The issue's attack: another port on the same host (same-site, so SameSite=Lax lets the
    cookie through) posts a form."""
    c = new_client(app)
    http = browser(app, c.token)
    for headers in ({"Origin": "http://localhost:8001", "Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"},                      # sandboxed iframe / data: URL
                    {"Sec-Fetch-Site": "cross-site"},
                    {}):                                     # no Origin at all
        r = http.post("/api/notes", data="title=pwned", headers={"Content-Type": FORM, **headers})
        assert r.status_code == 403, (headers, r.status_code, r.json)
        assert r.json["code"] == "cross_origin"
    # JSON from the other origin is refused too (a browser would preflight it anyway)
    r = http.post("/api/notes", json={"title": "pwned"}, headers={"Origin": "http://127.0.0.1:9"})
    assert r.status_code == 403
    # nothing was written: the user's notes stream carries no NoteCreated
    from bus import outbox
    with app.extensions["tradeloop"].db.read() as conn:
        assert outbox.read(conn, "notes.events", 0, user_id=c.user.id, limit=10) == []


def test_same_origin_writes_must_be_json(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    for ctype, body in ((FORM, "title=x"), ("text/plain", '{"title": "x"}'), ("multipart/form-data; boundary=b", "--b--")):
        r = http.post("/api/notes", data=body, headers={"Content-Type": ctype, "Origin": ORIGIN})
        assert r.status_code == 415, (ctype, r.json)
        assert r.json["code"] == "unsupported_media_type"
    r = http.post("/api/notes", json={"title": "mine"}, headers={"Origin": ORIGIN})
    assert r.status_code == 201
    r = http.post("/api/notes", json={"title": "fetch metadata only"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201
    # a body-less write (logout, a DELETE) needs no Content-Type
    assert http.post("/api/auth/logout", headers={"Origin": ORIGIN}).status_code == 204


def test_bearer_clients_are_unaffected(app, new_client):
    c = new_client(app)
    r = c.post("/api/notes", json={"title": "script"}, headers={"Origin": "http://elsewhere.example"})
    assert r.status_code == 201
    r = c.post("/api/notes", data="title=x", headers={"Content-Type": FORM})
    assert r.status_code not in (403, 415)  # whatever the JSON parser says, not a CSRF refusal


def test_login_and_logout_from_another_origin_are_refused(app, new_client):
    c = new_client(app)
    r = app.test_client().post("/api/auth/login", json={"token": c.token}, headers={"Origin": "http://localhost:8001"})
    assert r.status_code == 403 and "Set-Cookie" not in r.headers  # no login CSRF
    r = app.test_client().post("/api/auth/login", data=f"token={c.token}",
                               headers={"Content-Type": FORM, "Origin": ORIGIN})
    assert r.status_code == 415
    http = browser(app, c.token)
    assert http.post("/api/auth/logout", headers={"Origin": "http://localhost:8001"}).status_code == 403
    assert http.get("/api/auth/me").status_code == 200  # still signed in
    # a script with no Origin may still sign in (it has no cookie to abuse)
    assert app.test_client().post("/api/auth/login", json={"token": c.token}).status_code == 200


def test_trusted_origins_and_proxy_headers(app_factory, new_client):
    app = app_factory(["tests.plugins.notes.plugin"], CSRF_TRUSTED_ORIGINS="https://desk.example.com",
                      TRUSTED_PROXY_HOPS=1)
    c = new_client(app)
    http = browser(app, c.token)
    assert http.post("/api/notes", json={"title": "a"}, headers={"Origin": "https://desk.example.com"}).status_code == 201
    assert http.post("/api/notes", json={"title": "a"}, headers={"Origin": "https://desk.example.com:8443"}).status_code == 403
    # behind a TLS proxy: the browser's origin is https://trade.example.com, the proxy says so
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "trade.example.com"}
    r = http.post("/api/notes", json={"title": "b"}, headers={"Origin": "https://trade.example.com", **proxied})
    assert r.status_code == 201
    r = http.post("/api/notes", json={"title": "b"}, headers={"Origin": "http://trade.example.com", **proxied})
    assert r.status_code == 403  # scheme differs: another origin


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "PUT"])
def test_every_unsafe_method_is_checked(app, new_client, method):
    c = new_client(app)
    http = browser(app, c.token)
    note = c.post("/api/notes", json={"title": "n"}).json
    r = http.open(f"/api/notes/{note['id']}", method=method, data="title=x",
                  headers={"Content-Type": FORM, "Origin": "http://localhost:8001", "If-Match": '"1"'})
    assert r.status_code in (403, 405), r.status_code  # PUT/DELETE are not routes of notes: 405 first
    if method == "PATCH":
        assert r.status_code == 403
        assert c.get(f"/api/notes/{note['id']}").json["title"] == "n"
