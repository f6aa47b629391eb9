"""/api/jobs: submit, follow, list and cancel background jobs; the kinds and the schedule.

Jobs are user-scoped: you see your own; admins also see admin jobs (admin-only kinds, any
admin's) and scheduled runs. Another user's job answers 404."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app import fields as tf
from app.hookspecs import Topic
from app.jobs import store
from app.jobs.web import accepted, system
from app.jobs.tables import STATES
from app.web import Blueprint, Paged, conn, user

blp = Blueprint("jobs", __name__, url_prefix="/api/jobs",
                description="Background jobs: long operations answer 202 with a Location here. "
                            "Progress also streams on /sse/jobs.")

LOCATION = {"Location": {"description": "/api/jobs/{id}: follow the job there", "schema": {"type": "string"}}}


class JobError(Schema):
    code = fields.String(required=True, metadata={"description": "e.g. worker_lost, insufficient_data, job_error"})
    message = fields.String(required=True)
    status = fields.Integer(metadata={"description": "the HTTP status the same error has in the API"})
    type = fields.String(metadata={"description": "exception class of an unexpected error"})
    errors = fields.Dict()


class JobSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "e.g. mlloop.train"})
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    progress = fields.Float(required=True, metadata={"description": "0..1"})
    message = fields.String(required=True, metadata={"description": "what the job is doing (its last progress message)"})
    params = fields.Dict(required=True)
    result = fields.Raw(allow_none=True, metadata={"description": "the kind's result once succeeded"})
    error = fields.Nested(JobError, allow_none=True,
                          metadata={"description": "why it failed (or the last failed attempt's error)"})
    attempts = fields.Integer(required=True, metadata={"description": "runs started so far"})
    max_attempts = fields.Integer(required=True)
    cancel_requested = fields.Boolean(required=True)
    user_id = fields.Integer(allow_none=True, metadata={"description": "who submitted it; null for the schedule"})
    admin = fields.Boolean(required=True, metadata={"description": "visible to every admin"})
    schedule = fields.String(allow_none=True, metadata={"description": "the schedule entry that submitted it"})
    created_at = tf.UtcDateTime(required=True)
    started_at = tf.UtcDateTime(allow_none=True, metadata={"description": "start of the latest attempt"})
    heartbeat_at = tf.UtcDateTime(allow_none=True)
    finished_at = tf.UtcDateTime(allow_none=True)
    queued_seconds = fields.Float(allow_none=True)
    run_seconds = fields.Float(allow_none=True, metadata={"description": "so far, while running"})
    version = fields.Integer(required=True)


class JobSubmit(Schema):
    kind = fields.String(required=True, validate=validate.Length(min=1, max=100))
    params = fields.Dict(load_default=dict, metadata={"description": "the kind's parameters"})


class JobQuery(Schema):
    state = fields.String(validate=validate.OneOf(STATES))
    kind = fields.String(validate=validate.Length(min=1, max=100))


class JobKindSchema(Schema):
    name = fields.String(required=True)
    owner = fields.String(required=True)
    description = fields.String(required=True)
    admin_only = fields.Boolean(required=True)
    max_attempts = fields.Integer(required=True)


class ScheduleEntrySchema(Schema):
    name = fields.String(required=True)
    kind = fields.String(required=True)
    owner = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    timing = fields.String(required=True)
    params = fields.Dict(required=True)
    description = fields.String(required=True)
    latest_slot = tf.UtcDateTime(allow_none=True, metadata={"description": "the slot it runs (or ran) for now"})
    last_job = fields.Nested(JobSchema, allow_none=True)


class JobEvent(Schema):
    """A job changed state or reported progress."""
    job_id = fields.String(required=True)
    kind = fields.String(required=True)
    state = fields.String(required=True)
    progress = fields.Float(required=True)
    message = fields.String(required=True)
    attempts = fields.Integer(required=True)
    error = fields.Dict()
    result = fields.Raw(metadata={"description": "JobSucceeded only"})


TOPIC = Topic(store.TOPIC, "Background jobs' lifecycle and progress (host-owned; user_id = the submitter, "
                           "null for scheduled runs). Progress events are throttled (JOBS_PROGRESS_SECONDS).",
              {t: JobEvent for t in ("JobQueued", "JobStarted", "JobProgressed", "JobSucceeded", "JobFailed",
                                     "JobCancelled", "JobCancelRequested", "JobRetrying")}, key="aggregate_id")


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobQuery, location="query")
    @blp.response(200, JobSchema(many=True))
    @blp.paginated
    def get(self, args, pagination):
        """Your jobs, newest first (admins: also admin jobs and scheduled runs)."""
        return Paged(*store.list_visible(conn(), user(), **args, page=pagination.page,
                                         page_size=pagination.page_size))

    @blp.arguments(JobSubmit)
    @blp.response(202, JobSchema, headers=LOCATION)
    def post(self, data):
        """Submit a job of any declared kind (GET /api/jobs/kinds). 422 for an unknown kind or
        bad params (naming the field), 403 for an admin kind, 503 `jobs_unavailable` when the
        queue is down (nothing is submitted)."""
        u = user()
        return accepted(system().submit(conn(), data["kind"], data["params"], user_id=u.id, is_admin=u.is_admin))


@blp.route("/kinds")
class Kinds(MethodView):
    @blp.response(200, JobKindSchema(many=True))
    @blp.paginated
    def get(self):
        """The job kinds you may submit."""
        s, u = system(), user()
        return [{"name": k.name, "owner": s.owners[k.name], "description": k.description or "",
                 "admin_only": k.admin_only, "max_attempts": k.max_attempts}
                for k in s.kinds.values() if u.is_admin or not k.admin_only]


@blp.route("/schedule")
class ScheduleView(MethodView):
    @blp.response(200, ScheduleEntrySchema(many=True))
    @blp.paginated
    def get(self):
        """The schedule (admin only): each entry, its timing, and its latest run."""
        import sqlalchemy as sa

        from app.auth import require_admin
        from app.jobs.tables import jobs
        require_admin()
        c = conn()
        out = []
        for entry in system().schedule.describe():
            row = c.execute(sa.select(jobs).where(jobs.c.schedule_key.like(entry["name"] + "@%"))
                            .order_by(jobs.c.created_at.desc()).limit(1)).first()
            out.append({**entry, "last_job": store.public(row) if row else None})
        return out


@blp.route("/<job_id>")
class OneJob(MethodView):
    @blp.response(200, JobSchema)
    @blp.versioned
    def get(self, job_id):
        """A job: state, progress, timings, result or error."""
        return store.get_visible(conn(), user(), job_id)

    @blp.response(200, JobSchema, description="cancelled (it had not started)")
    @blp.alt_response(202, schema=JobSchema, description="cancel requested: the running job stops at its next "
                                                         "progress report (state becomes cancelled)")
    @blp.versioned
    def delete(self, job_id):
        """Cancel a job. 409 `job_finished` when it already ended."""
        job, finished = system().cancel(conn(), user(), job_id)
        return job, 200 if finished else 202
