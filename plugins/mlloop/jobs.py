"""The ML loop's background jobs and schedule (issue 16): thin adapters from the job runner's
``(db, params, progress, user_id)`` to the service functions, which already take a
``progress(fraction, message)`` callback and a ``Database``. No Huey here; the host runs them
on a job worker, never on the web process's loop."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.hookspecs import JobKind, ScheduleEntry
from plugins.mlloop.admin_schemas import REGIME, TrainIn, TrainOptions, TrainParams


TrainJob = TrainIn  # POST /api/admin/ml/models/train's body is the job's params


def train(db, params, progress, user_id) -> dict:
    """Walk-forward train on every user's settled ideas and register the model (validating);
    the result is the registered model (as ``GET /api/admin/ml/models/{id}``)."""
    from plugins.mlloop import service
    return service.training.train(db, params=params.get("params") or {}, options=params.get("options") or {},
                                  regime=params.get("regime"), description=params.get("description"),
                                  feature_set_version=params.get("feature_set_version"),
                                  progress=progress, actor_user_id=user_id)


class WalkForwardJob(Schema):
    regime = REGIME
    params = fields.Nested(TrainParams, load_default=dict)
    options = fields.Nested(TrainOptions, load_default=dict)
    feature_set_version = TrainIn._declared_fields["feature_set_version"]


def walk_forward(db, params, progress) -> dict:
    """Walk-forward evaluation without registering anything: every window's held-out
    metrics, the aggregate and the pooled calibration for these parameters."""
    from plugins.mlloop.service import training, training_data
    from plugins.mlloop.service import feature_sets
    progress(0.0, "loading settled ideas")
    with db.read() as c:
        fset = feature_sets.resolve(c, params.get("feature_set_version"))
        frame = training_data.load_training_frame(c, regime=params.get("regime"), feature_set=fset)
    names, cats = training_data.feature_columns(fset)
    if len(frame) < training.MIN_ROWS:
        from app import errors
        raise errors.InvalidState(f"only {len(frame)} settled ideas with features; need at least "
                                  f"{training.MIN_ROWS}", code="insufficient_data")
    model = training.train_frame(frame, params=params.get("params") or {}, options=params.get("options") or {},
                                 feature_list=names, cat_features=cats,
                                 progress=lambda done, total, m: progress(0.05 + 0.95 * done / max(total, 1), m))
    metrics = model.metrics or {}
    return {"rows": len(frame), "windows": metrics.get("windows"), "aggregate": metrics.get("aggregate"),
            "pooled": metrics.get("pooled")}


class SimulateJob(Schema):
    days = fields.Integer(load_default=1, validate=validate.Range(1, 500))
    ideas_per_day = fields.Integer(load_default=2000, validate=validate.Range(1, 200_000))
    seed = fields.Integer(load_default=1, validate=validate.Range(0, 2**31))
    ledger = fields.String(load_default="all", validate=validate.OneOf(["all", "traded"]))
    user = fields.String(load_default="simulator", validate=validate.Length(1, 80),
                         metadata={"description": "the user who owns the simulated ideas (created if missing)"})


def simulate(db, params, progress) -> dict:
    """The market simulator (``tradeloop ml simulate``) as a job. The bus consumers (labels,
    daily performance) catch up on their own worker."""
    from flask import current_app

    from app import auth
    from plugins.mlloop.sim import drive
    with db.transaction() as c:
        u = auth.user_by_name(c, params["user"]) or auth.create_user(c, params["user"])[0]
        mode = current_app.extensions["tradeloop"].scoring_mode(c, u.id)
    summary = drive.run(db, u.id, days=params["days"], ideas_per_day=params["ideas_per_day"],
                        seed=params["seed"], ledger=params["ledger"], mode=mode, progress=progress)
    return {"user": params["user"], "user_id": u.id, **summary.as_dict()}


def check_experiments(db, progress) -> dict:
    """Apply the stopping rules to every running experiment."""
    from plugins.mlloop import service
    with db.transaction() as c:
        return {"checked": service.experiments.check_experiments(c, actor_user_id=None)}


def check_drift(db, progress) -> dict:
    """Drift of every champion (one report per scope) against its training reference."""
    import sqlalchemy as sa

    from app import errors
    from plugins.mlloop import service
    from plugins.mlloop.tables import ml_models
    with db.read() as c:
        scopes = [r.regime for r in c.execute(sa.select(ml_models.c.regime).where(ml_models.c.status == "champion"))]
    reports = []
    for i, regime in enumerate(scopes):
        progress(i / max(len(scopes), 1), f"drift of the {regime or 'global'} champion")
        try:
            with db.transaction() as c:
                rep = service.drift_reports.check_drift(c, model_id=None, regime=regime, days=5)
            reports.append({"regime": regime, "report_id": rep["id"], "drift_detected": rep["drift_detected"]})
        except errors.DomainError as exc:  # e.g. no recent decisions in that scope
            reports.append({"regime": regime, "skipped": exc.message})
    return {"champions": len(scopes), "reports": reports}


def materialize(db, progress) -> dict:
    """Rebuild daily_performance from pnl_events for everyone (the consumer keeps it current
    incrementally; this repairs any drift)."""
    from plugins.mlloop import service
    with db.transaction() as c:
        return {"days": service.outcomes.materialize(c, None)}


class DeepScoreJob(Schema):
    limit = fields.Integer(load_default=20_000, validate=validate.Range(1, 200_000),
                           metadata={"description": "decisions deep-scored in this run (oldest first); "
                                                    "the next run takes the rest"})


def deep_score(db, params, progress, user_id, job_id) -> dict:
    """Deep-score recorded decisions that have none yet (their own model, full batch path)
    and record each as an immutable ``ml_deep_scores`` row + ``DeepScoreRecorded``. A user's
    run takes that user's decisions; a scheduled run (no user) everyone's."""
    from plugins.mlloop import service
    return service.deep_scores.score_pending(db, user_id=user_id, limit=params["limit"], job_id=job_id,
                                             progress=progress)


KINDS = [
    JobKind("mlloop.train", train, "Train a model walk-forward and register it (validating).",
            params_schema=TrainJob, admin_only=True),
    JobKind("mlloop.walk_forward", walk_forward, "Walk-forward evaluation of parameters (nothing registered).",
            params_schema=WalkForwardJob, admin_only=True),
    JobKind("mlloop.simulate", simulate, "Run the synthetic market through scoring, fills, ledger, settlement.",
            params_schema=SimulateJob, admin_only=True),
    JobKind("mlloop.check_experiments", check_experiments, "Experiment stopping rules.",
            admin_only=True, max_attempts=3),
    JobKind("mlloop.check_drift", check_drift, "Drift check of every champion.", admin_only=True, max_attempts=3),
    JobKind("mlloop.materialize", materialize, "Rebuild daily performance.", admin_only=True, max_attempts=3),
    JobKind("mlloop.deep_score", deep_score, "Deep-score decisions that have no deep score yet (yours; "
            "everyone's on the schedule).", params_schema=DeepScoreJob, max_attempts=3),
]

SCHEDULE = [
    ScheduleEntry("mlloop.check_experiments", "mlloop.check_experiments", every_seconds=3600,
                  description="Experiment stopping checks, hourly."),
    ScheduleEntry("mlloop.check_drift", "mlloop.check_drift", cron="30 22 * * 1-5",
                  description="Champions' drift, weekdays after the US close (22:30 UTC)."),
    ScheduleEntry("mlloop.materialize", "mlloop.materialize", cron="45 22 * * 1-5",
                  description="Daily-performance materialisation, weekdays 22:45 UTC."),
    ScheduleEntry("mlloop.deep_score", "mlloop.deep_score", every_seconds=60,
                  description="Deep scores of every new decision, every minute."),
]
