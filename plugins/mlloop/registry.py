"""The model registry's and experiments' tables (mlloop part 2), and the ``mlloop.models`` topic.

Owns: ``ml_models`` (versions with blob, feature list, hyperparameters, feature_set_version,
training data range, metrics, lineage, status, regime scope, drift reference),
``ml_model_audit`` (every status change: who, when, why, from/to), ``ml_experiments``
(champion vs challenger with stopping rules and conclusion), ``ml_drift_reports`` and
``ml_settings`` (blend weight, exploration rate). On its own ``metadata``; created by the
``mlloop_0002`` migration. Models are system-wide (admin operations), not per user.
"""
from __future__ import annotations

import sqlalchemy as sa
from marshmallow import Schema, fields

from app.db import JSONType, UtcDateTime
from app.hookspecs import Topic

metadata = sa.MetaData()

TOPIC_NAME = "mlloop.models"

# Registry statuses (the seed's ENUM) and experiment states.
STATUSES = ("training", "validating", "champion", "challenger", "retired")
EXPERIMENT_STATUSES = ("running", "concluded", "aborted")

_BLOB = sa.LargeBinary().with_variant(sa.dialects.mysql.LONGBLOB(), "mysql", "mariadb")
_LONGTEXT = sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")
_INT_PK = sa.Integer

ml_models = sa.Table(
    "ml_models", metadata,
    sa.Column("id", _INT_PK, primary_key=True, autoincrement=True),
    # the seed's columns
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("model_type", sa.String(50), nullable=False),
    sa.Column("model_blob", _BLOB, nullable=False),
    sa.Column("feature_list", JSONType, nullable=False),
    sa.Column("hyperparameters", JSONType, nullable=False),
    sa.Column("train_auc", sa.Numeric(6, 4), nullable=True),
    sa.Column("val_auc", sa.Numeric(6, 4), nullable=True),
    sa.Column("train_samples", sa.Integer, nullable=True),
    sa.Column("val_samples", sa.Integer, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("deployed_at", UtcDateTime, nullable=True),
    sa.Column("retired_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # ours
    sa.Column("content_id", sa.String(16), nullable=False),  # TrainedModel.model_id (content hash)
    sa.Column("cat_features", JSONType, nullable=False),
    sa.Column("feature_set_version", sa.String(20), nullable=False),
    sa.Column("regime", sa.String(40), nullable=True),  # None: the global scope
    sa.Column("data_start", UtcDateTime, nullable=True),  # min decision_time
    sa.Column("data_end", UtcDateTime, nullable=True),  # max decision_time
    sa.Column("label_end", UtcDateTime, nullable=True),  # max label_time
    sa.Column("metrics", JSONType, nullable=False),
    sa.Column("parent_model_id", sa.Integer, nullable=True),
    sa.Column("dataset_hash", sa.String(64), nullable=False),
    sa.Column("reference", _LONGTEXT, nullable=True),  # JSON: the drift reference sample
    sa.Column("created_by", sa.Integer, nullable=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.UniqueConstraint("model_name", "model_version", name="uk_ml_models_name_version"),
    sa.Index("ix_ml_models_status_regime", "status", "regime"),
)

ml_model_audit = sa.Table(
    "ml_model_audit", metadata,
    sa.Column("id", _INT_PK, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, nullable=False, index=True),
    sa.Column("action", sa.String(30), nullable=False),  # registered, promoted, rolled_back, ...
    sa.Column("from_status", sa.String(20), nullable=True),
    sa.Column("to_status", sa.String(20), nullable=False),
    sa.Column("regime", sa.String(40), nullable=True),
    sa.Column("replaced_model_id", sa.Integer, nullable=True),  # the champion it displaced
    sa.Column("actor_user_id", sa.Integer, nullable=True),  # None: a job
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

ml_experiments = sa.Table(
    "ml_experiments", metadata,
    sa.Column("id", _INT_PK, primary_key=True, autoincrement=True),
    sa.Column("experiment_name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("champion_model_id", sa.Integer, nullable=True),  # None: rules only
    sa.Column("challenger_model_id", sa.Integer, nullable=False),
    sa.Column("traffic_split", sa.Numeric(4, 2), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime, nullable=True),
    sa.Column("champion_samples", sa.Integer, nullable=False, default=0),
    sa.Column("challenger_samples", sa.Integer, nullable=False, default=0),
    sa.Column("champion_win_rate", sa.Numeric(6, 4), nullable=True),
    sa.Column("challenger_win_rate", sa.Numeric(6, 4), nullable=True),
    sa.Column("p_value", sa.Numeric(8, 6), nullable=True),
    sa.Column("winner", sa.String(20), nullable=True),  # champion, challenger, no_difference
    # ours
    sa.Column("regime", sa.String(40), nullable=True),  # scope: None = every regime
    sa.Column("champion_ml_weight", sa.Float, nullable=True),
    sa.Column("challenger_ml_weight", sa.Float, nullable=True),
    sa.Column("max_duration_days", sa.Integer, nullable=False),
    sa.Column("min_samples_per_arm", sa.Integer, nullable=False),
    sa.Column("early_stop_threshold", sa.Float, nullable=False),
    sa.Column("stop_reason", sa.String(40), nullable=True),
    sa.Column("last_check", JSONType, nullable=True),
    sa.Column("conclusion", JSONType, nullable=True),
    sa.Column("created_by", sa.Integer, nullable=True),
    sa.Index("ix_ml_experiments_status", "status"),
)

ml_drift_reports = sa.Table(
    "ml_drift_reports", metadata,
    sa.Column("id", _INT_PK, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=True),
    sa.Column("window_end", UtcDateTime, nullable=True),
    sa.Column("n_reference", sa.Integer, nullable=False),
    sa.Column("n_current", sa.Integer, nullable=False),
    sa.Column("drift_detected", sa.Boolean, nullable=False),
    sa.Column("share_drifted", sa.Float, nullable=False),
    sa.Column("score_psi", sa.Float, nullable=True),
    sa.Column("report", JSONType, nullable=False),
    sa.Column("actor_user_id", sa.Integer, nullable=True),
    sa.Index("ix_ml_drift_reports_model", "model_id", "id"),
)

# One row per setting name: the blend weight and the exploration rate (system-wide).
ml_settings = sa.Table(
    "ml_settings", metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", sa.Integer, nullable=True),
)

SETTINGS_DEFAULTS = {
    "ml_weight": 0.0,  # 0 = shadow: scored and logged, ranking unchanged
    "exploration_rate": 0.1,  # the seed's ExplorationManager default
    "low_data_threshold": 50.0,  # the seed's: fewer similar settled ideas -> always explore
}


# -- event payloads on mlloop.models -------------------------------------------------------
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


EVENTS = {"ModelTrained": ModelTrained, "ModelPromoted": ModelPromoted,
          "ModelRolledBack": ModelRolledBack, "DriftChecked": DriftChecked,
          "ExperimentConcluded": ExperimentConcluded}

TOPIC = Topic(TOPIC_NAME, "Model registry, drift and experiment events (system-wide, admin).",
              EVENTS, key="aggregate_id")
