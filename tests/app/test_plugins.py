"""The plugin host: discovery, enable/disable, clashes, and one test per hook.

Like Datasette's suite, a test fails when a hook in app/hookspecs.py has no section in
docs/plugins.md under its exact signature, or no ``test_hook_<name>`` test here."""
from __future__ import annotations

import inspect
import os
import sys

import pytest
import sqlalchemy as sa

from app import create_app
from app.hookspecs import HookSpecs
from app.migrate import upgrade
from app.plugins import PluginError

NOTES = "tests.plugins.notes.plugin"
CLASH = "tests.plugins.clash.plugin"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS = [name for name, fn in inspect.getmembers(HookSpecs, inspect.isfunction)]


def signature(name: str) -> str:
    sig = inspect.signature(getattr(HookSpecs, name))
    params = [p for p in sig.parameters if p != "self"]
    return f"{name}({', '.join(params)})"


def test_every_hook_is_documented_under_its_signature():
    doc = open(os.path.join(ROOT, "docs", "plugins.md")).read()
    for name in HOOKS:
        assert f"### `{signature(name)}`" in doc, f"docs/plugins.md lacks a section for {signature(name)}"


def test_every_hook_has_a_test():
    names = set(dir(sys.modules[__name__]))
    missing = [h for h in HOOKS if f"test_hook_{h}" not in names]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def fresh_app(tmp_path, plugins, **cfg):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/p.db", "TRADELOOP_PLUGINS": plugins,
                      "SECRET_KEY": "x", **cfg})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    upgrade(app.extensions["tradeloop"], echo=None)
    return app


def tables(app):
    return set(sa.inspect(app.extensions["tradeloop"].db.engine).get_table_names())


def test_a_disabled_plugin_leaves_no_route_table_topic_stream_or_command(tmp_path):
    app = fresh_app(tmp_path, [])
    client = app.test_client()
    assert "test_notes" not in tables(app) and "alembic_version_notes" not in tables(app)
    assert "/api/notes" not in client.get("/openapi.json").json["paths"]
    channels = client.get("/asyncapi.json").json["channels"]
    assert {name for name, c in channels.items() if c["x-owner"] != "host"} == set()
    assert client.get("/api/notes/echo").status_code in (401, 404)
    assert not any(r.rule.startswith(("/api/notes", "/sse/notes")) for r in app.url_map.iter_rules())
    assert "notes-count" not in app.cli.commands
    assert app.extensions["tradeloop"].plugins.subscriptions() == {}
    assert not any(k.startswith("notes.") for k in app.extensions["tradeloop"].jobs.kinds)
    # the same database with the plugin switched on gains exactly what it contributes
    on = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/p.db", "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "x"})
    upgrade(on.extensions["tradeloop"], echo=None)
    assert {"test_notes", "test_note_stats"} <= tables(on)
    assert "notes-count" in on.cli.commands


def test_installed_plugins_are_discovered_through_entry_points():
    from app.plugins import installed
    assert {"tradelog", "riskgraph", "mlloop", "breakers"} <= set(installed())


def test_unknown_plugin_is_a_start_up_error(tmp_path):
    with pytest.raises(PluginError, match="unknown plugin 'nope'"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "TRADELOOP_PLUGINS": ["nope"]})


@pytest.mark.parametrize("what,message", [
    ("route", r"route POST /api/notes/echo is claimed by both 'notes' and 'clash'"),
    ("table", r"table 'test_notes' is claimed by both 'notes' and 'clash'"),
    ("topic", r"topic 'notes.events' is claimed by both 'notes' and 'clash'"),
    ("sse", r"SSE path '/sse/notes' is claimed by both 'notes' and 'clash'"),
])
def test_clashes_fail_at_start_up_naming_both_plugins(tmp_path, monkeypatch, what, message):
    monkeypatch.setenv("CLASH_WHAT", what)
    with pytest.raises(PluginError, match=message):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "TRADELOOP_PLUGINS": [NOTES, CLASH]})


# -- one test per hook -----------------------------------------------------------------
@pytest.fixture
def notes_app(app_factory):
    return app_factory([NOTES])


def test_hook_register_blueprints(notes_app, new_client):
    c = new_client(notes_app)
    assert c.post("/api/notes/echo").json == {"ok": True}
    spec = notes_app.test_client().get("/openapi.json").json
    op = spec["paths"]["/api/notes"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])
    patch = spec["paths"]["/api/notes/{note_id}"]["patch"]
    assert any(p["name"] == "If-Match" and p["required"] for p in patch["parameters"])
    assert "default" in op["responses"]  # the one error shape documents every failure


def test_hook_register_tables(notes_app):
    owners = notes_app.extensions["tradeloop"].table_owners
    assert owners["test_notes"] == "notes" and owners["test_note_stats"] == "notes"


def test_hook_register_migrations(notes_app):
    ext = notes_app.extensions["tradeloop"]
    assert ext.migrations["notes"][0] == "notes"
    names = set(sa.inspect(ext.db.engine).get_table_names())
    assert {"alembic_version_core", "alembic_version_notes", "test_notes"} <= names
    assert upgrade(ext, echo=None) == ["core", "notes"]  # idempotent


def test_hook_register_topics(notes_app):
    doc = notes_app.test_client().get("/asyncapi.json").json
    channel = doc["channels"]["notes.events"]
    assert channel["x-owner"] == "notes" and channel["x-consumer-groups"] == ["notes"]
    msg = doc["components"]["messages"]["notes.events.NoteCreated"]
    assert msg["payload"]["properties"]["payload"]["properties"]["title"]["type"] == "string"
    assert {"ce_id", "ce_type", "ce_source"} <= set(msg["headers"]["properties"])


def test_hook_register_subscriptions(notes_app, new_client, run_consumers):
    from tests.plugins.notes.plugin import note_stats
    c = new_client(notes_app)
    for i in range(3):
        c.post("/api/notes", json={"title": f"n{i}"})
    run_consumers(notes_app)
    run_consumers(notes_app)  # nothing is handled twice
    with notes_app.extensions["tradeloop"].db.transaction() as conn:
        assert conn.execute(sa.select(note_stats.c.created).where(note_stats.c.user_id == c.user.id)).scalar() == 3


def test_hook_register_sse_streams(notes_app, new_client):
    rules = {r.rule for r in notes_app.url_map.iter_rules()}
    assert "/sse/notes" in rules
    assert notes_app.test_client().get("/sse/notes").status_code == 401  # user-scoped


def test_hook_register_commands(notes_app, new_client):
    c = new_client(notes_app)
    c.post("/api/notes", json={"title": "counted"})
    result = notes_app.test_cli_runner().invoke(args=["notes-count"])
    assert result.exit_code == 0 and int(result.output.strip()) >= 1


def test_hook_register_job_kinds(notes_app, new_client):
    """A declared kind is submitted through the API, run by a worker with the arguments its
    function names, and its result is the function's return value."""
    ext = notes_app.extensions["tradeloop"]
    assert ext.jobs.owners["notes.count"] == "notes"
    c = new_client(notes_app)
    for i in range(2):
        c.post("/api/notes", json={"title": f"j{i}"})
    r = c.post("/api/jobs", json={"kind": "notes.count"})
    assert r.status_code == 202 and r.headers["Location"] == f"/api/jobs/{r.json['id']}"
    ext.jobs.run_pending()
    job = c.get(r.headers["Location"]).json
    assert job["state"] == "succeeded" and job["result"] == {"count": 2} and job["user_id"] == c.user.id
    kinds = {k["name"] for k in c.get("/api/jobs/kinds").json}
    assert "notes.count" in kinds and "notes.admin_count" not in kinds  # admin kinds: admins only
    assert c.post("/api/jobs", json={"kind": "notes.admin_count"}).status_code == 403


def test_hook_register_schedule(app_factory, new_client):
    """A plugin's entry ships off; JOBS_SCHEDULE turns it on, and one tick submits its slot
    once however often it ticks (the slot's job row is unique)."""
    import datetime as dt
    off = app_factory([NOTES]).extensions["tradeloop"].jobs
    assert [e.enabled for _, e in off.schedule.entries if e.name == "notes.count_all"] == [False]
    ext = app_factory([NOTES], JOBS_SCHEDULE="notes.count_all=every 60").extensions["tradeloop"]
    now = dt.datetime(2031, 1, 2, 3, 4, 30, tzinfo=dt.timezone.utc)  # a fake clock
    first = ext.jobs.schedule.tick(now)
    again = ext.jobs.schedule.tick(now + dt.timedelta(seconds=20))  # same slot (03:04)
    admin = new_client(ext.app, admin=True)
    mine = [j for j in admin.get("/api/jobs?kind=notes.admin_count&page_size=500").json if j["id"] in first]
    assert again == [] and len(mine) == 1 and mine[0]["schedule"] == "notes.count_all"
    assert mine[0]["user_id"] is None and mine[0]["admin"] is True


def test_hook_health_checks(notes_app):
    body = notes_app.test_client().get("/health").json
    assert body["checks"]["notes.notes_table"] == {"ok": True, "detail": "ok"}
    assert body["ok"] is True and "notes" in body["plugins"]


def test_hook_check_order_allowed(app_factory):
    ext_on = app_factory([NOTES], NOTES_VETO=True).extensions["tradeloop"]
    ext_off = app_factory([NOTES]).extensions["tradeloop"]
    with ext_on.app.app_context(), ext_on.db.transaction() as conn:
        vetoes = ext_on.check_order_allowed(conn, 1, {"order_id": "o1"})
    assert [v.source for v in vetoes] == ["notes_veto"] and vetoes[0].detail == {"order": "o1"}
    with ext_off.app.app_context(), ext_off.db.transaction() as conn:
        assert ext_off.check_order_allowed(conn, 1, {"order_id": "o1"}) == []


def test_hook_scoring_mode(app_factory):
    on = app_factory([NOTES], NOTES_RULES_ONLY=True).extensions["tradeloop"]
    off = app_factory([NOTES]).extensions["tradeloop"]
    with on.app.app_context(), on.db.transaction() as conn:
        assert on.scoring_mode(conn, 1) == "rules_only"
    with off.app.app_context(), off.db.transaction() as conn:
        assert off.scoring_mode(conn, 1) == "normal"


def test_hook_load_demo_data(tmp_path):
    from click.testing import CliRunner
    from app import auth
    from app.cli import _demo
    from tests.plugins.notes.plugin import notes
    app = fresh_app(tmp_path, [NOTES])
    ext = app.extensions["tradeloop"]
    with app.app_context():
        _demo(ext)
        _demo(ext)  # a second start issues a new token but loads the data once
    with ext.db.transaction() as conn:
        demo = auth.user_by_name(conn, "demo")
        titles = conn.execute(sa.select(notes.c.title).where(notes.c.user_id == demo.id)).scalars().all()
    assert demo.is_admin and titles == ["demo note"]
    assert CliRunner  # the CLI path is exercised by test_cli.py


def test_hook_app_ready(notes_app):
    assert notes_app.config["NOTES_READY"] is True
