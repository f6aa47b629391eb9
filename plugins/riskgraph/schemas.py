"""Marshmallow schemas: API bodies, query args, responses and event payloads of riskgraph."""
from __future__ import annotations

import datetime as dt

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from bus.topic import Topic

STRATEGY_KINDS = ("single", "vertical", "butterfly")
SIDES = ("call", "put")
CHANGE_TYPES = ("created", "debit_updated", "visibility_toggled", "edited", "deleted")
MAX_POINTS = 5001
MAX_DATES = 20
MAX_LEGS = 50
MAX_STRATEGIES = 20

_symbol = validate.Regexp(r"^[A-Za-z0-9:._^/-]{1,20}$", error="1-20 letters, digits or :._^/-")
_color = validate.Length(max=20)
_label = validate.Length(max=100)
_reason = validate.Length(max=255)
_id = validate.Length(min=1, max=36)


def _between(low, high, *, low_inclusive=True):
    """A range check that the OpenAPI document states: numeric bounds on number fields, and in
    the description of decimal-string (Money) fields (the host moves them there)."""
    return validate.Range(min=low, max=high, min_inclusive=low_inclusive)


_positive = _between(0, 10_000_000, low_inclusive=False)


def _price(**kw):
    kw.setdefault("validate", _between(0, 10_000_000))
    return tf.Money(**kw)


# -- strategies --------------------------------------------------------------------------
class _Geometry(Schema):
    @validates_schema
    def _width_for_spreads(self, data, partial=None, **_):
        kind = data.get("strategy")
        if kind in ("vertical", "butterfly") and not data.get("width"):
            raise ValidationError(f"a {kind} needs a positive width", "width")
        if kind == "vertical" and data.get("side") == "put" and data.get("width") and data.get("strike") is not None \
                and data["strike"] - data["width"] <= 0:
            raise ValidationError("the short put strike (strike - width) must be > 0", "width")
        if kind == "butterfly" and data.get("width") and data.get("strike") is not None \
                and data["strike"] - data["width"] <= 0:
            raise ValidationError("the lower wing (strike - width) must be > 0", "width")


class StrategyIn(_Geometry):
    """A strategy to add. ``expiration`` defaults to today + ``dte`` (UTC)."""
    symbol = fields.String(load_default="SPX", validate=_symbol)
    underlying = fields.String(load_default=None, validate=_symbol,
                               metadata={"description": "default: an index option root's index as I:<index> "
                                                        "(SPX, SPXW -> I:SPX), else the symbol"})
    strategy = fields.String(required=True, validate=validate.OneOf(STRATEGY_KINDS))
    side = fields.String(required=True, validate=validate.OneOf(SIDES))
    strike = tf.Money(places=2, required=True, validate=_positive)
    width = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100_000))
    dte = fields.Integer(required=True, validate=validate.Range(min=0, max=3650))
    expiration = fields.Date(load_default=None)
    debit = _price(load_default=None, allow_none=True, metadata={"description": "net premium per unit"})
    visible = fields.Boolean(load_default=True)
    sort_order = fields.Integer(load_default=0, validate=validate.Range(min=-1_000_000, max=1_000_000))
    color = fields.String(load_default=None, allow_none=True, validate=_color)
    label = fields.String(load_default=None, allow_none=True, validate=_label)
    added_at = fields.Integer(load_default=None, validate=validate.Range(min=0, max=10**15),
                              metadata={"description": "epoch ms; default now"})
    change_reason = fields.String(load_default=None, allow_none=True, validate=_reason)


class StrategyPatch(_Geometry):
    """Fields to change; ``change_reason`` goes into the version row."""
    symbol = fields.String(validate=_symbol)
    underlying = fields.String(validate=_symbol)
    strategy = fields.String(validate=validate.OneOf(STRATEGY_KINDS))
    side = fields.String(validate=validate.OneOf(SIDES))
    strike = tf.Money(places=2, validate=_positive)
    width = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=100_000))
    dte = fields.Integer(validate=validate.Range(min=0, max=3650))
    expiration = fields.Date()
    debit = _price(allow_none=True)
    visible = fields.Boolean()
    sort_order = fields.Integer(validate=validate.Range(min=-1_000_000, max=1_000_000))
    color = fields.String(allow_none=True, validate=_color)
    label = fields.String(allow_none=True, validate=_label)
    change_reason = fields.String(allow_none=True, validate=_reason)

    @validates_schema
    def _width_for_spreads(self, data, partial=None, **_):
        pass  # checked against the merged strategy in the service


class DeleteArgs(Schema):
    change_reason = fields.String(load_default=None, validate=_reason)


class Strategy(Schema):
    id = fields.String(required=True)
    symbol = fields.String(required=True)
    underlying = fields.String(required=True)
    strategy = fields.String(required=True, validate=validate.OneOf(STRATEGY_KINDS))
    side = fields.String(required=True, validate=validate.OneOf(SIDES))
    strike = tf.Money(required=True, metadata={"description": "4 decimals like every strike and amount "
                                                              "(\"6100.0000\"); kept to cents"})
    width = fields.Integer(allow_none=True)
    dte = fields.Integer(required=True)
    expiration = fields.Date(required=True)
    debit = tf.Money(allow_none=True)
    visible = fields.Boolean(required=True)
    sort_order = fields.Integer(required=True)
    color = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    added_at = fields.Integer(required=True, metadata={"description": "epoch ms"})
    is_active = fields.Boolean(required=True)
    version = fields.Integer(required=True)
    created_at = tf.UtcDateTime(required=True)
    updated_at = tf.UtcDateTime(required=True)


class StrategyVersion(Schema):
    strategy_id = fields.String(required=True)
    version = fields.Integer(required=True)
    debit = tf.Money(allow_none=True)
    visible = fields.Boolean(required=True)
    label = fields.String(allow_none=True)
    change_type = fields.String(required=True, validate=validate.OneOf(CHANGE_TYPES))
    change_reason = fields.String(allow_none=True)
    snapshot = fields.Dict(required=True, metadata={"description": "the strategy as of this version"})
    created_at = tf.UtcDateTime(required=True)


class ImportItem(StrategyIn):
    id = fields.String(load_default=None, validate=_id,
                       metadata={"description": "client id: importing the same id again updates, never duplicates"})


class ImportIn(Schema):
    strategies = fields.List(fields.Nested(ImportItem), required=True,
                             validate=validate.Length(min=1, max=500))
    change_reason = fields.String(load_default="import", validate=_reason)

    @validates_schema
    def _unique_ids(self, data, **_):
        ids = [s["id"] for s in data.get("strategies", []) if s.get("id")]
        if len(ids) != len(set(ids)):
            raise ValidationError("ids must be unique within one import", "strategies")


class ImportResult(Schema):
    created = fields.Integer(required=True)
    updated = fields.Integer(required=True)
    unchanged = fields.Integer(required=True)
    id_map = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "given id -> stored id (differs when the id was taken)"})
    strategies = fields.List(fields.Nested(Strategy), required=True)


class ExportOut(Schema):
    format = fields.String(required=True)
    exported_at = tf.UtcDateTime(required=True)
    strategies = fields.List(fields.Nested(Strategy), required=True)


class ReorderItem(Schema):
    id = fields.String(required=True, validate=_id)
    sort_order = fields.Integer(required=True, validate=validate.Range(min=-1_000_000, max=1_000_000))


class ReorderIn(Schema):
    order = fields.List(fields.Nested(ReorderItem), required=True, validate=validate.Length(min=1, max=1000))

    @validates_schema
    def _unique(self, data, **_):
        ids = [i["id"] for i in data.get("order", [])]
        if len(ids) != len(set(ids)):
            raise ValidationError("each id at most once", "order")


# -- templates ---------------------------------------------------------------------------
class TemplateIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))
    symbol = fields.String(load_default="SPX", validate=_symbol)
    strategy = fields.String(required=True, validate=validate.OneOf(STRATEGY_KINDS))
    side = fields.String(required=True, validate=validate.OneOf(SIDES))
    strike_offset = fields.Integer(load_default=0, validate=validate.Range(min=-100_000, max=100_000),
                                   metadata={"description": "points from the ATM strike"})
    width = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100_000))
    dte_target = fields.Integer(required=True, validate=validate.Range(min=0, max=3650))
    debit_estimate = _price(load_default=None, allow_none=True)

    @validates_schema
    def _width(self, data, **_):
        if data.get("strategy") in ("vertical", "butterfly") and not data.get("width"):
            raise ValidationError(f"a {data['strategy']} needs a positive width", "width")


class Template(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    symbol = fields.String(required=True)
    strategy = fields.String(required=True)
    side = fields.String(required=True)
    strike_offset = fields.Integer(required=True)
    width = fields.Integer(allow_none=True)
    dte_target = fields.Integer(required=True)
    debit_estimate = tf.Money(allow_none=True)
    is_public = fields.Boolean(required=True)
    share_code = fields.String(allow_none=True)
    use_count = fields.Integer(required=True)
    created_at = tf.UtcDateTime(required=True)


class SharedTemplate(Schema):
    """What anyone signed in sees through a share code: the template only, no owner."""
    share_code = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    symbol = fields.String(required=True)
    strategy = fields.String(required=True)
    side = fields.String(required=True)
    strike_offset = fields.Integer(required=True)
    width = fields.Integer(allow_none=True)
    dte_target = fields.Integer(required=True)
    debit_estimate = tf.Money(allow_none=True)
    use_count = fields.Integer(required=True)


class ShareOut(Schema):
    template_id = fields.String(required=True)
    share_code = fields.String(required=True)
    path = fields.String(required=True)


class UseIn(Schema):
    spot = tf.Money(required=True, validate=_positive)
    date = fields.Date(load_default=None, metadata={"description": "valuation date; default today (UTC)"})
    expiration = fields.Date(load_default=None, metadata={"description": "overrides date + dte_target"})
    debit = _price(load_default=None, allow_none=True, metadata={"description": "default: debit_estimate"})
    label = fields.String(load_default=None, allow_none=True, validate=_label)
    color = fields.String(load_default=None, allow_none=True, validate=_color)

    @validates_schema
    def _dates(self, data, **_):
        if data.get("expiration") and data.get("date") and data["expiration"] < data["date"]:
            raise ValidationError("must not be before date", "expiration")


# -- risk --------------------------------------------------------------------------------
class RiskLegIn(Schema):
    instrument_type = fields.String(load_default="option", validate=validate.OneOf(("option", "stock", "future")))
    right = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(SIDES))
    strike = tf.Money(load_default=None, allow_none=True,
                      validate=_positive)
    expiry = fields.Date(load_default=None, allow_none=True)
    quantity = fields.Integer(required=True, strict=True,
                              validate=[validate.Range(min=-100_000, max=100_000),
                                        validate.NoneOf([0], error="must not be 0")],
                              metadata={"description": "signed whole contracts/shares (+ long, - short); "
                                                       "a fraction is refused"})
    price = _price(load_default=None, allow_none=True, metadata={"description": "premium per unit"})
    iv = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=10),
                      metadata={"description": "decimal; 0 = no volatility (discounted forward intrinsic)"})
    multiplier = fields.Integer(load_default=None, allow_none=True, strict=True,
                                validate=validate.Range(min=1, max=100_000))
    settlement = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("AM", "PM")),
                               metadata={"description": "with valuation_time: AM (the expiry morning's open) or "
                                                        "PM (that day's close); default by the underlying "
                                                        "(docs/risk-math.md, Market time)"})

    @validates_schema
    def _option_fields(self, data, **_):
        if data.get("instrument_type", "option") == "option":
            errors = {k: ["required for an option leg"] for k in ("right", "strike", "expiry") if data.get(k) is None}
            if errors:
                raise ValidationError(errors)
        elif data.get("strike") is not None or data.get("right") is not None:
            raise ValidationError("only option legs have a strike and right", "strike")


class DaysForward(fields.List):
    """A list of day offsets; a bare integer n is accepted as [n]."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        return super()._deserialize(value, attr, data, **kwargs)


class _MarketArgs(Schema):
    spot = fields.Float(required=True, allow_nan=False, validate=_positive)
    r = fields.Float(load_default=0.0, allow_nan=False, validate=validate.Range(min=-1, max=1),
                     metadata={"description": "risk-free rate, decimal (0.05 = 5%)"})
    q = fields.Float(load_default=0.0, allow_nan=False, validate=validate.Range(min=-1, max=1),
                     metadata={"description": "dividend yield, decimal"})
    iv = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=10),
                      metadata={"description": "vol for legs without one, decimal (0.2 = 20%; 0 = none)"})
    valuation_date = fields.Date(load_default=None, metadata={
        "description": "default today (UTC); T = whole calendar days to expiry / 365"})
    valuation_time = tf.UtcDateTime(load_default=None, metadata={
        "description": "instead of valuation_date: T = time to each leg's settlement moment (exchange "
                       "calendar, AM/PM settlement), fractional; an option past it is settled"})
    underlying = fields.String(load_default=None, validate=_symbol, metadata={
        "description": "the legs' underlying, for their calendar and settlement style with valuation_time "
                       "(default: XNYS, PM)"})
    model = fields.String(load_default="bsm", validate=validate.OneOf(("bsm", "black76")), metadata={
        "description": "bsm: Black-Scholes-Merton; black76: options on futures (spot = the future's price, "
                       "q = r, rho = -T x V)"})
    points = fields.Integer(load_default=201, validate=validate.Range(min=2, max=MAX_POINTS))
    min = fields.Float(load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=10_000_000),
                       metadata={"description": "grid low (with max)"})
    max = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                       validate=validate.Range(min=0, min_inclusive=False, max=10_000_000),
                       metadata={"description": "grid high (with min)"})
    days_forward = DaysForward(fields.Integer(strict=True, validate=validate.Range(min=0, max=3650)),
                               load_default=lambda: [0], validate=validate.Length(min=1, max=MAX_DATES),
                               metadata={"description": "1..20 T+n curves: calendar days after the valuation "
                                                        "date/time (a single integer n is [n]); the T+0 curve "
                                                        "is always drawn first"})

    @validates_schema
    def _when(self, data, **_):
        if data.get("valuation_date") is not None and data.get("valuation_time") is not None:
            raise ValidationError("give valuation_date or valuation_time, not both", "valuation_time")

    @validates_schema
    def _grid(self, data, **_):
        lo, hi = data.get("min"), data.get("max")
        if (lo is None) != (hi is None):
            raise ValidationError("give both min and max, or neither", "min" if lo is None else "max")
        if lo is not None and not lo < hi:
            raise ValidationError("must be greater than min", "max")


class AnalyzeIn(_MarketArgs):
    legs = fields.List(fields.Nested(RiskLegIn), load_default=None, validate=validate.Length(min=1, max=MAX_LEGS),
                       metadata={"description": "one ad-hoc position"})
    strategy_ids = fields.List(fields.String(validate=_id), load_default=None,
                               validate=validate.Length(min=1, max=MAX_STRATEGIES),
                               metadata={"description": "saved strategies, overlaid on the same grid"})
    greek_curves = fields.Boolean(load_default=False, metadata={"description": "also Greeks along the grid"})

    @validates_schema
    def _something(self, data, **_):
        if not data.get("legs") and not data.get("strategy_ids"):
            raise ValidationError("send legs, strategy_ids or both", "legs")
        ids = data.get("strategy_ids") or []
        if len(ids) != len(set(ids)):
            raise ValidationError("each id at most once", "strategy_ids")


class RiskQuery(_MarketArgs):
    class Meta:
        unknown = EXCLUDE


class PositionAnalyzeIn(_MarketArgs):
    pass


class MarketInputsIn(Schema):
    spot = fields.Float(required=True, allow_nan=False, validate=_positive)
    iv = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0, max=10))
    r = fields.Float(load_default=0.0, allow_nan=False, validate=validate.Range(min=-1, max=1))
    q = fields.Float(load_default=0.0, allow_nan=False, validate=validate.Range(min=-1, max=1))


class MarketInputs(MarketInputsIn):
    symbol = fields.String(required=True)
    updated_at = tf.UtcDateTime(required=True)


_num = lambda **kw: fields.Float(allow_nan=True, **kw)  # noqa: E731  (analytics are floats)


class GreekSet(Schema):
    delta = _num(required=True)
    gamma = _num(required=True)
    theta = _num(required=True)
    vega = _num(required=True)
    rho = _num(required=True)


class GreekTotal(GreekSet):
    value = _num(required=True, metadata={"description": "position value at the spot"})


class PerUnit(GreekSet):
    price = _num(required=True)


class LegGreeks(Schema):
    index = fields.Integer(required=True)
    kind = fields.String(required=True)
    right = fields.String(allow_none=True)
    strike = _num(allow_none=True)
    quantity = fields.Integer(required=True)
    multiplier = fields.Integer(required=True)
    expiry = fields.String(allow_none=True)
    years = _num(allow_none=True)
    iv = _num(allow_none=True)
    per_unit = fields.Nested(PerUnit, required=True)
    position = fields.Nested(GreekTotal, required=True)


class Greeks(Schema):
    legs = fields.List(fields.Nested(LegGreeks), required=True)
    total = fields.Nested(GreekTotal, required=True)


class Curve(Schema):
    days = _num(required=True)
    date = fields.String(allow_none=True)
    pnl = fields.List(_num(allow_none=True), required=True)
    breakevens = fields.List(_num(), required=True)
    delta = fields.List(_num(allow_none=True))
    gamma = fields.List(_num(allow_none=True))
    theta = fields.List(_num(allow_none=True))
    vega = fields.List(_num(allow_none=True))
    rho = fields.List(_num(allow_none=True))


class ExpiryCurve(Schema):
    days = _num(required=True)
    date = fields.String(allow_none=True)
    years = _num(required=True)
    pnl = fields.List(_num(allow_none=True), required=True)
    exact = fields.Boolean(required=True)


class StrategyRisk(Schema):
    source = fields.String(required=True, validate=validate.OneOf(("legs", "strategy")))
    strategy_id = fields.String(allow_none=True)
    label = fields.String(allow_none=True)
    net_debit = _num(required=True, metadata={"description": "dollars: sum(premium x quantity x multiplier)"})
    curves = fields.List(fields.Nested(Curve), required=True)
    expiry = fields.Nested(ExpiryCurve, required=True)
    greeks = fields.Nested(Greeks, required=True)
    breakevens = fields.List(_num(), required=True)
    max_profit = _num(allow_none=True, required=True)
    max_profit_unbounded = fields.Boolean(required=True)
    max_loss = _num(allow_none=True, required=True)
    max_loss_unbounded = fields.Boolean(required=True)
    profit_ranges = fields.List(fields.List(_num(allow_none=True)), required=True)
    pop = _num(required=True, metadata={"description": "probability of profit at expiry, 0..1"})
    pop_iv = _num(required=True)
    pop_drift = _num(required=True)
    tolerance = _num(metadata={"description": "dollars: |P&L| at or below it counts as 0 (1e-9 x the money "
                                              "the position involves)"})


class AnalyzeOut(Schema):
    spot = _num(required=True)
    r = _num(required=True)
    q = _num(required=True)
    valuation_date = fields.String(allow_none=True)
    valuation_time = fields.String(allow_none=True)
    model = fields.String()
    grid = fields.List(_num(), required=True)
    units = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    strategies = fields.List(fields.Nested(StrategyRisk), required=True)


# -- artifacts -----------------------------------------------------------------------------
class ArtifactArgs(Schema):
    position_id = fields.String(load_default=None, validate=_id)


class ArtifactSummary(Schema):
    id = fields.String(required=True)
    position_id = fields.String(allow_none=True)
    strategy_id = fields.String(allow_none=True)
    source = fields.String(required=True, validate=validate.OneOf(("snapshot", "events")))
    source_version = fields.Integer(allow_none=True)
    inputs = fields.Dict(required=True)
    summary = fields.Dict(required=True)
    computed_at = tf.UtcDateTime(required=True)


class Artifact(ArtifactSummary):
    curves = fields.Dict(required=True, metadata={"description": "grid, expiry_pnl, curves[{days, date, pnl, breakevens}]"})


class PulledArtifact(Artifact):
    reused = fields.Boolean(required=True, metadata={"description": "an artifact for this snapshot version and inputs existed"})
    link = fields.Dict(required=True, metadata={"description": "the callback to the trade log: {url, status}"})


# -- event payloads ------------------------------------------------------------------------
class StrategyEvent(Schema):
    """StrategyAdded / StrategyUpdated / StrategyRemoved."""
    strategy = fields.Nested(Strategy, required=True)
    change_type = fields.String(required=True, validate=validate.OneOf(CHANGE_TYPES))
    change_reason = fields.String(allow_none=True)


class RiskArtifactComputed(Schema):
    """A risk artifact was stored."""
    artifact_id = fields.String(required=True)
    position_id = fields.String(allow_none=True)
    strategy_id = fields.String(allow_none=True)
    source_version = fields.Integer(allow_none=True)
    computed_at = tf.UtcDateTime(required=True)
    summary = fields.Dict(required=True)


TOPIC = Topic("riskgraph.events", "Risk graph: strategy changes and computed risk artifacts.", {
    "StrategyAdded": StrategyEvent,
    "StrategyUpdated": StrategyEvent,
    "StrategyRemoved": StrategyEvent,
    "RiskArtifactComputed": RiskArtifactComputed,
})


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()
