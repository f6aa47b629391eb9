"""Server-side browser sessions and token management (issue 18, item 1): logout destroys the
session, a session dies with its token, idle and absolute timeouts, Secure cookies over HTTPS,
and the token API/CLI."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from tests.security.conftest import ORIGIN, browser

SAME = {"Origin": ORIGIN}


def _cookie(resp) -> str:
    return next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("tradeloop_session="))


def test_login_cookie_is_an_opaque_httponly_lax_id_with_the_absolute_max_age(app, new_client):
    c = new_client(app)
    r = app.test_client().post("/api/auth/login", json={"token": c.token}, headers=SAME)
    cookie = _cookie(r)
    value = cookie.split(";")[0].split("=", 1)[1]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert f"Max-Age={12 * 3600}" in cookie
    assert "Secure" not in cookie  # plain http
    assert c.token not in value and len(value) >= 40  # a random id, not the token nor a signed user id
    assert "." not in value  # (Flask's signed cookie session would be payload.timestamp.signature)
    # the database keeps only a hash of the id
    from app.tables import browser_sessions
    with app.extensions["tradeloop"].db.read() as conn:
        stored = [r.id_hash for r in conn.execute(sa.select(browser_sessions.c.id_hash)
                                                  .where(browser_sessions.c.user_id == c.user.id))]
    assert len(stored) == 1 and value not in stored[0]


def test_cookie_is_secure_over_https_and_when_configured(app, app_factory, new_client):
    c = new_client(app)
    r = app.test_client().post("/api/auth/login", json={"token": c.token}, base_url="https://localhost",
                               headers={"Origin": "https://localhost"})
    assert r.status_code == 200 and "Secure" in _cookie(r)
    forced = app_factory(["tests.plugins.notes.plugin"], SESSION_COOKIE_SECURE="true")
    c2 = new_client(forced)
    r = forced.test_client().post("/api/auth/login", json={"token": c2.token}, headers=SAME)
    assert "Secure" in _cookie(r)


def test_cookie_after_logout_is_401_for_reads_and_writes(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    assert http.get("/api/auth/me").json["id"] == c.user.id
    stolen = http.get_cookie("tradeloop_session").value
    r = http.post("/api/auth/logout", headers=SAME)
    assert r.status_code == 204
    assert "Max-Age=0" in _cookie(r) or "expires=Thu, 01 Jan 1970" in _cookie(r)
    # an attacker who kept the cookie value gets nothing
    other = app.test_client()
    other.set_cookie("tradeloop_session", stolen)
    assert other.get("/api/auth/me").status_code == 401
    assert other.post("/api/notes", json={"title": "x"}, headers=SAME).status_code == 401


def test_auth_status_answers_200_signed_in_or_not_and_tells_only_the_callers_own_state(app, new_client):
    """What the console asks on load instead of /me (whose 401 is a red error in the browser
    console): 200 either way; a logged-out, unknown or malformed credential is simply not
    signed in, and being asked changes nothing (/me still 401s, writes still need sign-in)."""
    c = new_client(app)
    anonymous = app.test_client().get("/api/auth/status")
    assert anonymous.status_code == 200 and anonymous.json == {"authenticated": False, "user": None}
    bearer = app.test_client().get("/api/auth/status", headers={"Authorization": f"Bearer {c.token}"})
    assert bearer.json == {"authenticated": True, "user": {"id": c.user.id, "name": c.user.name, "is_admin": False}}
    for bad in (f"Bearer {c.token}x", "Basic abc", "Bearer "):
        r = app.test_client().get("/api/auth/status", headers={"Authorization": bad})
        assert r.status_code == 200 and r.json["authenticated"] is False, bad
    http = browser(app, c.token)
    assert http.get("/api/auth/status").json["user"]["id"] == c.user.id
    stolen = http.get_cookie("tradeloop_session").value
    assert http.post("/api/auth/logout", headers=SAME).status_code == 204
    other = app.test_client()
    other.set_cookie("tradeloop_session", stolen)
    assert other.get("/api/auth/status").json == {"authenticated": False, "user": None}
    assert other.get("/api/auth/me").status_code == 401
    assert other.post("/api/notes", json={"title": "x"}, headers=SAME).status_code == 401


def test_a_revoked_tokens_sessions_are_401_and_other_tokens_sessions_live_on(app, new_client):
    c = new_client(app)
    spare = c.post("/api/auth/tokens", json={"label": "spare"}).json
    via_first, via_spare = browser(app, c.token), browser(app, spare["token"])
    first_id = next(t["id"] for t in c.get("/api/auth/tokens").json if t["current"])
    # revoke the first token using the spare one
    r = app.test_client().delete(f"/api/auth/tokens/{first_id}", headers={"Authorization": f"Bearer {spare['token']}"})
    assert r.status_code == 204
    assert via_first.get("/api/auth/me").status_code == 401
    assert via_first.post("/api/notes", json={"title": "x"}, headers=SAME).status_code == 401
    assert c.get("/api/auth/me").status_code == 401  # the token itself too
    assert via_spare.get("/api/auth/me").json["id"] == c.user.id
    # even a session row that somehow survived is refused: the lookup joins the live token
    from app.tables import api_tokens
    with app.extensions["tradeloop"].db.transaction() as conn:
        conn.execute(api_tokens.update().where(api_tokens.c.id == spare["id"]).values(revoked_at=dt.datetime.now(dt.timezone.utc)))
    assert via_spare.get("/api/auth/me").status_code == 401


def _age_session(app, user_id, **shift):
    from app.tables import browser_sessions
    with app.extensions["tradeloop"].db.transaction() as conn:
        row = conn.execute(sa.select(browser_sessions).where(browser_sessions.c.user_id == user_id)).first()
        values = {k: getattr(row, k) - dt.timedelta(seconds=v) for k, v in shift.items()}
        conn.execute(browser_sessions.update().where(browser_sessions.c.id_hash == row.id_hash).values(**values))


def test_idle_timeout(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    _age_session(app, c.user.id, last_seen_at=1700)  # idle 28 min of the default 30: still alive
    assert http.get("/api/auth/me").status_code == 200  # ...and this use moves last_seen_at
    _age_session(app, c.user.id, last_seen_at=1700)
    assert http.get("/api/auth/me").status_code == 200
    _age_session(app, c.user.id, last_seen_at=1801)  # idle past 30 min
    r = http.get("/api/auth/me")
    assert r.status_code == 401
    assert "Max-Age=0" in _cookie(r) or "1970" in _cookie(r)  # the browser is told to forget it


def test_absolute_timeout_is_not_extended_by_activity(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    _age_session(app, c.user.id, expires_at=12 * 3600 - 5)  # 5 s left of 12 h, just used
    assert http.get("/api/auth/me").status_code == 200
    from app.tables import browser_sessions
    with app.extensions["tradeloop"].db.read() as conn:
        left = conn.execute(sa.select(browser_sessions.c.expires_at)
                            .where(browser_sessions.c.user_id == c.user.id)).scalar()
    assert left - dt.datetime.now(dt.timezone.utc) < dt.timedelta(seconds=6)  # activity did not extend it
    _age_session(app, c.user.id, expires_at=6)
    assert http.get("/api/auth/me").status_code == 401


def test_timeouts_are_configurable(app_factory, new_client):
    app = app_factory(["tests.plugins.notes.plugin"], SESSION_IDLE_TIMEOUT_SECONDS=60,
                      SESSION_ABSOLUTE_TIMEOUT_SECONDS=600)
    c = new_client(app)
    r = app.test_client().post("/api/auth/login", json={"token": c.token}, headers=SAME)
    assert "Max-Age=600" in _cookie(r)
    http = app.test_client()
    http.set_cookie("tradeloop_session", _cookie(r).split(";")[0].split("=", 1)[1])
    assert http.get("/api/auth/me").status_code == 200
    _age_session(app, c.user.id, last_seen_at=61)
    assert http.get("/api/auth/me").status_code == 401


def test_every_sign_in_gets_a_new_session_id(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    first = http.get_cookie("tradeloop_session").value
    assert http.post("/api/auth/login", json={"token": c.token}, headers=SAME).status_code == 200
    second = http.get_cookie("tradeloop_session").value
    assert first != second
    old = app.test_client()
    old.set_cookie("tradeloop_session", first)
    assert old.get("/api/auth/me").status_code == 401  # the pre-login id is dead (no fixation)


def test_token_api_lists_creates_and_revokes_only_your_own(app, new_client):
    c, other = new_client(app), new_client(app)
    listed = c.get("/api/auth/tokens").json
    assert len(listed) == 1 and listed[0]["current"] is True and listed[0]["revoked_at"] is None
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    made = c.post("/api/auth/tokens", json={"label": "desk script"})
    assert made.status_code == 201 and made.json["token"].startswith("tl_") and made.json["label"] == "desk script"
    assert app.test_client().get("/api/auth/me", headers={"Authorization": f"Bearer {made.json['token']}"}).json["id"] == c.user.id
    assert [t["label"] for t in c.get("/api/auth/tokens").json] == [None, "desk script"]
    assert all("token" not in t for t in c.get("/api/auth/tokens").json)
    # another user's token: 404, and it keeps working
    other_id = other.get("/api/auth/tokens").json[0]["id"]
    assert c.delete(f"/api/auth/tokens/{other_id}").status_code == 404
    assert other.get("/api/auth/me").status_code == 200
    assert c.delete(f"/api/auth/tokens/{made.json['id']}").status_code == 204
    assert c.delete(f"/api/auth/tokens/{made.json['id']}").status_code == 204  # again: no change
    revoked = next(t for t in c.get("/api/auth/tokens").json if t["id"] == made.json["id"])
    assert revoked["revoked_at"] is not None
    assert c.post("/api/auth/tokens", json={"label": ""}).status_code == 422


def test_sessions_api_lists_and_ends_your_sessions(app, new_client):
    c = new_client(app)
    http = browser(app, c.token, user_agent="pytest-browser")
    mine = http.get("/api/auth/sessions").json
    assert len(mine) == 1 and mine[0]["current"] is True and mine[0]["user_agent"] == "pytest-browser"
    other = new_client(app)
    assert other.delete(f"/api/auth/sessions/{mine[0]['id']}").status_code == 404
    assert c.delete(f"/api/auth/sessions/{mine[0]['id']}").status_code == 204
    assert http.get("/api/auth/me").status_code == 401


def test_admin_cli_lists_creates_and_revokes_tokens(app, new_client):
    c = new_client(app)
    http = browser(app, c.token)
    from app.auth_cli import tokens
    runner = app.test_cli_runner()
    out = runner.invoke(tokens, ["create", c.user.name, "--label", "ops"])
    assert out.exit_code == 0, out.output
    new_token = out.output.strip().splitlines()[-1]
    assert app.test_client().get("/api/auth/me", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    listing = runner.invoke(tokens, ["list", c.user.name])
    assert listing.exit_code == 0 and "ops" in listing.output and new_token not in listing.output
    first_id = c.get("/api/auth/tokens").json[0]["id"]
    out = runner.invoke(tokens, ["revoke", str(first_id)])
    assert out.exit_code == 0 and "1 browser session" in out.output, out.output
    assert http.get("/api/auth/me").status_code == 401
    assert runner.invoke(tokens, ["revoke", "999999999"]).exit_code != 0
