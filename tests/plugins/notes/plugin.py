"""``notes``: the tests' plugin. A versioned, user-owned resource with events, an SSE stream,
a bus handler, a CLI command, a health check and both veto hooks (driven by config)."""
from __future__ import annotations

import os
import time

import click
import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app import errors
from app.auth import admin_only
from app import fields as tf
from app.concurrency import versioned_update
from app.db import Money, UtcDateTime, new_id, utcnow
from app.hookspecs import JobKind, ScheduleEntry, SSEStream, Topic, Veto, hookimpl
from app.plugins import migrations_branch
from app.web import Blueprint, conn, user
from bus.consumer import batch

PLUGIN_NAME = "notes"
metadata = sa.MetaData()
notes = sa.Table(
    "test_notes", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("title", sa.String(100), nullable=False),
    sa.Column("amount", Money(), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
note_stats = sa.Table(
    "test_note_stats", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("created", sa.Integer, nullable=False),
)


class NoteIn(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=100))
    amount = tf.Money(allow_none=True, validate=validate.Range(min=0))
    sleep = fields.Float(load_default=0, validate=validate.Range(min=0, max=5),
                         metadata={"description": "test only: hold the request this long"})
    fail = fields.Boolean(load_default=False, metadata={"description": "test only: fail after writing"})


class NotePatch(Schema):
    title = fields.String(validate=validate.Length(min=1, max=100))
    amount = tf.Money(allow_none=True, validate=validate.Range(min=0))


class Note(Schema):
    id = fields.String(required=True)
    title = fields.String(required=True)
    amount = tf.Money(allow_none=True)
    version = fields.Integer(required=True)
    created_at = tf.UtcDateTime(required=True)


class NoteCreated(Schema):
    """A note was created."""
    id = fields.String()
    title = fields.String()


TOPIC = Topic("notes.events", "Test notes' domain events.", {"NoteCreated": NoteCreated, "NoteUpdated": NotePatch})


# -- service (no Flask) -----------------------------------------------------------------
def create_note(c, user_id: int, data: dict) -> dict:
    row = dict(id=new_id(), user_id=user_id, title=data["title"], amount=data.get("amount"),
               version=1, created_at=utcnow())
    c.execute(notes.insert().values(**row))
    if data.get("sleep"):
        time.sleep(data["sleep"])
    TOPIC.emit(c, "NoteCreated", aggregate_type="note", aggregate_id=row["id"], aggregate_version=1,
               payload={"id": row["id"], "title": row["title"]}, user_id=user_id)
    if data.get("fail"):
        raise RuntimeError("asked to fail after writing")
    return row


def get_note(c, user_id: int, note_id: str) -> dict | None:
    r = c.execute(sa.select(notes).where(notes.c.id == note_id, notes.c.user_id == user_id)).first()
    return dict(r._mapping) if r else None


def update_note(c, user_id: int, note_id: str, data: dict, expected: int) -> dict:
    values = {k: v for k, v in data.items() if k in ("title", "amount")}
    version = versioned_update(c, notes, id_value=note_id, user_id=user_id, expected=expected,
                               values=values, current=lambda: get_note(c, user_id, note_id))
    TOPIC.emit(c, "NoteUpdated", aggregate_type="note", aggregate_id=note_id, aggregate_version=version,
               payload=values, user_id=user_id)
    return get_note(c, user_id, note_id)


@batch
def on_note_created(c, events):
    if os.environ.get("NOTES_HANDLER_FAIL") == "1":
        raise RuntimeError("handler told to fail")
    for ev in events:
        done = c.execute(note_stats.update().where(note_stats.c.user_id == ev.user_id)
                         .values(created=note_stats.c.created + 1)).rowcount
        if not done:
            c.execute(note_stats.insert().values(user_id=ev.user_id, created=1))


# -- HTTP -------------------------------------------------------------------------------
blp = Blueprint("notes", __name__, url_prefix="/api/notes", description="Test notes.")


@blp.route("")
class Notes(MethodView):
    @blp.arguments(NoteIn)
    @blp.response(201, Note)
    @blp.versioned
    def post(self, data):
        """Create a note."""
        if not current_app.config.get("NOTES_TEST_KNOBS", True):
            data = {k: v for k, v in data.items() if k not in ("sleep", "fail")}
        return create_note(conn(), user().id, data)


@blp.route("/<note_id>")
class OneNote(MethodView):
    @blp.response(200, Note)
    @blp.versioned
    def get(self, note_id):
        """Get a note."""
        note = get_note(conn(), user().id, note_id)
        if note is None:
            raise errors.NotFound("note not found")
        return note

    @blp.arguments(NotePatch)
    @blp.response(200, Note)
    @blp.versioned(if_match=True)
    def patch(self, data, note_id, expected):
        """Change a note (If-Match)."""
        return update_note(conn(), user().id, note_id, data, expected=expected)


@blp.route("/echo")
class Echo(MethodView):
    @blp.response(200)
    def post(self):
        """Trivial JSON endpoint (the benchmark's baseline)."""
        return {"ok": True}


class PurgeIn(Schema):
    older_than_days = fields.Integer(required=True, validate=validate.Range(min=1))


@blp.route("/admin/purge")
class Purge(MethodView):
    @admin_only
    @blp.arguments(PurgeIn)
    @blp.response(200)
    def post(self, data):
        """An admin-only action with a required body (403 comes before 422)."""
        return {"would_purge_older_than_days": data["older_than_days"]}


# -- jobs (plain service functions: no Flask, no Huey) --------------------------------------
def count_notes(db, user_id, progress) -> dict:
    """How many notes the submitter has (all notes for a scheduled run)."""
    progress(0.5, "counting")
    q = sa.select(sa.func.count()).select_from(notes)
    if user_id is not None:
        q = q.where(notes.c.user_id == user_id)
    with db.read() as c:
        return {"count": c.execute(q).scalar()}


class SlowParams(Schema):
    seconds = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=120))
    steps = fields.Integer(load_default=10, validate=validate.Range(min=1, max=10_000))
    burn = fields.Boolean(load_default=False, metadata={"description": "spin the CPU instead of sleeping"})
    fail = fields.String(load_default=None, allow_none=True, metadata={"description": "raise this message"})
    log = fields.String(load_default=None, allow_none=True, metadata={"description": "append a line per start/end"})


def slow(params, progress, job_id) -> dict:
    """Work for ``seconds`` in ``steps``, reporting progress; test knob for the job drills."""
    def note(what):
        if params.get("log"):
            with open(params["log"], "a") as f:
                f.write(f"{what} {job_id} {os.getpid()}\n")
    note("start")
    step = params["seconds"] / params["steps"]
    for i in range(params["steps"]):
        if params["burn"]:
            end = time.perf_counter() + step
            x = 0
            while time.perf_counter() < end:
                x += sum(range(200))
        else:
            time.sleep(step)
        progress((i + 1) / params["steps"], f"step {i + 1} of {params['steps']}")
    if params.get("fail"):
        raise errors.Unprocessable(params["fail"], code="asked_to_fail")
    note("end")
    return {"pid": os.getpid(), "steps": params["steps"]}


class FlakyParams(Schema):
    counter = fields.String(required=True, metadata={"description": "a file counting attempts"})
    succeed_on = fields.Integer(load_default=2)


def flaky(params) -> dict:
    """Raises ConnectionError until its ``succeed_on``-th attempt (retry_on)."""
    n = (int(open(params["counter"]).read() or 0) if os.path.exists(params["counter"]) else 0) + 1
    with open(params["counter"], "w") as f:
        f.write(str(n))
    if n < params["succeed_on"]:
        raise ConnectionError(f"attempt {n} failed")
    return {"attempt": n}


def burn_cpu(seconds: float) -> int:
    """Spin one core for ``seconds`` (pure Python, holds the GIL); returns the loop count."""
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        sum(range(200))
        n += 1
    return n


class BurnIn(Schema):
    seconds = fields.Float(required=True, validate=validate.Range(min=0, max=10))
    timeout = fields.Float(load_default=30, validate=validate.Range(min=0.1, max=60))


@blp.route("/burn")
class Burn(MethodView):
    @blp.arguments(BurnIn)
    @blp.response(200)
    def post(self, data):
        """Test only: CPU work the response waits for, in the off-loop process pool."""
        from app.jobs.offloop import run_cpu
        return {"loops": run_cpu(burn_cpu, data["seconds"], timeout=data["timeout"])}


# -- hooks ------------------------------------------------------------------------------
@hookimpl
def register_blueprints(app):
    return [blp]


@hookimpl
def register_tables():
    return metadata


@hookimpl
def register_migrations():
    return migrations_branch(__name__)


@hookimpl
def register_topics():
    return [TOPIC]


@hookimpl
def register_subscriptions():
    return {"notes.NoteCreated": on_note_created}


@hookimpl
def register_sse_streams():
    return [SSEStream("/sse/notes", "notes.events", "Your notes' events.")]


@click.command("notes-count")
def notes_count():
    """Print how many notes exist."""
    ext = current_app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        click.echo(c.execute(sa.select(sa.func.count()).select_from(notes)).scalar())


@hookimpl
def register_job_kinds():
    return [JobKind("notes.count", count_notes, "Count your notes."),
            JobKind("notes.slow", slow, "Work a while with progress (test drills).", params_schema=SlowParams),
            JobKind("notes.slow_retried", slow, "notes.slow, rerun when its worker dies (2 attempts).",
                    params_schema=SlowParams, max_attempts=2),
            JobKind("notes.flaky", flaky, "Fails with ConnectionError until an attempt succeeds.",
                    params_schema=FlakyParams, max_attempts=3, retry_on=(ConnectionError,)),
            JobKind("notes.admin_count", count_notes, "Count every note (admins).", admin_only=True)]


@hookimpl
def register_schedule():
    # Off unless a deployment turns it on (JOBS_SCHEDULE="notes.count_all=every 2"): tests do.
    return [ScheduleEntry("notes.count_all", "notes.admin_count", every_seconds=3600, enabled=False,
                          description="Count every note.")]


@hookimpl
def register_commands():
    return [notes_count]


@hookimpl
def health_checks(app):
    return {"notes_table": lambda: (True, "ok")}


@hookimpl
def check_order_allowed(conn, user_id, order):
    veto = current_app.config.get("NOTES_VETO")
    if veto and (veto == "create" or order.get("stage") != "create"):  # executions, or creations too
        return [Veto("notes_veto", "notes says no", {"order": order.get("order_id")})]
    return []


@hookimpl
def scoring_mode(conn, user_id):
    return "rules_only" if current_app.config.get("NOTES_RULES_ONLY") else None


@hookimpl
def load_demo_data(conn, user_id):
    create_note(conn, user_id, {"title": "demo note"})


@hookimpl
def app_ready(app):
    app.config["NOTES_READY"] = True
