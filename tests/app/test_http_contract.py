"""If-Match/ETag, the one error shape, authentication and user scoping."""
from __future__ import annotations

import concurrent.futures as cf

import pytest

NOTES = "tests.plugins.notes.plugin"


@pytest.fixture
def app(app_factory):
    return app_factory([NOTES])


def test_fifty_concurrent_patches_with_one_if_match_give_exactly_one_200(app, new_client):
    c = new_client(app)
    note = c.post("/api/notes", json={"title": "v1"}).json

    def patch(i):
        return app.test_client().patch(f"/api/notes/{note['id']}", json={"title": f"t{i}"},
                                       headers={"Authorization": f"Bearer {c.token}", "If-Match": '"1"'})

    with cf.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(patch, range(50)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 49
    winner = next(r for r in results if r.status_code == 200).get_json()
    assert winner["version"] == 2
    loser = next(r for r in results if r.status_code == 409).get_json()
    assert loser["code"] == "version_conflict" and loser["current_version"] == 2
    assert loser["current"]["title"] == winner["title"]
    assert c.get(f"/api/notes/{note['id']}").json["version"] == 2


def test_if_match_forms_and_errors(app, new_client):
    c = new_client(app)
    note = c.post("/api/notes", json={"title": "a"}).json
    url = f"/api/notes/{note['id']}"
    missing = c.patch(url, json={"title": "b"})
    assert missing.status_code == 428 and missing.json["code"] == "precondition_required"
    assert "If-Match" in missing.json["errors"]["headers"]
    bad = c.patch(url, json={"title": "b"}, headers={"If-Match": "banana"})
    assert bad.status_code == 400 and "If-Match" in bad.json["errors"]["headers"]
    assert c.patch(url, json={"title": "b"}, headers={"If-Match": "1"}).status_code == 200  # seed's bare form
    ok = c.patch(url, json={"title": "c"}, headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"3"'
    stale = c.patch(url, json={"title": "d"}, headers={"If-Match": '"2"'})
    assert stale.status_code == 409 and stale.headers["ETag"] == '"3"'
    assert stale.json["current"]["title"] == "c"
    assert c.get(url).headers["ETag"] == '"3"'


def test_replayed_patch_gets_its_first_answer_not_409(app, new_client):
    c = new_client(app)
    note = c.post("/api/notes", json={"title": "a"}).json
    url = f"/api/notes/{note['id']}"
    first = c.patch(url, json={"title": "b"}, if_match=1, idem="patch-1")
    retry = c.patch(url, json={"title": "b"}, if_match=1, idem="patch-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json == first.json and retry.headers["Idempotent-Replayed"] == "true"


def test_other_users_resources_are_404(app, new_client):
    a, b = new_client(app), new_client(app)
    note = a.post("/api/notes", json={"title": "mine"}).json
    assert b.get(f"/api/notes/{note['id']}").status_code == 404
    r = b.patch(f"/api/notes/{note['id']}", json={"title": "stolen"}, if_match=1)
    assert r.status_code == 404 and r.json["code"] == "not_found"
    assert a.get(f"/api/notes/{note['id']}").json["title"] == "mine"


def test_error_shape_is_uniform(app, new_client):
    c = new_client(app)
    cases = [
        c.post("/api/notes", data="{not json", headers={"Content-Type": "application/json"}),
        c.post("/api/notes", json={"title": 7}),
        c.post("/api/notes", json={"title": "x", "amount": "-1"}),
        c.post("/api/notes", json={"title": "x", "amount": "NaN"}),
        c.post("/api/notes", json=[1, 2]),
        c.get("/api/notes/does-not-exist"),
        c.get("/api/no-such-route"),
        c.delete("/api/notes"),
        app.test_client().get("/api/notes/x"),
    ]
    expected = [400, 422, 422, 422, 422, 404, 404, 405, 401]
    assert [r.status_code for r in cases] == expected
    for r in cases:
        body = r.get_json()
        assert set(body) >= {"status", "code", "message"}, body
        assert body["status"] == r.status_code
    assert cases[0].json["code"] == "malformed_json"
    assert "title" in cases[1].json["errors"]["json"]
    assert "amount" in cases[2].json["errors"]["json"]


def test_money_is_decimal_and_times_are_utc_ms(app, new_client):
    c = new_client(app)
    r = c.post("/api/notes", json={"title": "m", "amount": 0.1}).json
    assert r["amount"] == "0.1000"
    assert r["created_at"].endswith("Z") and len(r["created_at"].split(".")[1]) == 4  # 3 digits + Z


def test_bearer_tokens_and_browser_sessions(app, new_client):
    c = new_client(app)
    http = app.test_client()
    assert http.get("/api/auth/me").status_code == 401
    assert http.get("/api/auth/me", headers={"Authorization": "Bearer nope"}).json["code"] == "invalid_token"
    assert http.get("/api/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert http.post("/api/auth/login", json={"token": "wrong"}).status_code == 401
    login = http.post("/api/auth/login", json={"token": c.token})
    assert login.status_code == 200 and login.json["name"] == c.user.name
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert http.get("/api/auth/me").json["id"] == c.user.id  # the cookie now signs us in
    # cookie-authenticated writes come from the app's own origin (docs/security.md: CSRF)
    same_origin = {"Origin": "http://localhost"}
    assert http.post("/api/notes", json={"title": "via cookie"}, headers=same_origin).status_code == 201
    assert http.post("/api/auth/logout", headers=same_origin).status_code == 204
    assert http.get("/api/auth/me").status_code == 401


def test_only_a_hash_of_the_token_is_stored(app, new_client):
    import sqlalchemy as sa
    from app.tables import api_tokens
    c = new_client(app)
    with app.extensions["tradeloop"].db.transaction() as conn:
        stored = conn.execute(sa.select(api_tokens.c.token_hash).where(api_tokens.c.user_id == c.user.id)).scalar()
    assert stored != c.token and c.token not in stored and len(stored) == 64


def test_admin_role(app, new_client):
    from flask import g
    from app import auth, errors
    plain, admin = new_client(app), new_client(app, admin=True)
    assert admin.get("/api/auth/me").json["is_admin"] is True
    with app.test_request_context():
        g.user = plain.user
        with pytest.raises(errors.Forbidden):
            auth.require_admin()
        g.user = admin.user
        assert auth.require_admin() == admin.user


def test_bodies_python_cannot_represent_are_client_errors_not_500(app, new_client):
    """Three bodies that once answered 500 (found by poking a running server):

    * an array nested 100,000 deep: ``json.loads`` raises RecursionError -> 400 malformed_json;
    * an integer of 5,001 digits anywhere in the body: CPython refuses int() of more than
      4,300 digits with ValueError -> 400 malformed_json;
    * a Money string ``"1e999999999"``: a valid Decimal whose ``abs()`` overflows the decimal
      context (Emax 999999) -> 422 "Too large." naming the field, like ``"1e20"``."""
    c = new_client(app)
    json_headers = {"Content-Type": "application/json"}
    deep = c.post("/api/notes", data="[" * 100_000 + "]" * 100_000, headers=json_headers)
    assert deep.status_code == 400 and deep.json["code"] == "malformed_json", deep.json
    huge_int = c.post("/api/notes", data='{"title": "x", "junk": 1' + "0" * 5000 + "}", headers=json_headers)
    assert huge_int.status_code == 400 and huge_int.json["code"] == "malformed_json", huge_int.json
    for amount in ("1e999999999", "-1e999999999", "1e20"):
        r = c.post("/api/notes", json={"title": "x", "amount": amount})
        assert r.status_code == 422, (amount, r.json)
        assert r.json["errors"]["json"]["amount"] == ["Too large."]


def test_a_body_over_max_content_length_is_413_before_it_is_read(app_factory, new_client):
    """No request body is read past MAX_CONTENT_LENGTH (default 24 MiB: the largest legitimate
    body is a 20 MB import plus its multipart envelope). Before, any signed-in user could send a
    body of any size and the server read all of it into memory (webargs' JSON parse, the
    Idempotency-Key body hash) — a 30 MB JSON body came back as a 422 on a field. Here with
    MAX_CONTENT_LENGTH=1000: 1,001 bytes is 413 in the one error shape, 1,000 bytes is parsed."""
    app = app_factory([NOTES], MAX_CONTENT_LENGTH=1000)
    c = new_client(app)
    too_big = '{"title": "x", "pad": "' + "a" * (1001 - 25) + '"}'
    assert len(too_big) == 1001
    r = c.post("/api/notes", data=too_big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.json
    assert r.json["status"] == 413 and r.json["code"] == "request_entity_too_large"
    fits = '{"title": "x", "pad": "' + "a" * (1000 - 25) + '"}'
    r = c.post("/api/notes", data=fits, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "pad" in r.json["errors"]["json"], r.json   # read and validated


def test_max_content_length_default_fits_an_import():
    """The default leaves room for a 20 MB import file and its multipart envelope."""
    from app import config
    from plugins.tradelog.imports import MAX_BYTES
    assert config.load()["MAX_CONTENT_LENGTH"] >= MAX_BYTES + 64 * 1024
