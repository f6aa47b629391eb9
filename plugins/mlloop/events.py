"""The payload schemas of every event mlloop publishes, by topic (served in /asyncapi.json)."""
from __future__ import annotations

from marshmallow import Schema, fields

from app import fields as tf
from bus.topic import Topic

# -- event payloads (topics) -------------------------------------------------------------------
class DecisionRecorded(Schema):
    """An immutable scoring decision: scores, versions, model, arm and the idea. Its features
    travel once, by reference: ``feature_snapshot_id`` names the ``FeatureSnapshotTaken`` on
    ``mlloop.features`` (schema_version 2; version 1 also embedded them as ``features`` and
    ``extra_features``, which readers ignore)."""
    decision_id = fields.String()
    decision_key = fields.String()
    idea_id = fields.String()
    tracked_idea_id = fields.String()
    context_id = fields.String()
    decision_time = tf.UtcDateTime()
    selector_params_version = fields.Integer()
    feature_snapshot_id = fields.String(metadata={"description": "the FeatureSnapshotTaken carrying the features"})
    original_score = tf.Money(places=2)
    rule_source = fields.String(metadata={"description": "selector | user"})
    ml_score = tf.Money(places=2, allow_none=True)
    p_profitable = fields.Float(allow_none=True)
    tier_probabilities = fields.List(fields.Float(), allow_none=True)
    feature_set_version = fields.String()
    final_score = tf.Money(places=2)
    rule_components = fields.Dict()
    ml_weight = fields.Float()
    scoring_mode = fields.String()
    model_id = fields.Integer(allow_none=True)
    model_version = fields.Integer(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    experiment_arm = fields.String(allow_none=True)
    exploration = fields.Boolean()
    idea = fields.Dict()
    rank = fields.Integer(metadata={"description": "0 here; the 1-based rank is the response's"})
    features = fields.Dict(metadata={"description": "schema_version 1 only (now by feature_snapshot_id)"})
    extra_features = fields.Dict(allow_none=True, metadata={"description": "schema_version 1 only"})


class FeatureSnapshotTaken(Schema):
    """The features a decision used (every ml_feature_snapshots column, with versions)."""
    feature_snapshot_id = fields.String()
    decision_id = fields.String()
    tracked_idea_id = fields.String()
    idea_id = fields.String()
    snapshot_time = tf.UtcDateTime()
    feature_set_version = fields.String()
    feature_extractor_version = fields.String()
    gex_calc_version = fields.String()
    vix_regime_classifier_version = fields.String()
    extra_features = fields.Dict(allow_none=True, metadata={"description": "a declared feature set's extra values"})


class DeepScoreRecorded(Schema):
    """A decision's deep score (the ``mlloop.deep_score`` job): its own model's full batch path
    over the decision's stored features; immutable, one per decision (``ml_deep_scores``)."""
    deep_score_id = fields.String(required=True)
    decision_id = fields.String(required=True, metadata={"description": "the DecisionRecorded it belongs to"})
    idea_id = fields.String(required=True)
    feature_snapshot_id = fields.String(required=True)
    model_id = fields.Integer(required=True)
    model_version = fields.Integer(required=True)
    model_key = fields.String(required=True, metadata={"description": "__global__ or the regime's sub-model"})
    ml_score = tf.Money(places=2, required=True, metadata={"description": "0..100, from the calibrated tier forecast"})
    tier_probabilities = fields.List(fields.Float(), required=True,
                                     metadata={"description": "calibrated [p0, p1, p2, p3]"})
    confidence = fields.Float(required=True, metadata={"description": "1 - H(p)/ln 4"})
    p_profitable = fields.Float(required=True, metadata={"description": "from the model's Logloss sub-models"})
    job_id = fields.String(allow_none=True)
    scored_at = tf.UtcDateTime(required=True)


class PnlRecorded(Schema):
    """One pnl_events row (the agreed contract)."""
    idea_id = fields.String()
    trade_id = fields.String(allow_none=True)
    event_type = fields.String()
    pnl_delta = tf.Money(places=2)
    fees = tf.Money(places=2)
    slippage = tf.Money(places=2)
    underlying_price = tf.Money(places=2)
    event_time = tf.UtcDateTime()


# -- mlloop.models (the registry, drift, experiments) ---------------------------------------
class ModelTrained(Schema):
    """A model version was trained and registered (status validating)."""
    model_id = fields.Integer(required=True)
    model_name = fields.String(required=True)
    model_version = fields.Integer(required=True)
    content_id = fields.String(required=True)
    regime = fields.String(allow_none=True)
    feature_set_version = fields.String(required=True)
    dataset_hash = fields.String(required=True)
    parent_model_id = fields.Integer(allow_none=True)
    metrics = fields.Dict(metadata={"description": "aggregate walk-forward metrics"})


class ModelPromoted(Schema):
    """A model became champion of its regime scope (the previous one retired)."""
    model_id = fields.Integer(required=True)
    regime = fields.String(allow_none=True)
    replaced_model_id = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    to_status = fields.String()


class ModelRolledBack(Schema):
    """The champion was retired and the previous champion of its scope restored."""
    model_id = fields.Integer(required=True, metadata={"description": "the restored champion"})
    regime = fields.String(allow_none=True)
    replaced_model_id = fields.Integer(allow_none=True, metadata={"description": "the retired one"})
    reason = fields.String(allow_none=True)


class DriftChecked(Schema):
    """A drift report was computed for a model."""
    report_id = fields.Integer(required=True)
    model_id = fields.Integer(required=True)
    drift_detected = fields.Boolean(required=True)
    share_drifted = fields.Float()
    score_psi = fields.Float(allow_none=True)
    drifted_features = fields.List(fields.String())


class ExperimentConcluded(Schema):
    """An experiment stopped (duration, significance, SRM) or was concluded by an admin."""
    experiment_id = fields.Integer(required=True)
    winner = fields.String(allow_none=True)
    stop_reason = fields.String(allow_none=True)
    p_value = fields.Float(allow_none=True)
    promoted_model_id = fields.Integer(allow_none=True)


MODEL_EVENTS = {"ModelTrained": ModelTrained, "ModelPromoted": ModelPromoted,
                "ModelRolledBack": ModelRolledBack, "DriftChecked": DriftChecked,
                "ExperimentConcluded": ExperimentConcluded}


# -- the topics (plugin.py returns them; the services emit through them) --------------------
DECISIONS = Topic("mlloop.decisions", "Immutable scoring decisions (scores, versions, model, arm, features), "
                  "one per idea, and each decision's deep score when the deep path has run.",
                  {"DecisionRecorded": DecisionRecorded, "DeepScoreRecorded": DeepScoreRecorded})
FEATURES = Topic("mlloop.features", "The feature snapshot of every decision, with its versions.",
                 {"FeatureSnapshotTaken": FeatureSnapshotTaken})
PNL = Topic("mlloop.pnl", "The P&L ledger: marks, fills, adjustments and settlements of tracked ideas.",
            {"PnlRecorded": PnlRecorded})
MODELS = Topic("mlloop.models", "Model registry, drift and experiment events (system-wide, admin).", MODEL_EVENTS)
TOPICS = [DECISIONS, FEATURES, PNL, MODELS]
