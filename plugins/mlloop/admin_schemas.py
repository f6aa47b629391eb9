"""Marshmallow schemas of the admin API (/api/admin/ml): the registry, training, settings,
drift, experiments, evaluation and replay."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from plugins.mlloop.domain.features import VIX_REGIMES
from plugins.mlloop.ml.gates import GATE_NAMES
from plugins.mlloop.tables import EXPERIMENT_STATUSES, STATUSES

REGIME = fields.String(allow_none=True, validate=validate.OneOf(VIX_REGIMES),
                       metadata={"description": "VIX regime scope; absent/null = global"})


class ModelQuery(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    regime = fields.String(validate=validate.OneOf(VIX_REGIMES))


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


class Gate(Schema):
    name = fields.String(required=True, metadata={"description": " | ".join(GATE_NAMES)})
    passed = fields.Boolean(required=True)
    value = fields.Raw(allow_none=True)
    threshold = fields.Raw(allow_none=True)
    message = fields.String(required=True)


class Gates(Schema):
    passed = fields.Boolean(required=True, metadata={"description": "every gate passed: the model may be promoted"})
    gates = fields.List(fields.Nested(Gate), required=True)
    config = fields.Dict(required=True, metadata={"description": "the gate settings applied"})
    figures = fields.Dict(required=True, metadata={
        "description": "held-out Brier skill (multi-class and per tier) vs the base rate, its bootstrap bounds, "
                       "AUCs, the shuffled-label control's skill and AUC, the seed's Brier < 0.25 line"})


class ModelDetail(ModelSchema):
    metrics = fields.Dict(required=True, metadata={
        "description": "walk-forward windows, aggregate, pooled, held_out (deployed forecast vs base rate), "
                       "control, calibration, regimes, day-level guard, importance"})
    gates = fields.Nested(Gates, required=True, metadata={"description": "the promotion gates, with the current settings"})


class TrainParams(Schema):
    iterations = fields.Integer(validate=validate.Range(1, 2000))
    depth = fields.Integer(validate=validate.Range(1, 10))
    learning_rate = fields.Float(validate=validate.Range(0.001, 1.0))
    l2_leaf_reg = fields.Float(validate=validate.Range(0.0, 100.0))
    border_count = fields.Integer(validate=validate.Range(2, 255))
    random_seed = fields.Integer(validate=validate.Range(0, 2**31 - 1))


class TrainOptions(Schema):
    window = fields.String(validate=validate.OneOf(("expanding", "sliding")), metadata={
        "description": "expanding (default): every window trains on all earlier days; sliding: train_days"})
    train_days = fields.Integer(validate=validate.Range(1, 250), metadata={
        "description": "training days per window (expanding: the first window's)"})
    val_days = fields.Integer(validate=validate.Range(1, 60))
    step_days = fields.Integer(validate=validate.Range(1, 60))
    embargo_days = fields.Float(validate=validate.Range(0, 30))
    min_train_samples = fields.Integer(validate=validate.Range(1, 10_000_000))
    max_windows = fields.Integer(allow_none=True, validate=validate.Range(1, 500))
    min_regime_samples = fields.Integer(validate=validate.Range(1, 10_000_000))
    regime_min_days = fields.Integer(validate=validate.Range(1, 10_000))
    regime_min_val_rows = fields.Integer(validate=validate.Range(0, 10_000_000))
    regime_min_improvement = fields.Float(validate=validate.Range(0.0, 1.0))
    day_feature_min_days = fields.Integer(validate=validate.Range(0, 100_000), metadata={
        "description": "while training spans fewer days, features that only identify the day are left out (0: off)"})
    control = fields.Boolean(metadata={"description": "run the shuffled-label control with the training (default true)"})
    calibration = fields.String(validate=validate.OneOf(("auto", "none", "isotonic", "platt", "temperature")))


class TrainIn(Schema):
    regime = REGIME
    feature_set_version = fields.String(allow_none=True, validate=validate.Length(min=1, max=20), metadata={
        "description": "train on the ideas scored under this declared feature set, with its extra features "
                       "(default: the built-in set)"})
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


class SettingsSchema(Schema):
    ml_weight = fields.Float(validate=validate.Range(0.0, 1.0),
                             metadata={"description": "blend weight; 0 = shadow (scored, ranking unchanged)"})
    exploration_rate = fields.Float(validate=validate.Range(0.0, 1.0))
    low_data_threshold = fields.Float(validate=validate.Range(0.0, 1e9),
                                      metadata={"description": "settled ideas below which a regime is always explored"})
    gate_min_windows = fields.Float(validate=validate.Range(0, 1000), metadata={
        "description": "promotion gate: walk-forward windows a model needs (held-out evidence)"})
    gate_min_samples = fields.Float(validate=validate.Range(0, 1e9), metadata={
        "description": "promotion gate: held-out ideas a model needs"})
    gate_min_skill = fields.Float(validate=validate.Range(-10.0, 1.0), metadata={
        "description": "promotion gate: the Brier skill score's bootstrap lower bound must exceed this"})
    gate_min_skill_over_control = fields.Float(validate=validate.Range(-10.0, 1.0), metadata={
        "description": "promotion gate: ... and exceed the shuffled-label control's skill by this"})


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
    """Evaluation filters (an unknown query parameter is 422 naming it: app.web.install_query_check)."""
    since = tf.UtcDateTime(metadata={"description": "start of the window (inclusive)"})
    until = tf.UtcDateTime(metadata={"description": "end of the window (exclusive); must be after `since` (422)"})
    user_id = fields.Integer(validate=validate.Range(1, 2**31 - 1),
                             metadata={"description": "one user's decisions (default: everyone's)"})
    model_id = fields.Integer(validate=validate.Range(1, 2**31 - 1),
                              metadata={"description": "the decisions one model scored (default: any)"})

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


class TierSkill(Schema):
    brier = fields.Float(allow_none=True)
    brier_base = fields.Float(allow_none=True)
    bss = fields.Float(allow_none=True)


class LiveSkill(Schema):
    n = fields.Integer(required=True, metadata={"description": "settled decisions with a logged tier forecast and a model base rate"})
    brier = fields.Float(allow_none=True, metadata={"description": "multi-class Brier of the logged calibrated tier forecasts"})
    brier_base = fields.Float(allow_none=True, metadata={"description": "the same for each decision's model's training base rate"})
    bss = fields.Float(allow_none=True, metadata={"description": "Brier skill score: 1 - brier / brier_base"})
    tiers = fields.Dict(keys=fields.String(), values=fields.Nested(TierSkill), required=True)


class Live(Schema):
    n = fields.Integer(required=True, metadata={"description": "settled decisions in scope"})
    with_ml_score = fields.Integer(required=True)
    win_rate = fields.Float(allow_none=True)
    auc_ml_score = fields.Float(allow_none=True, metadata={"description": "pooled AUC of the logged ML score for `profitable`"})
    auc_p_profitable = fields.Float(allow_none=True, metadata={"description": "pooled AUC of the logged P(profitable)"})
    auc_rule = fields.Float(allow_none=True, metadata={"description": "pooled AUC of original_score (the rules) on the same decisions"})
    skill = fields.Nested(LiveSkill, required=True)
    models = fields.List(fields.Integer(), required=True, metadata={"description": "the models that scored them"})


class TierProbabilitiesIn(Schema):
    decision_ids = fields.List(fields.String(validate=validate.Length(equal=36)), required=True,
                               validate=validate.Length(min=1, max=1000))


class TierProbabilities(Schema):
    decision_id = fields.String(required=True)
    model_id = fields.Integer(allow_none=True)
    tier_probabilities = fields.List(fields.Float(), allow_none=True, metadata={"description": "recomputed from the stored features with the model's blob"})
    p_profitable = fields.Float(allow_none=True)
    ml_score = fields.Float(allow_none=True)
    logged_ml_score = fields.Float(allow_none=True)
    logged_tier_probabilities = fields.List(fields.Float(), allow_none=True)
    matches = fields.Boolean(required=True, metadata={"description": "the recomputed ML score (2 places) equals the logged one"})
    reason = fields.String(allow_none=True)


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
