"""The ML loop's data foundation (mlloop part 1): the seed's section 1 tables plus the two it
only references (``tracked_ideas``, ``selector_params``) and the market inputs.

Immutable (append-only; ``immutable.py`` refuses UPDATE/DELETE on them): ``ml_decisions``,
``ml_feature_snapshots``, ``pnl_events``, ``tracked_idea_snapshots``, ``user_trade_actions``,
``ml_market_snapshots``, ``ml_deep_scores``. Mutable: ``tracked_ideas`` (running P&L path and settlement),
``ml_labels`` (cohort labels firm up as the cohort settles), ``daily_performance``
(materialised), ``selector_params`` (only the ``active`` flag moves), ``ml_market_contexts``.

No foreign keys between them on purpose: decisions and feature snapshots arrive on separate
topics and are written by consumers in any order; ids are decided in the scoring request
(``tracked_ideas.id``, ``ml_decisions.id``, ``ml_feature_snapshots.id``), so every reference
is known before any row exists. Every table carries ``user_id``; every query is scoped by it.

The model registry's tables (on ``registry_metadata``, migration ``mlloop_0002``) are
system-wide (admin operations), not per user: ``ml_models`` (versions with blob, feature
list, hyperparameters, feature_set_version, data range, metrics, lineage, status, regime
scope, drift reference), ``ml_model_audit`` (every status change: who, when, why, from/to),
``ml_experiments``, ``ml_drift_reports`` and ``ml_settings``.
"""
from __future__ import annotations

import sqlalchemy as sa

from app.db import JSONType, Money, UtcDateTime

metadata = sa.MetaData()            # part 1: migration mlloop_0001
registry_metadata = sa.MetaData()   # the model registry: migration mlloop_0002
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER only


def _dec(p: int, s: int):
    return sa.Numeric(p, s, asdecimal=True)


# -- market inputs ------------------------------------------------------------------------
ml_market_snapshots = sa.Table(
    "ml_market_snapshots", metadata,
    sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("time", UtcDateTime, nullable=False),
    # market observations (levels as published), doubles: features are ratios of them
    sa.Column("spot", sa.Float(53), nullable=False),
    sa.Column("vix", sa.Float(53), nullable=False),
    sa.Column("vix3m", sa.Float(53), nullable=False),
    # what a user's own stream may not have: missing = unknown (features and the rule score
    # treat it as missing; migration mlloop_0003 made these nullable)
    sa.Column("gex_total", sa.Float(53), nullable=True),
    sa.Column("gex_call_wall", sa.Float(53), nullable=True),
    sa.Column("gex_put_wall", sa.Float(53), nullable=True),
    sa.Column("gex_gamma_flip", sa.Float(53), nullable=True),
    sa.Column("market_mode", sa.String(20), nullable=True),
    sa.Column("bias_lfi", sa.Float(53), nullable=True),
    sa.Column("es_futures_premium", sa.Float(53)),
    sa.Column("tnx_level", sa.Float(53)),
    sa.Column("dxy_level", sa.Float(53)),
    sa.UniqueConstraint("user_id", "symbol", "time", name="uq_ml_market_snapshots_time"),
)

ml_market_contexts = sa.Table(
    "ml_market_contexts", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("context_id", sa.String(100), primary_key=True),
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("as_of", UtcDateTime, nullable=False),
    sa.Column("features", JSONType, nullable=False),      # market features as of as_of (point-in-time)
    sa.Column("snapshot_count", sa.Integer, nullable=False),  # snapshots at or before as_of used
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# -- scoring weights ----------------------------------------------------------------------
selector_params = sa.Table(
    "selector_params", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("weights", JSONType, nullable=False),       # convexity, r2r, width_fit, gamma_alignment
    sa.Column("constants", JSONType, nullable=False),     # r2r_scale, convexity_scale, ...
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("note", sa.String(200)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("user_id", "version", name="uq_selector_params_version"),
)

# -- ideas --------------------------------------------------------------------------------
tracked_ideas = sa.Table(
    "tracked_ideas", metadata,
    sa.Column("id", sa.String(36), primary_key=True),     # uuid5(user, idea_id): decided when scored
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("idea_id", sa.String(64), nullable=False),  # the client's id
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("decision_id", sa.String(36), nullable=False),  # the first decision that scored it
    sa.Column("context_id", sa.String(100), nullable=False),
    sa.Column("decision_time", UtcDateTime, nullable=False),
    # geometry (per share; see scoring.TradeIdea)
    sa.Column("strategy", sa.String(20), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("direction", sa.String(5), nullable=False),
    sa.Column("strike", Money(12, 2), nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("dte", sa.Integer, nullable=False),
    sa.Column("expiration", sa.Date, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("entry_debit", Money(12, 2), nullable=False),   # signed: + paid, - received
    sa.Column("risk_unit", Money(14, 2), nullable=False),     # real max loss, dollars
    # entry context
    sa.Column("entry_spot", Money(12, 2), nullable=False),
    sa.Column("rule_score", _dec(6, 2), nullable=False),
    sa.Column("selector_params_version", sa.Integer, nullable=False),
    sa.Column("regime", sa.String(20)),                      # vix_regime at decision time
    # trading
    sa.Column("trade_id", sa.String(36)),
    # running path (from pnl_events, net of fees)
    sa.Column("cumulative_pnl", Money(14, 2), nullable=False, server_default="0"),
    sa.Column("max_pnl", Money(14, 2), nullable=False, server_default="0"),
    sa.Column("min_pnl", Money(14, 2), nullable=False, server_default="0"),
    sa.Column("time_to_max_pnl", sa.Integer, nullable=False, server_default="0"),     # trading minutes entry -> first max
    sa.Column("time_in_drawdown", sa.Integer, nullable=False, server_default="0"),    # trading minutes with P&L < 0
    sa.Column("event_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_event_time", UtcDateTime),
    sa.Column("last_tier", sa.SmallInteger, nullable=False, server_default="1"),      # trigger state
    sa.Column("stop_touched", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("target_touched", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_snapshot_time", UtcDateTime),
    sa.Column("last_snapshot_underlying", Money(12, 2)),
    sa.Column("total_fees", Money(12, 2), nullable=False, server_default="0"),
    sa.Column("total_slippage", Money(12, 2), nullable=False, server_default="0"),
    sa.Column("total_adjustments", Money(14, 2), nullable=False, server_default="0"),
    # settlement
    sa.Column("settlement_status", sa.String(10), nullable=False, server_default="open"),  # open | settled
    sa.Column("settlement_pnl", Money(14, 2)),
    sa.Column("settlement_price", Money(12, 2)),
    sa.Column("settled_at", UtcDateTime),
    sa.Column("lifetime_minutes", sa.Integer),                     # trading minutes entry -> settlement
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("user_id", "idea_id", name="uq_tracked_ideas_user_idea"),
    sa.Index("ix_tracked_ideas_user_status", "user_id", "settlement_status", "settled_at"),
    sa.Index("ix_tracked_ideas_user_context", "user_id", "context_id"), sa.Index("ix_tracked_ideas_user_time", "user_id", "decision_time"),
    sa.Index("ix_tracked_ideas_status_regime", "settlement_status", "regime"),  # low-data regimes (mlloop_0005)
)

# -- decisions and features (immutable, written by consumers) ----------------------------
ml_decisions = sa.Table(
    "ml_decisions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("decision_key", sa.String(64), nullable=False, unique=True),  # sha256(user, idea, context, params v)
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("idea_id", sa.String(64), nullable=False),
    sa.Column("tracked_idea_id", sa.String(36), nullable=False),
    sa.Column("context_id", sa.String(100), nullable=False),
    sa.Column("decision_time", UtcDateTime, nullable=False),
    sa.Column("model_id", sa.Integer),
    sa.Column("model_version", sa.Integer),
    sa.Column("selector_params_version", sa.Integer, nullable=False),
    sa.Column("feature_snapshot_id", sa.String(36), nullable=False),
    sa.Column("original_score", _dec(6, 2), nullable=False),
    sa.Column("rule_components", JSONType, nullable=False),
    sa.Column("ml_score", _dec(6, 2)),
    sa.Column("final_score", _dec(6, 2), nullable=False),
    sa.Column("ml_weight", sa.Float, nullable=False),           # the weight actually applied
    sa.Column("scoring_mode", sa.String(20), nullable=False),   # normal | rules_only
    sa.Column("experiment_id", sa.Integer),
    sa.Column("experiment_arm", sa.String(20)),                 # champion | challenger
    sa.Column("exploration", sa.Boolean, nullable=False),
    # mlloop_0003: the calibrated tier forecast behind ml_score, P(profitable) = p2 + p3, and
    # where original_score came from ('selector' | 'user'; NULL on older rows = 'selector')
    sa.Column("tier_probabilities", JSONType, nullable=True),
    sa.Column("p_profitable", sa.Float, nullable=True),
    sa.Column("rule_source", sa.String(10), nullable=True),
    sa.Column("action_taken", sa.String(20), nullable=False),   # 'ranked' (later actions: user_trade_actions)
    sa.Column("rank", sa.Integer, nullable=False),              # 1-based within its request
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_ml_decisions_user_time", "user_id", "decision_time"),
    sa.Index("ix_ml_decisions_user_idea", "user_id", "idea_id"),
    sa.Index("ix_ml_decisions_model", "model_id", "model_version"),
    sa.Index("ix_ml_decisions_experiment", "experiment_id", "experiment_arm"),
)

ml_feature_snapshots = sa.Table(
    "ml_feature_snapshots", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("tracked_idea_id", sa.String(36), nullable=False),
    sa.Column("decision_id", sa.String(36), nullable=False, unique=True),
    sa.Column("snapshot_time", UtcDateTime, nullable=False),
    sa.Column("feature_set_version", sa.String(20), nullable=False),
    sa.Column("feature_extractor_version", sa.String(20), nullable=False),
    sa.Column("gex_calc_version", sa.String(20)),
    sa.Column("vix_regime_classifier_version", sa.String(20)),
    # price action
    sa.Column("spot_price", _dec(10, 2), nullable=False),
    sa.Column("spot_5m_return", _dec(8, 6)),
    sa.Column("spot_15m_return", _dec(8, 6)),
    sa.Column("spot_1h_return", _dec(8, 6)),
    sa.Column("spot_1d_return", _dec(8, 6)),
    sa.Column("intraday_high", _dec(10, 2)),
    sa.Column("intraday_low", _dec(10, 2)),
    sa.Column("range_position", _dec(6, 4)),
    # volatility
    sa.Column("vix_level", _dec(6, 2)),
    sa.Column("vix_regime", sa.String(20)),
    sa.Column("vix_term_slope", _dec(8, 4)),
    sa.Column("iv_rank_30d", _dec(6, 4)),
    sa.Column("iv_percentile_30d", _dec(6, 4)),
    # GEX structure
    sa.Column("gex_total", _dec(15, 2)),
    sa.Column("gex_call_wall", _dec(10, 2)),
    sa.Column("gex_put_wall", _dec(10, 2)),
    sa.Column("gex_gamma_flip", _dec(10, 2)),
    sa.Column("spot_vs_call_wall", _dec(8, 4)),
    sa.Column("spot_vs_put_wall", _dec(8, 4)),
    sa.Column("spot_vs_gamma_flip", _dec(8, 4)),
    # market mode
    sa.Column("market_mode", sa.String(20)),
    sa.Column("bias_lfi", _dec(6, 4)),
    sa.Column("bias_direction", sa.String(10)),
    # time
    sa.Column("minutes_since_open", sa.Integer),
    sa.Column("day_of_week", sa.SmallInteger),
    sa.Column("is_opex_week", sa.Boolean),
    sa.Column("days_to_monthly_opex", sa.Integer),
    # cross-asset
    sa.Column("es_futures_premium", _dec(6, 4)),
    sa.Column("tnx_level", _dec(6, 3)),
    sa.Column("dxy_level", _dec(6, 2)),
    # strategy group (+ direction): the seed's group has no columns in its table
    sa.Column("strategy_type", sa.String(20), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("direction", sa.String(5), nullable=False),
    sa.Column("dte", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("strike_vs_spot", _dec(10, 6)),
    sa.Column("original_score", _dec(6, 2)),
    # mlloop_0003: a declared feature set's extra values {name: number | str | null}
    sa.Column("extra_features", JSONType, nullable=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_ml_feature_snapshots_idea_time", "tracked_idea_id", "snapshot_time"),
    sa.Index("ix_ml_feature_snapshots_version", "feature_set_version"),
    sa.Index("ix_ml_feature_snapshots_user_time", "user_id", "snapshot_time"),
)

# Feature sets a user's stream declares (mlloop_0003): the built-in features plus extra
# numeric / categorical ones, under a version the model registry keys models by. A version
# is one definition for everyone (models are system-wide); its declarer owns it.
ml_feature_sets = sa.Table(
    "ml_feature_sets", metadata,
    sa.Column("version", sa.String(20), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("numeric", JSONType, nullable=False),       # extra numeric feature names
    sa.Column("categorical", JSONType, nullable=False),   # extra categorical feature names
    sa.Column("description", sa.String(500)),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# -- the P&L ledger (append-only) ---------------------------------------------------------
pnl_events = sa.Table(
    "pnl_events", metadata,
    sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("idea_id", sa.String(64), nullable=False),
    sa.Column("tracked_idea_id", sa.String(36), nullable=False),
    sa.Column("trade_id", sa.String(36)),
    sa.Column("strategy_id", sa.String(36)),
    sa.Column("event_time", UtcDateTime, nullable=False),
    sa.Column("session_date", sa.Date, nullable=False),         # New York session of event_time
    sa.Column("event_type", sa.String(12), nullable=False),     # mark | fill | settlement | adjustment
    sa.Column("pnl_delta", Money(14, 2), nullable=False),       # not cumulative; net of fees/slippage
    sa.Column("fees", Money(10, 2), nullable=False),
    sa.Column("slippage", Money(10, 2), nullable=False),
    sa.Column("underlying_price", Money(12, 2), nullable=False),
    sa.Column("cumulative_pnl", Money(14, 2), nullable=False, server_default="0"),  # the idea's net P&L after this event
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_pnl_events_idea_time", "tracked_idea_id", "event_time"),
    sa.Index("ix_pnl_events_user_day", "user_id", "session_date", "trade_id"),
    sa.Index("ix_pnl_events_trade", "trade_id"),
)

tracked_idea_snapshots = sa.Table(
    "tracked_idea_snapshots", metadata,
    sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("tracked_idea_id", sa.String(36), nullable=False),
    sa.Column("pnl_event_id", sa.String(36), nullable=False, unique=True),  # the event that triggered it
    sa.Column("snapshot_time", UtcDateTime, nullable=False),
    sa.Column("trigger_type", sa.String(20), nullable=False),
    sa.Column("mark_price", _dec(12, 4)),
    sa.Column("underlying_price", Money(12, 2), nullable=False),
    sa.Column("unrealized_pnl", Money(14, 2), nullable=False),
    sa.Column("pnl_percent", _dec(10, 4), nullable=False),      # 100 x unrealized / risk unit
    sa.Column("delta", _dec(10, 4)),
    sa.Column("gamma", _dec(12, 6)),
    sa.Column("theta", _dec(10, 4)),
    sa.Column("vega", _dec(10, 4)),
    sa.Column("vix_level", _dec(6, 2)),
    sa.Index("ix_tracked_idea_snapshots_idea_time", "tracked_idea_id", "snapshot_time"),
    sa.Index("ix_tracked_idea_snapshots_trigger", "trigger_type"),
)

user_trade_actions = sa.Table(
    "user_trade_actions", metadata,
    sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("tracked_idea_id", sa.String(36), nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("action", sa.String(20), nullable=False),   # viewed dismissed starred traded trade_closed
    sa.Column("action_time", UtcDateTime, nullable=False),
    sa.Column("fill_price", Money(12, 4)),
    sa.Column("fill_quantity", sa.Integer),
    sa.Column("trade_id", sa.String(36)),
    sa.Column("exit_price", Money(12, 4)),
    sa.Column("realized_pnl", Money(14, 2)),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_user_trade_actions_idea_user", "tracked_idea_id", "user_id"),
    sa.Index("ix_user_trade_actions_user_time", "user_id", "action_time"),
)

# -- derived ------------------------------------------------------------------------------
ml_labels = sa.Table(
    "ml_labels", metadata,
    sa.Column("tracked_idea_id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("idea_id", sa.String(64), nullable=False),
    sa.Column("context_id", sa.String(100), nullable=False),
    sa.Column("settlement_pnl", Money(14, 2), nullable=False),
    sa.Column("profitable", sa.SmallInteger, nullable=False),
    sa.Column("profit_tier", sa.SmallInteger, nullable=False),
    sa.Column("r2r_achieved", sa.Float, nullable=False),
    sa.Column("risk_unit", Money(14, 2), nullable=False),
    sa.Column("max_favorable_excursion", sa.Float, nullable=False),
    sa.Column("max_adverse_excursion", sa.Float, nullable=False),
    sa.Column("time_to_max_pnl_pct", sa.Float, nullable=False),
    sa.Column("time_in_drawdown_pct", sa.Float, nullable=False),
    sa.Column("hit_stop", sa.SmallInteger, nullable=False),
    sa.Column("hit_target", sa.SmallInteger, nullable=False),
    sa.Column("outperformed_median", sa.SmallInteger),
    sa.Column("cohort_percentile", sa.Float),
    sa.Column("cohort_size", sa.Integer, nullable=False),       # settled ideas of the context so far
    sa.Column("labelled_at", UtcDateTime, nullable=False),
    sa.Index("ix_ml_labels_user_context", "user_id", "context_id"),
)

daily_performance = sa.Table(
    "daily_performance", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),                # New York session date
    sa.Column("net_pnl", Money(14, 2), nullable=False),
    sa.Column("gross_pnl", Money(14, 2), nullable=False),
    sa.Column("total_fees", Money(12, 2), nullable=False, server_default="0"),
    sa.Column("high_water_pnl", Money(14, 2), nullable=False),
    sa.Column("max_drawdown", Money(14, 2), nullable=False),
    sa.Column("drawdown_pct", _dec(10, 4)),
    sa.Column("trade_count", sa.Integer, nullable=False),
    sa.Column("win_count", sa.Integer, nullable=False),
    sa.Column("loss_count", sa.Integer, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("primary_model_id", sa.Integer),
    sa.Column("ml_contribution_pct", _dec(6, 4)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# A decision's deep score (mlloop_0004; the mlloop.deep_score job): its model's full batch path.
ml_deep_scores = sa.Table(
    "ml_deep_scores", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("decision_id", sa.String(36), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("idea_id", sa.String(64), nullable=False),
    sa.Column("feature_snapshot_id", sa.String(36), nullable=False),
    sa.Column("model_id", sa.Integer, nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("model_key", sa.String(40), nullable=False),      # "__global__" or a regime
    sa.Column("ml_score", _dec(6, 2), nullable=False),
    sa.Column("tier_probabilities", JSONType, nullable=False),  # calibrated [p0, p1, p2, p3]
    sa.Column("confidence", sa.Float, nullable=False),          # 1 - H(p)/ln 4
    sa.Column("p_profitable", sa.Float, nullable=False),        # the Logloss sub-models'
    sa.Column("job_id", sa.String(36), nullable=True),
    sa.Column("scored_at", UtcDateTime, nullable=False),
    sa.Index("ix_ml_deep_scores_user_time", "user_id", "scored_at"))

IMMUTABLE = (ml_decisions, ml_feature_snapshots, pnl_events, tracked_idea_snapshots,
             user_trade_actions, ml_market_snapshots, ml_deep_scores)

# == the model registry ==================================================================
# Registry statuses (the seed's ENUM) and experiment states.
STATUSES = ("training", "validating", "champion", "challenger", "retired")
EXPERIMENT_STATUSES = ("running", "concluded", "aborted")

_BLOB = sa.LargeBinary().with_variant(sa.dialects.mysql.LONGBLOB(), "mysql", "mariadb")
_LONGTEXT = sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")
_INT_PK = sa.Integer

ml_models = sa.Table(
    "ml_models", registry_metadata,
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
    "ml_model_audit", registry_metadata,
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
    "ml_experiments", registry_metadata,
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
    "ml_drift_reports", registry_metadata,
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
    "ml_settings", registry_metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", sa.Integer, nullable=True),
)
