"""Rate limits (issue 18, item 3): failed sign-ins per IP, sessions per account, writes per
user; 429 with Retry-After in the one error shape. These use the real defaults (50 failed
sign-ins per 15 minutes) or explicit small values, each on counters of its own."""
from __future__ import annotations

import pytest

from tests.security.conftest import ORIGIN

SAME = {"Origin": ORIGIN}


def _login(http, token, ip="127.0.0.1"):
    return http.post("/api/auth/login", json={"token": token}, headers=SAME, environ_base={"REMOTE_ADDR": ip})


def test_the_51st_wrong_token_from_one_address_is_429_with_retry_after(fresh_app, new_client):
    app = fresh_app()  # real defaults
    assert app.config["RATELIMIT_LOGIN_IP"] == "50 per 15 minutes"
    http = app.test_client()
    statuses = [_login(http, f"tl_guess_{i}").status_code for i in range(50)]
    assert statuses == [401] * 50
    r = _login(http, "tl_guess_51")
    assert r.status_code == 429, r.json
    assert r.json["code"] == "too_many_requests" and r.json["status"] == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60
    # even the right token is refused from that address now (the guesser can't tell)...
    c = new_client(app)
    assert _login(http, c.token).status_code == 429
    # ...while another address signs in
    assert _login(http, c.token, ip="127.0.0.2").status_code == 200


def test_successful_sign_ins_do_not_count_against_the_address(fresh_app, new_client):
    app = fresh_app(RATELIMIT_LOGIN_IP="3 per minute", RATELIMIT_LOGIN_ACCOUNT="100 per minute")
    http = app.test_client()
    c = new_client(app)
    assert [_login(http, c.token).status_code for _ in range(6)] == [200] * 6
    assert [_login(http, "nope").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_sessions_per_account(fresh_app, new_client):
    app = fresh_app(RATELIMIT_LOGIN_ACCOUNT="3 per hour")
    c, other = new_client(app), new_client(app)
    http = app.test_client()
    assert [_login(http, c.token, ip=f"127.0.0.{i}").status_code for i in range(1, 5)] == [200, 200, 200, 429]
    assert _login(http, other.token).status_code == 200


def test_writes_per_user(fresh_app, new_client):
    app = fresh_app(RATELIMIT_WRITES="5 per minute")
    c, other = new_client(app), new_client(app)
    assert [c.post("/api/notes", json={"title": str(i)}).status_code for i in range(5)] == [201] * 5
    r = c.post("/api/notes", json={"title": "6th"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert c.post("/api/notes", json={"title": "again"}, idem="k-new").status_code == 429
    note_reads = c.get("/api/auth/me")
    assert note_reads.status_code == 200  # reads are not writes
    assert other.post("/api/notes", json={"title": "mine"}).status_code == 201  # per user


def test_limits_can_be_turned_off(fresh_app):
    app = fresh_app(RATELIMIT_ENABLED=False)
    http = app.test_client()
    assert {_login(http, "nope").status_code for _ in range(60)} == {401}


def test_bad_limit_strings_fail_at_start_up(app_factory):
    with pytest.raises(ValueError):
        app_factory(["tests.plugins.notes.plugin"], RATELIMIT_WRITES="lots per minute")


def test_redis_down_falls_back_to_counting_in_memory(fresh_app, stack, new_client):
    """A dead rate-limit store must not fail requests: counting goes on in the process."""
    app = fresh_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", RATELIMIT_WRITES="3 per minute")
    c = new_client(app)
    assert [c.post("/api/notes", json={"title": str(i)}).status_code for i in range(4)] == [201, 201, 201, 429]


def test_failed_bearer_tokens_never_lock_out_a_right_one(fresh_app, new_client):
    """docs/security.md: wrong bearer tokens are 401 however many, and do not spend the sign-in
    budget; a right token from the same address keeps working (tokens are 256-bit: a per-IP
    limit would only let a guesser lock out everyone behind their address)."""
    app = fresh_app(RATELIMIT_LOGIN_IP="3 per minute")
    http = app.test_client()
    c = new_client(app)
    wrong = [http.get("/api/auth/me", headers={"Authorization": f"Bearer tl_guess_{i}"}).status_code
             for i in range(6)]
    assert wrong == [401] * 6
    assert http.get("/api/auth/me", headers={"Authorization": f"Bearer {c.token}"}).status_code == 200
    assert _login(http, c.token).status_code == 200  # the sign-in budget is untouched
