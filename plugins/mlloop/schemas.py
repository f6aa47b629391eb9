"""Marshmallow schemas of the mlloop API (/api/ml). Event payloads are in ``events.py``; the
admin API's schemas in ``admin_schemas.py``."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from plugins.mlloop.domain import ideas
from plugins.mlloop.domain.ledger import EVENT_TYPES
from plugins.mlloop.domain.selector_params import COMPONENTS

ID64 = validate.Length(min=1, max=64)
CONTEXT_ID = validate.Length(min=1, max=100)
ACTIONS = ("viewed", "dismissed", "starred", "traded", "trade_closed")


def _money(lo, hi, places=4, **kw):
    return tf.Money(places=places, validate=validate.Range(min=lo, max=hi), **kw)


def _num(lo, hi, **kw):
    return fields.Float(allow_nan=False, validate=validate.Range(min=lo, max=hi), **kw)


# -- market contexts ---------------------------------------------------------------------------
class MarketSnapshotIn(Schema):
    time = tf.UtcDateTime(required=True)
    spot = _money(0.01, 1_000_000, required=True)
    vix = _num(1, 500, required=True)
    vix3m = _num(1, 500, required=True)
    # a user's own stream may not have these: absent or null = unknown, a missing value for the
    # features, the rule score (treated as neutral) and the models
    gex_total = _num(-1e12, 1e12, allow_none=True, load_default=None,
                     metadata={"description": "dealer gamma, dollars per 1% move; null = unknown"})
    gex_call_wall = _money(0.01, 1_000_000, allow_none=True, load_default=None)
    gex_put_wall = _money(0.01, 1_000_000, allow_none=True, load_default=None)
    gex_gamma_flip = _money(0.01, 1_000_000, allow_none=True, load_default=None)
    market_mode = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=20))
    bias_lfi = _num(-1, 1, allow_none=True, load_default=None)
    es_futures_premium = _num(-0.99, 0.99, allow_none=True, load_default=None)
    tnx_level = _num(0, 99, allow_none=True, load_default=None)
    dxy_level = _num(0, 9999, allow_none=True, load_default=None)


class ContextRef(Schema):
    context_id = fields.String(required=True, validate=CONTEXT_ID)
    as_of = tf.UtcDateTime(required=True, metadata={"description": "features use snapshots at or before this"})


class ContextsIn(Schema):
    symbol = fields.String(load_default="SPX", validate=validate.Length(min=1, max=20))
    snapshots = fields.List(fields.Nested(MarketSnapshotIn), load_default=list,
                            validate=validate.Length(max=20_000),
                            metadata={"description": "market history to append (immutable per time)"})
    contexts = fields.List(fields.Nested(ContextRef), required=True, validate=validate.Length(min=1, max=1000))


class Context(Schema):
    context_id = fields.String(required=True)
    symbol = fields.String(required=True)
    as_of = tf.UtcDateTime(required=True)
    snapshot_count = fields.Integer(required=True)
    features = fields.Dict(required=True, metadata={"description": "market features as of as_of"})
    created_at = tf.UtcDateTime(required=True)


class ContextsOut(Schema):
    contexts = fields.List(fields.Nested(Context), required=True)


class ContextPath(Schema):
    context_id = fields.String(required=True, validate=CONTEXT_ID)


# -- selector params ---------------------------------------------------------------------------
class ParamsIn(Schema):
    weights = fields.Dict(keys=fields.String(validate=validate.OneOf(COMPONENTS)),
                          values=fields.Float(allow_nan=False, validate=validate.Range(min=0, max=1)),
                          required=True, metadata={"description": "convexity, r2r, width_fit, gamma_alignment; sum 1"})
    r2r_scale = _num(0.01, 100)
    convexity_scale = _num(0.01, 100)
    width_tolerance = _num(0.01, 10)
    single_width_score = _num(0, 100)
    gamma_em_adjust = _num(0, 0.99)
    width_target_em = fields.Dict(keys=fields.String(validate=validate.OneOf(("vertical", "butterfly"))),
                                  values=fields.Float(allow_nan=False, validate=validate.Range(min=0.01, max=100)))
    note = fields.String(validate=validate.Length(max=200))


class Params(Schema):
    version = fields.Integer(required=True)
    weights = fields.Dict(required=True)
    constants = fields.Dict(required=True)
    active = fields.Boolean(required=True)
    note = fields.String(allow_none=True)
    created_at = tf.UtcDateTime(required=True)


# -- scoring -----------------------------------------------------------------------------------
class IdeaIn(Schema):
    idea_id = fields.String(required=True, validate=ID64)
    strategy = fields.String(required=True, validate=validate.OneOf(ideas.STRATEGIES))
    side = fields.String(required=True, validate=validate.OneOf(ideas.SIDES))
    direction = fields.String(load_default="long", validate=validate.OneOf(ideas.DIRECTIONS))
    strike = _money(1, 1_000_000, places=2, required=True)
    width = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1, max=10_000))
    expiration = fields.Date(required=True)
    debit = _money(-100_000, 100_000, places=2, required=True,
                   metadata={"description": "net premium per share, signed: + paid (long), - received (short)"})
    quantity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    symbol = fields.String(load_default="SPX", validate=validate.Length(min=1, max=20))
    decision_time = tf.UtcDateTime(metadata={
        "description": "this idea's own decision time (default: the request's); not before the context's as_of"})
    rule_score = _money(0, 100, places=2, allow_none=True, load_default=None, metadata={
        "description": "your own rule score (0..100), recorded as original_score (rule_source 'user') "
                       "instead of the selector's formula"})
    features = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=40)), values=fields.Raw(allow_none=True),
                           load_default=None, metadata={
        "description": "extra feature values of the request's declared feature_set_version: "
                       "{name: number | string | null}"})

    @validates_schema
    def _geometry(self, data, **kw):
        if data.get("strategy") == "single" and data.get("width") not in (None, 0):
            raise ValidationError("a single option has no width", "width")
        if data.get("strategy") in ("vertical", "butterfly") and not data.get("width"):
            raise ValidationError("a spread needs a width", "width")
        if data.get("direction") == "long" and data.get("debit") is not None and data["debit"] < 0:
            raise ValidationError("a long structure is bought: debit must be >= 0", "debit")
        if data.get("direction") == "short" and data.get("debit") is not None and data["debit"] > 0:
            raise ValidationError("a short structure is sold: debit must be <= 0 (a credit)", "debit")
        if data.get("direction") == "short" and data.get("strategy") == "single" and data.get("side") == "call":
            raise ValidationError("a naked short call has no maximum loss (no risk unit)", "side")


class ScoreIn(Schema):
    context_id = fields.String(required=True, validate=CONTEXT_ID)
    decision_time = tf.UtcDateTime(metadata={"description": "defaults to the context's as_of; not before it"})
    feature_set_version = fields.String(validate=validate.Length(min=1, max=20), metadata={
        "description": "a declared feature set whose extra features the ideas carry (default: built-in)"})
    ideas = fields.List(fields.Nested(IdeaIn), required=True, validate=validate.Length(min=1, max=20_000))


class ScoredIdea(Schema):
    rank = fields.Integer(required=True)
    idea_id = fields.String(required=True)
    decision_id = fields.String(required=True)
    tracked_idea_id = fields.String(required=True)
    decision_time = tf.UtcDateTime(required=True, metadata={"description": "this idea's decision time"})
    original_score = tf.Money(places=2, required=True)
    rule_source = fields.String(required=True, metadata={"description": "selector (the rule formula) | user (sent with the idea)"})
    ml_score = tf.Money(places=2, allow_none=True, required=True, metadata={
        "description": "the ML score (0..100): clamp(50 + 50 EV) of the calibrated profit-tier forecast, "
                       "EV = -1 p0 + 0 p1 + 0.5 p2 + 1 p3 -- a ranking score, not a probability; null without a model"})
    p_profitable = fields.Float(allow_none=True, metadata={
        "description": "P(profitable) = p2 + p3 of the same calibrated tier forecast; null without a model"})
    tier_probabilities = fields.List(fields.Float(), allow_none=True, metadata={
        "description": "the calibrated forecast [p(big loss), p(small loss), p(small win), p(big win)]"})
    final_score = tf.Money(places=2, required=True)
    rule_components = fields.Dict(required=True)
    model_id = fields.Integer(allow_none=True)
    model_version = fields.Integer(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    experiment_arm = fields.String(allow_none=True)
    exploration = fields.Boolean(required=True)
    ml_weight = fields.Float(required=True)
    replayed = fields.Boolean(required=True, metadata={"description": "true: this decision already existed"})


class ScoreOut(Schema):
    context_id = fields.String(required=True)
    decision_time = tf.UtcDateTime(required=True)
    selector_params_version = fields.Integer(required=True)
    feature_set_version = fields.String(required=True)
    scoring_mode = fields.String(required=True)
    ideas = fields.List(fields.Nested(ScoredIdea), required=True)


class DecisionPath(Schema):
    decision_id = fields.String(required=True, validate=validate.Length(min=1, max=36))


class DeepScore(Schema):
    deep_score_id = fields.String(required=True)
    decision_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    feature_snapshot_id = fields.String(required=True)
    model_id = fields.Integer(required=True, metadata={"description": "the model that served the decision"})
    model_version = fields.Integer(required=True)
    model_key = fields.String(required=True, metadata={"description": "__global__ or the regime whose sub-model scored"})
    ml_score = tf.Money(places=2, required=True, metadata={
        "description": "0..100: clamp(50 + 50 EV) of the calibrated tier forecast (as the decision's ml_score)"})
    tier_probabilities = fields.List(fields.Float(), required=True, metadata={
        "description": "calibrated [p(big loss), p(small loss), p(small win), p(big win)]"})
    confidence = fields.Float(required=True, metadata={
        "description": "1 - H(p)/ln 4: 1 when one tier is certain, 0 when uniform"})
    p_profitable = fields.Float(required=True, metadata={
        "description": "P(profitable) from the model's separate Logloss sub-models"})
    job_id = fields.String(allow_none=True, metadata={"description": "the mlloop.deep_score job that recorded it"})
    scored_at = tf.UtcDateTime(required=True)


class Decision(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "recorded | pending (not yet written)"})
    decision_key = fields.String(required=True)
    idea_id = fields.String(required=True)
    tracked_idea_id = fields.String(required=True)
    context_id = fields.String(required=True)
    decision_time = tf.UtcDateTime(required=True)
    selector_params_version = fields.Integer(required=True)
    feature_snapshot_id = fields.String(required=True)
    original_score = tf.Money(places=2, required=True)
    rule_source = fields.String()
    ml_score = tf.Money(places=2, allow_none=True)
    p_profitable = fields.Float(allow_none=True)
    tier_probabilities = fields.List(fields.Float(), allow_none=True)
    final_score = tf.Money(places=2, required=True)
    rule_components = fields.Dict()
    ml_weight = fields.Float()
    scoring_mode = fields.String()
    model_id = fields.Integer(allow_none=True)
    model_version = fields.Integer(allow_none=True)
    experiment_id = fields.Integer(allow_none=True)
    experiment_arm = fields.String(allow_none=True)
    exploration = fields.Boolean()
    action_taken = fields.String()
    features = fields.Dict(allow_none=True)
    extra_features = fields.Dict(allow_none=True, metadata={"description": "a declared feature set's extra values"})
    idea = fields.Dict(allow_none=True)
    selector_params = fields.Dict(allow_none=True)
    model = fields.Dict()
    deep_score = fields.Nested(DeepScore, allow_none=True, metadata={
        "description": "the deep path's score (recorded asynchronously by the mlloop.deep_score job); "
                       "null until then, and always for a rules-only decision"})


class FeatureSetIn(Schema):
    version = fields.String(required=True, validate=validate.Length(min=1, max=20), metadata={
        "description": "the feature_set_version models of this stream are keyed by (not the built-in one)"})
    numeric = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    categorical = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    description = fields.String(allow_none=True, validate=validate.Length(max=500))


class FeatureSet(Schema):
    version = fields.String(required=True)
    user_id = fields.Integer(required=True, metadata={"description": "who declared it"})
    numeric = fields.List(fields.String(), required=True)
    categorical = fields.List(fields.String(), required=True)
    description = fields.String(allow_none=True)
    created_at = tf.UtcDateTime(required=True)


# -- ideas and the ledger ----------------------------------------------------------------------
class IdeaPath(Schema):
    idea_id = fields.String(required=True, validate=ID64)


class IdeaListArgs(Schema):
    settlement_status = fields.String(validate=validate.OneOf(("open", "settled")))
    context_id = fields.String(validate=CONTEXT_ID)


class TrackedIdea(Schema):
    id = fields.String(required=True)
    idea_id = fields.String(required=True)
    symbol = fields.String(required=True)
    decision_id = fields.String(required=True)
    context_id = fields.String(required=True)
    decision_time = tf.UtcDateTime(required=True)
    strategy = fields.String(required=True)
    side = fields.String(required=True)
    direction = fields.String(required=True)
    strike = tf.Money(places=2, required=True)
    width = fields.Integer(allow_none=True)
    dte = fields.Integer(required=True)
    expiration = fields.Date(required=True)
    quantity = fields.Integer(required=True)
    entry_debit = tf.Money(places=2, required=True)
    risk_unit = tf.Money(places=2, required=True)
    entry_spot = tf.Money(places=2, required=True)
    rule_score = tf.Money(places=2, required=True)
    selector_params_version = fields.Integer(required=True)
    regime = fields.String(allow_none=True)
    trade_id = fields.String(allow_none=True)
    cumulative_pnl = tf.Money(places=2, required=True)
    max_pnl = tf.Money(places=2, required=True)
    min_pnl = tf.Money(places=2, required=True)
    time_to_max_pnl = fields.Integer(required=True, metadata={"description": "trading minutes"})
    time_in_drawdown = fields.Integer(required=True, metadata={"description": "trading minutes"})
    event_count = fields.Integer(required=True)
    last_event_time = tf.UtcDateTime(allow_none=True)
    total_fees = tf.Money(places=2, required=True)
    total_slippage = tf.Money(places=2, required=True)
    settlement_status = fields.String(required=True)
    settlement_pnl = tf.Money(places=2, allow_none=True)
    settlement_price = tf.Money(places=2, allow_none=True)
    settled_at = tf.UtcDateTime(allow_none=True)
    lifetime_minutes = fields.Integer(allow_none=True)
    version = fields.Integer(required=True)


class PnlEventIn(Schema):
    event_id = fields.UUID(metadata={"description": "optional; re-sending the same event is a no-op"})
    idea_id = fields.String(required=True, validate=ID64)
    trade_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=36))
    strategy_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=36))
    event_type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    event_time = tf.UtcDateTime(required=True)
    pnl_delta = _money(-1e9, 1e9, places=2, allow_none=True,
                       metadata={"description": "change of the idea's net P&L (dollars), fees and slippage included; "
                                                "omit for a settlement with settlement_price"})
    fees = _money(0, 1e6, places=2, load_default=None)
    slippage = _money(0, 1e6, places=2, load_default=None)
    underlying_price = _money(0.01, 1_000_000, places=2)
    settlement_price = _money(0.01, 1_000_000, places=2)
    mark_price = _money(-1e6, 1e6)
    delta = _num(-1e5, 1e5)
    gamma = _num(-1e5, 1e5)
    theta = _num(-1e5, 1e5)
    vega = _num(-1e5, 1e5)
    vix_level = _num(0, 9999)

    @validates_schema
    def _shape(self, data, **kw):
        if data.get("event_type") != "settlement" and data.get("pnl_delta") is None:
            raise ValidationError("required for mark, fill and adjustment events", "pnl_delta")
        if data.get("underlying_price") is None and data.get("settlement_price") is None:
            raise ValidationError("required", "underlying_price")
        if data.get("pnl_delta") is None and data.get("settlement_price") is None:
            raise ValidationError("a settlement needs pnl_delta or settlement_price", "settlement_price")
        if data.get("event_id") is not None:
            data["event_id"] = str(data["event_id"])


class PnlEventsIn(Schema):
    events = fields.List(fields.Nested(PnlEventIn), required=True, validate=validate.Length(min=1, max=20_000))


class RecordedEvent(Schema):
    event_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    event_type = fields.String(required=True)
    event_time = tf.UtcDateTime(required=True)
    pnl_delta = tf.Money(places=2, required=True)
    cumulative_pnl = tf.Money(places=2, required=True)
    snapshot_trigger = fields.String(allow_none=True, required=True)


class PnlEventsOut(Schema):
    recorded = fields.Integer(required=True)
    snapshots = fields.Integer(required=True)
    settled = fields.List(fields.String(), required=True)
    events = fields.List(fields.Nested(RecordedEvent), required=True)


class PnlEvent(Schema):
    id = fields.Integer(required=True)
    event_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    trade_id = fields.String(allow_none=True)
    strategy_id = fields.String(allow_none=True)
    event_time = tf.UtcDateTime(required=True)
    session_date = fields.Date(required=True)
    event_type = fields.String(required=True)
    pnl_delta = tf.Money(places=2, required=True)
    fees = tf.Money(places=2, required=True)
    slippage = tf.Money(places=2, required=True)
    underlying_price = tf.Money(places=2, required=True)
    cumulative_pnl = tf.Money(places=2, required=True)


class IdeaSnapshot(Schema):
    id = fields.Integer(required=True)
    pnl_event_id = fields.String(required=True)
    snapshot_time = tf.UtcDateTime(required=True)
    trigger_type = fields.String(required=True)
    mark_price = tf.Money(allow_none=True)
    underlying_price = tf.Money(places=2, required=True)
    unrealized_pnl = tf.Money(places=2, required=True)
    pnl_percent = tf.Money(required=True)
    delta = tf.Money(allow_none=True)
    gamma = tf.Money(places=6, allow_none=True)
    theta = tf.Money(allow_none=True)
    vega = tf.Money(allow_none=True)
    vix_level = tf.Money(places=2, allow_none=True)


class SettleIn(Schema):
    settlement_price = _money(0.01, 1_000_000, places=2, required=True)
    settled_at = tf.UtcDateTime(metadata={"description": "defaults to 16:00 New York on the expiration"})


class ActionIn(Schema):
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    action_time = tf.UtcDateTime()
    fill_price = _money(-1e6, 1e6, allow_none=True)
    fill_quantity = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=100_000))
    trade_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=36))
    exit_price = _money(-1e6, 1e6, allow_none=True)
    realized_pnl = _money(-1e9, 1e9, places=2, allow_none=True)


class Action(Schema):
    id = fields.Integer(required=True)
    idea_id = fields.String(required=True)
    action = fields.String(required=True)
    action_time = tf.UtcDateTime(required=True)
    fill_price = tf.Money(allow_none=True)
    fill_quantity = fields.Integer(allow_none=True)
    trade_id = fields.String(allow_none=True)
    exit_price = tf.Money(allow_none=True)
    realized_pnl = tf.Money(places=2, allow_none=True)


class Labels(Schema):
    tracked_idea_id = fields.String(required=True)
    idea_id = fields.String(required=True)
    context_id = fields.String(required=True)
    settlement_pnl = tf.Money(places=2, required=True)
    profitable = fields.Integer(required=True)
    profit_tier = fields.Integer(required=True)
    r2r_achieved = fields.Float(required=True)
    risk_unit = tf.Money(places=2, required=True)
    max_favorable_excursion = fields.Float(required=True)
    max_adverse_excursion = fields.Float(required=True)
    time_to_max_pnl_pct = fields.Float(required=True)
    time_in_drawdown_pct = fields.Float(required=True)
    hit_stop = fields.Integer(required=True)
    hit_target = fields.Integer(required=True)
    outperformed_median = fields.Integer(allow_none=True)
    cohort_percentile = fields.Float(allow_none=True)
    cohort_size = fields.Integer(required=True)
    labelled_at = tf.UtcDateTime(required=True)


class DailyArgs(Schema):
    start = fields.Date(data_key="from")
    end = fields.Date(data_key="to")


class Day(Schema):
    date = fields.Date(required=True)
    net_pnl = tf.Money(places=2, required=True)
    gross_pnl = tf.Money(places=2, required=True)
    total_fees = tf.Money(places=2, required=True)
    high_water_pnl = tf.Money(places=2, required=True)
    max_drawdown = tf.Money(places=2, required=True)
    drawdown_pct = tf.Money(allow_none=True)
    trade_count = fields.Integer(required=True)
    win_count = fields.Integer(required=True)
    loss_count = fields.Integer(required=True)
    event_count = fields.Integer(required=True)
    primary_model_id = fields.Integer(allow_none=True)
    ml_contribution_pct = tf.Money(allow_none=True)
    cumulative_net_pnl = tf.Money(places=2, required=True)


class Daily(Schema):
    days = fields.List(fields.Nested(Day), required=True)
    dates = fields.List(fields.Date(), required=True)
    net_pnl = fields.List(tf.Money(places=2), required=True)
    cumulative_net_pnl = fields.List(tf.Money(places=2), required=True)
