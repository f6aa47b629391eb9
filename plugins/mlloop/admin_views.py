"""Admin HTTP API of the ML loop (part 2), under /api/admin/ml: the model registry (train,
promote, roll back, retire, audit), settings (blend weight, exploration rate), drift,
experiments, the mid-week evaluation endpoints and decision replay.

Admin-only: every view calls ``require_admin()`` first (403 ``admin_only`` otherwise).
System-wide: models and evaluation cover every user's data. Thin views: arguments in, one
``modelops`` call, response out. Schemas live here because they are this API's alone.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate, validates_schema, ValidationError

from app import conn
from app import fields as tf
from app.auth import admin_only, require_admin
from plugins.mlloop import features, modelops
from plugins.mlloop.registry import EXPERIMENT_STATUSES, STATUSES

blp = admin_only(Blueprint("mlloop_admin", __name__, url_prefix="/api/admin/ml",
                           description="ML loop administration (admin only: 403 before any input is "
                                       "validated): model registry, training, settings, drift, "
                                       "experiments, evaluation and replay."))

MID = "<int(max=2147483647):model_id>"
EID = "<int(max=2147483647):experiment_id>"
REGIME = fields.String(allow_none=True, validate=validate.OneOf(features.VIX_REGIMES),
                       metadata={"description": "VIX regime scope; absent/null = global"})


def _admin() -> int:
    return require_admin().id


# -- schemas --------------------------------------------------------------------------------
class ModelQuery(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    regime = fields.String(validate=validate.OneOf(features.VIX_REGIMES))


class ModelSchema(Schema):
    id = fields.Integer(required=True)
    model_name = fields.String(required=True)
    model_version = fields.Integer(required=True)
    model_type = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": " | ".join(STATUSES)})
    regime = fields.String(allow_none=True, metadata={"description": "null = global champion scope"})
    content_id = fields.String(required=True, metadata={"description": "content hash of the blob's models"})
    feature_set_version = fields.String(required=True)
    feature_list = fields.List(fields.String(), required=True)
    cat_features = fields.List(fields.String(), required=True)
    hyperparameters = fields.Dict(required=True)
    train_auc = fields.Float(allow_none=True)
    val_auc = fields.Float(allow_none=True, metadata={"description": "mean walk-forward AUC (OvR)"})
    train_samples = fields.Integer(allow_none=True)
    val_samples = fields.Integer(allow_none=True)
    data_start = tf.UtcDateTime(allow_none=True)
    data_end = tf.UtcDateTime(allow_none=True)
    label_end = tf.UtcDateTime(allow_none=True)
    parent_model_id = fields.Integer(allow_none=True)
    dataset_hash = fields.String(required=True)
    created_at = tf.UtcDateTime(required=True)
    deployed_at = tf.UtcDateTime(allow_none=True)
    retired_at = tf.UtcDateTime(allow_none=True)
    created_by = fields.Integer(allow_none=True)
    description = fields.String(allow_none=True)


class ModelDetail(ModelSchema):
    metrics = fields.Dict(required=True, metadata={"description": "walk-forward windows, aggregate, pooled, calibration, regimes, importance"})


class ModelList(Schema):
    models = fields.List(fields.Nested(ModelSchema), required=True)


class TrainParams(Schema):
    iterations = fields.Integer(validate=validate.Range(1, 2000))
    depth = fields.Integer(validate=validate.Range(1, 10))
    learning_rate = fields.Float(validate=validate.Range(0.001, 1.0))
    l2_leaf_reg = fields.Float(validate=validate.Range(0.0, 100.0))
    border_count = fields.Integer(validate=validate.Range(2, 255))
    random_seed = fields.Integer(validate=validate.Range(0, 2**31 - 1))


class TrainOptions(Schema):
    train_days = fields.Integer(validate=validate.Range(1, 250))
    val_days = fields.Integer(validate=validate.Range(1, 60))
    step_days = fields.Integer(validate=validate.Range(1, 60))
    embargo_days = fields.Float(validate=validate.Range(0, 30))
    min_train_samples = fields.Integer(validate=validate.Range(1, 10_000_000))
    max_windows = fields.Integer(allow_none=True, validate=validate.Range(1, 500))
    min_regime_samples = fields.Integer(validate=validate.Range(1, 10_000_000))
    calibration = fields.String(validate=validate.OneOf(("auto", "none", "isotonic", "platt", "temperature")))


class TrainIn(Schema):
    regime = REGIME
    params = fields.Nested(TrainParams, load_default=dict)
    options = fields.Nested(TrainOptions, load_default=dict)
    description = fields.String(allow_none=True, validate=validate.Length(max=500))


class ReasonIn(Schema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=500))


class RollbackIn(ReasonIn):
    regime = REGIME


class AuditSchema(Schema):
    id = fields.Integer(required=True)
    model_id = fields.Integer(required=True)
    action = fields.String(required=True)
    from_status = fields.String(allow_none=True)
    to_status = fields.String(required=True)
    regime = fields.String(allow_none=True)
    replaced_model_id = fields.Integer(allow_none=True)
    actor_user_id = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    at = tf.UtcDateTime(required=True)


class AuditList(Schema):
    audit = fields.List(fields.Nested(AuditSchema), required=True)


class SettingsSchema(Schema):
    ml_weight = fields.Float(validate=validate.Range(0.0, 1.0),
                             metadata={"description": "blend weight; 0 = shadow (scored, ranking unchanged)"})
    exploration_rate = fields.Float(validate=validate.Range(0.0, 1.0))
    low_data_threshold = fields.Float(validate=validate.Range(0.0, 1e9),
                                      metadata={"description": "settled ideas below which a regime is always explored"})


class DriftConfigIn(Schema):
    psi_threshold = fields.Float(validate=validate.Range(0.0, 100.0, min_inclusive=False))
    p_value = fields.Float(validate=validate.Range(0.0, 1.0, min_inclusive=False))
    wasserstein_threshold = fields.Float(validate=validate.Range(0.0, 100.0, min_inclusive=False))
    jensenshannon_threshold = fields.Float(validate=validate.Range(0.0, 1.0, min_inclusive=False))
    drift_share = fields.Float(validate=validate.Range(0.0, 1.0, min_inclusive=False))
    score_psi_threshold = fields.Float(validate=validate.Range(0.0, 100.0, min_inclusive=False))
    numeric_stattest = fields.String(validate=validate.OneOf(("auto", "psi", "ks", "wasserstein")))
    categorical_stattest = fields.String(validate=validate.OneOf(("auto", "psi", "chisquare", "jensenshannon")))


class DriftIn(Schema):
    model_id = fields.Integer(allow_none=True, validate=validate.Range(1, 2**31 - 1),
                              metadata={"description": "default: the champion of `regime` (else global)"})
    regime = REGIME
    days = fields.Float(load_default=5.0, validate=validate.Range(0.01, 365))
    config = fields.Nested(DriftConfigIn, load_default=dict)


class DriftReportSchema(Schema):
    id = fields.Integer(required=True)
    model_id = fields.Integer(required=True)
    computed_at = tf.UtcDateTime(required=True)
    window_start = tf.UtcDateTime(allow_none=True)
    window_end = tf.UtcDateTime(allow_none=True)
    n_reference = fields.Integer(required=True)
    n_current = fields.Integer(required=True)
    drift_detected = fields.Boolean(required=True)
    share_drifted = fields.Float(required=True)
    score_psi = fields.Float(allow_none=True)
    report = fields.Dict(required=True, metadata={"description": "per feature statistics, score drift, config"})
    actor_user_id = fields.Integer(allow_none=True)


class DriftQuery(Schema):
    model_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))


class DriftList(Schema):
    reports = fields.List(fields.Nested(DriftReportSchema), required=True)


class ExperimentIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    challenger_model_id = fields.Integer(required=True, validate=validate.Range(1, 2**31 - 1))
    regime = REGIME
    traffic_split = fields.Float(load_default=0.10, validate=validate.Range(0.01, 0.99))
    max_duration_days = fields.Integer(load_default=14, validate=validate.Range(1, 365))
    min_samples_per_arm = fields.Integer(load_default=100, validate=validate.Range(2, 10_000_000))
    early_stop_threshold = fields.Float(load_default=0.01, validate=validate.Range(0.0, 0.5, min_inclusive=False))
    champion_ml_weight = fields.Float(allow_none=True, validate=validate.Range(0.0, 1.0))
    challenger_ml_weight = fields.Float(allow_none=True, validate=validate.Range(0.0, 1.0))


class ExperimentSchema(Schema):
    id = fields.Integer(required=True)
    experiment_name = fields.String(required=True)
    description = fields.String(allow_none=True)
    champion_model_id = fields.Integer(allow_none=True, metadata={"description": "null: the rules"})
    challenger_model_id = fields.Integer(required=True)
    traffic_split = fields.Float(required=True)
    status = fields.String(required=True, metadata={"description": " | ".join(EXPERIMENT_STATUSES)})
    regime = fields.String(allow_none=True)
    started_at = tf.UtcDateTime(required=True)
    ended_at = tf.UtcDateTime(allow_none=True)
    champion_samples = fields.Integer(allow_none=True)
    challenger_samples = fields.Integer(allow_none=True)
    champion_win_rate = fields.Float(allow_none=True)
    challenger_win_rate = fields.Float(allow_none=True)
    p_value = fields.Float(allow_none=True)
    winner = fields.String(allow_none=True)
    champion_ml_weight = fields.Float(allow_none=True)
    challenger_ml_weight = fields.Float(allow_none=True)
    max_duration_days = fields.Integer(required=True)
    min_samples_per_arm = fields.Integer(required=True)
    early_stop_threshold = fields.Float(required=True)
    stop_reason = fields.String(allow_none=True)
    last_check = fields.Dict(allow_none=True)
    conclusion = fields.Dict(allow_none=True)
    created_by = fields.Integer(allow_none=True)
    evaluation = fields.Dict(allow_none=True, metadata={"description": "live: SRM, Welch on R2R, win rate, drawdown, stopping"})


class ExperimentQuery(Schema):
    status = fields.String(validate=validate.OneOf(EXPERIMENT_STATUSES))


class ExperimentList(Schema):
    experiments = fields.List(fields.Nested(ExperimentSchema), required=True)


class ConcludeIn(ReasonIn):
    promote = fields.Boolean(load_default=True, metadata={"description": "promote the challenger if it won"})


class CheckResult(Schema):
    experiment_id = fields.Integer(required=True)
    stop = fields.Boolean(required=True)
    reason = fields.String(required=True)
    winner = fields.String(allow_none=True)
    p_value = fields.Float(allow_none=True)


class CheckList(Schema):
    checked = fields.List(fields.Nested(CheckResult), required=True)


class EvalQuery(Schema):
    since = tf.UtcDateTime(metadata={"description": "start of the window (inclusive)"})
    until = tf.UtcDateTime(metadata={"description": "end of the window (exclusive); must be after `since` (422)"})

    @validates_schema
    def _order(self, data, **kw):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError("must be after since", "until")


class ScoreOutcomesQuery(EvalQuery):
    score = fields.String(load_default="ml_score",
                          validate=validate.OneOf(("ml_score", "final_score", "original_score")))


class Bucket(Schema):
    bucket = fields.String(required=True)
    low = fields.Integer(required=True)
    high = fields.Integer(required=True)
    count = fields.Integer(required=True)
    avg_pnl = tf.Money(places=2, allow_none=True)
    win_rate = fields.Float(allow_none=True)
    avg_r2r = fields.Float(allow_none=True)
    win_rate_vs_baseline = fields.Float(allow_none=True)
    avg_pnl_vs_baseline = tf.Money(places=2, allow_none=True)


class ScoreOutcomes(Schema):
    score = fields.String(required=True)
    n = fields.Integer(required=True)
    baseline_win_rate = fields.Float(allow_none=True)
    baseline_avg_pnl = tf.Money(places=2, allow_none=True)
    buckets = fields.List(fields.Nested(Bucket), required=True)


class MlVsRulesQuery(EvalQuery):
    threshold = fields.Float(load_default=20.0, validate=validate.Range(0.0, 100.0))


class Group(Schema):
    count = fields.Integer(required=True)
    win_rate = fields.Float(allow_none=True)
    avg_pnl = tf.Money(places=2, allow_none=True)
    right = fields.Integer()
    wrong = fields.Integer()
    accuracy = fields.Float(allow_none=True)


class Example(Schema):
    decision_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    ml_score = fields.Float(required=True)
    original_score = fields.Float(required=True)
    divergence = fields.Float(required=True)
    pnl = tf.Money(places=2, required=True)
    ml_right = fields.Boolean(required=True)


class MlVsRules(Schema):
    threshold = fields.Float(required=True)
    n = fields.Integer(required=True)
    agree = fields.Nested(Group, required=True)
    ml_higher = fields.Nested(Group, required=True)
    ml_lower = fields.Nested(Group, required=True)
    diverged = fields.Nested(Group, required=True)
    examples = fields.List(fields.Nested(Example), required=True)


class RegimeRow(Schema):
    regime = fields.String(required=True)
    count = fields.Integer(required=True)
    with_ml_score = fields.Integer(required=True)
    win_rate = fields.Float(allow_none=True)
    avg_pnl = tf.Money(places=2, allow_none=True)
    avg_r2r = fields.Float(allow_none=True)
    ml_auc = fields.Float(allow_none=True)
    rule_auc = fields.Float(allow_none=True)
    ml_top_10_avg_pnl = tf.Money(places=2, allow_none=True)
    rule_top_10_avg_pnl = tf.Money(places=2, allow_none=True)


class RegimeBreakdown(Schema):
    k = fields.Integer(required=True)
    regimes = fields.List(fields.Nested(RegimeRow), required=True)


class Criterion(Schema):
    key = fields.String(required=True)
    title = fields.String(required=True)
    passed = fields.Boolean(required=True)
    value = fields.Raw(allow_none=True)
    target = fields.Raw(allow_none=True)


class Checklist(Schema):
    ready = fields.Boolean(required=True)
    passed = fields.Integer(required=True)
    total = fields.Integer(required=True)
    criteria = fields.List(fields.Nested(Criterion), required=True)


class ReplaySchema(Schema):
    decision_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    model_id = fields.Integer(allow_none=True)
    model_version = fields.Integer(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    experiment_arm = fields.String(allow_none=True)
    matches = fields.Boolean(required=True)
    logged_ml_score = fields.Float(allow_none=True)
    recomputed_ml_score = fields.Float(allow_none=True)
    logged_final_score = fields.Float(allow_none=True)
    original_score = fields.Float(allow_none=True)
    abs_diff = fields.Float(allow_none=True)
    compared_decimals = fields.Integer(allow_none=True)
    tier_probabilities = fields.List(fields.Float(), allow_none=True)
    model_key = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    features = fields.Dict(allow_none=True)


# -- registry -------------------------------------------------------------------------------
@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ModelQuery, location="query")
    @blp.response(200, ModelList)
    def get(self, args):
        """Registered model versions, newest first (filter by status, regime)."""
        _admin()
        return {"models": modelops.list_models(conn(), **args)}


@blp.route("/models/train")
class Train(MethodView):
    @blp.arguments(TrainIn)
    @blp.response(201, ModelDetail)
    def post(self, data):
        """Train a model on every user's settled ideas (walk-forward, purged, embargoed) and
        register it as `validating`. Runs synchronously: meant for small data; use
        `tradeloop ml train` for real runs. 409 `insufficient_data` when too few ideas."""
        actor = _admin()
        return modelops.train(conn(), params=data["params"], options=data["options"],
                              regime=data.get("regime"), actor_user_id=actor,
                              description=data.get("description"))


@blp.route(f"/models/{MID}")
class OneModel(MethodView):
    @blp.response(200, ModelDetail)
    def get(self, model_id):
        """One model version with its walk-forward metrics."""
        _admin()
        return modelops.get_model(conn(), model_id)


@blp.route(f"/models/{MID}/promote")
class Promote(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ModelSchema)
    def post(self, data, model_id):
        """Make the model champion of its regime scope (the previous one is retired). 409
        `feature_set_mismatch` or `drift_over_threshold` when refused. Emits ModelPromoted."""
        actor = _admin()
        return modelops.promote(conn(), model_id, actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/models/{MID}/retire")
class Retire(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ModelSchema)
    def post(self, data, model_id):
        """Retire a model that is not champion and not in a running experiment."""
        actor = _admin()
        return modelops.retire(conn(), model_id, actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/models/{MID}/audit")
class Audit(MethodView):
    @blp.response(200, AuditList)
    def get(self, model_id):
        """The model's status changes: who, when, why, from/to."""
        _admin()
        modelops.get_model(conn(), model_id, with_metrics=False)
        return {"audit": modelops.model_audit(conn(), model_id)}


@blp.route("/models/rollback")
class Rollback(MethodView):
    @blp.arguments(RollbackIn)
    @blp.response(200, ModelSchema)
    def post(self, data):
        """Retire the champion of the scope and restore the one it replaced. Emits
        ModelRolledBack; 409 when there is nothing to roll back to."""
        actor = _admin()
        return modelops.rollback(conn(), regime=data.get("regime"), actor_user_id=actor,
                                 reason=data.get("reason"))


@blp.route("/settings")
class Settings(MethodView):
    @blp.response(200, SettingsSchema)
    def get(self):
        """Blend weight (0 = shadow), exploration rate, low-data threshold."""
        _admin()
        return modelops.get_settings(conn())

    @blp.arguments(SettingsSchema)
    @blp.response(200, SettingsSchema)
    def put(self, data):
        """Change any of the settings (system-wide; used by the next scoring batch)."""
        actor = _admin()
        return modelops.update_settings(conn(), data, actor_user_id=actor)


# -- drift ----------------------------------------------------------------------------------
@blp.route("/drift")
class Drift(MethodView):
    @blp.arguments(DriftQuery, location="query")
    @blp.response(200, DriftList)
    def get(self, args):
        """Stored drift reports, newest first."""
        _admin()
        return {"reports": modelops.list_drift_reports(conn(), args.get("model_id"))}

    @blp.arguments(DriftIn)
    @blp.response(201, DriftReportSchema)
    def post(self, data):
        """Compare the last `days` of feature snapshots with the model's training reference
        (PSI, KS / Wasserstein, chi-square / Jensen-Shannon; Evidently's defaults) and score
        drift. Stored, emits DriftChecked; drift over threshold blocks promotion."""
        actor = _admin()
        return modelops.check_drift(conn(), model_id=data.get("model_id"), regime=data.get("regime"),
                                    days=data["days"], config=data["config"], actor_user_id=actor)


# -- experiments ----------------------------------------------------------------------------
@blp.route("/experiments")
class Experiments(MethodView):
    @blp.arguments(ExperimentQuery, location="query")
    @blp.response(200, ExperimentList)
    def get(self, args):
        """Experiments, newest first."""
        _admin()
        return {"experiments": modelops.list_experiments(conn(), args.get("status"))}

    @blp.arguments(ExperimentIn)
    @blp.response(201, ExperimentSchema)
    def post(self, data):
        """Start champion (the scope's current one; none = rules) vs challenger: traffic
        split, max duration, min samples per arm, early-stop threshold."""
        actor = _admin()
        return modelops.create_experiment(conn(), data, actor_user_id=actor)


@blp.route("/experiments/check")
class CheckExperiments(MethodView):
    @blp.response(200, CheckList)
    def post(self):
        """Run the stopping rules on every running experiment (the job's work)."""
        actor = _admin()
        return {"checked": modelops.check_experiments(conn(), actor_user_id=actor)}


@blp.route(f"/experiments/{EID}")
class OneExperiment(MethodView):
    @blp.response(200, ExperimentSchema)
    def get(self, experiment_id):
        """The experiment with a live evaluation: SRM check, Welch's t-test on R2R, win
        rate, drawdown and the stopping rules' verdict."""
        _admin()
        return modelops.get_experiment(conn(), experiment_id)


@blp.route(f"/experiments/{EID}/conclude")
class Conclude(MethodView):
    @blp.arguments(ConcludeIn)
    @blp.response(200, ExperimentSchema)
    def post(self, data, experiment_id):
        """Conclude: final evaluation; a winning challenger is promoted (if `promote`)."""
        actor = _admin()
        return modelops.conclude_experiment(conn(), experiment_id, promote_winner=data["promote"],
                                            actor_user_id=actor, reason=data.get("reason"))


@blp.route(f"/experiments/{EID}/abort")
class Abort(MethodView):
    @blp.arguments(ReasonIn)
    @blp.response(200, ExperimentSchema)
    def post(self, data, experiment_id):
        """Abort an experiment; the challenger goes back to validating."""
        actor = _admin()
        return modelops.abort_experiment(conn(), experiment_id, actor_user_id=actor,
                                         reason=data.get("reason"))


# -- evaluation (mid-week plan) -------------------------------------------------------------
@blp.route("/evaluation/score-outcomes")
class ScoreOutcomesView(MethodView):
    @blp.arguments(ScoreOutcomesQuery, location="query")
    @blp.response(200, ScoreOutcomes)
    def get(self, args):
        """Settled decisions by score bucket (0-20 ... 80-100): count, average P&L, win
        rate and the difference to the baseline."""
        _admin()
        frame = modelops.decision_frame(conn(), since=args.get("since"), until=args.get("until"))
        return modelops.score_outcomes(frame, args["score"])


@blp.route("/evaluation/ml-vs-rules")
class MlVsRulesView(MethodView):
    @blp.arguments(MlVsRulesQuery, location="query")
    @blp.response(200, MlVsRules)
    def get(self, args):
        """Where ML agreed with the rules and where it diverged by more than `threshold`
        points, and whether it was right."""
        _admin()
        frame = modelops.decision_frame(conn(), since=args.get("since"), until=args.get("until"))
        return modelops.ml_vs_rules(frame, args["threshold"])


@blp.route("/evaluation/regime-breakdown")
class RegimeBreakdownView(MethodView):
    @blp.arguments(EvalQuery, location="query")
    @blp.response(200, RegimeBreakdown)
    def get(self, args):
        """Per VIX regime: outcomes and how well the ML and rule scores rank them."""
        _admin()
        frame = modelops.decision_frame(conn(), since=args.get("since"), until=args.get("until"))
        return modelops.regime_breakdown(frame)


@blp.route("/evaluation/go-live-checklist")
class ChecklistView(MethodView):
    @blp.response(200, Checklist)
    def get(self):
        """The mid-week plan's six success criteria, computed from the data."""
        _admin()
        return modelops.go_live_checklist(conn())


# -- replay ---------------------------------------------------------------------------------
@blp.route("/decisions/<string(length=36):decision_id>/replay")
class Replay(MethodView):
    @blp.response(200, ReplaySchema)
    def get(self, decision_id):
        """Re-score a logged decision from its stored features with its model version's
        blob; `matches` says whether the logged ML score is reproduced exactly."""
        _admin()
        return modelops.replay_decision(conn(), decision_id)
