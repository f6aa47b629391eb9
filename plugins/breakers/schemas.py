"""Marshmallow schemas: API bodies and the payloads of ``breakers.events``."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from marshmallow import Schema, ValidationError, fields, validate

from app import fields as tf
from bus.topic import Topic
from plugins.breakers.engine import KILL_KINDS, NAMES, RESET_POLICIES, SEVERITIES, STATES

ACTOR = ("who did it: `NAME (user ID)`, `WHO (cli)` (an operator's --by label), `system` or `auto:...`; "
         "an API response shows another user's name and id (an admin's deployment-wide action) only as "
         "`an administrator`")
Reason = lambda **kw: fields.String(validate=validate.Length(min=1, max=400), **kw)  # noqa: E731
Scope = lambda: fields.String(load_default="user", validate=validate.OneOf(["user", "deployment"]),  # noqa: E731
                              metadata={"description": "user (yours) or deployment (all users; admin only)"})


MoneyIn = tf.MoneyIn    # the host's decimal-string field with numeric bounds
MoneyOut = tf.MoneyOut


def _timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except Exception:
        raise ValidationError("not an IANA time zone (e.g. America/New_York)")


# -- requests ----------------------------------------------------------------------------
class ConfigIn(Schema):
    limit = MoneyIn(places=6, required=True, low=0, high=10**12, metadata={
        "description": "daily_loss_limit: dollars of loss; max_drawdown: fraction (0.1 = 10%); order_rate: "
                       "orders per second; slippage_anomaly: mean slippage per unit; model_confidence: "
                       "minimum confidence 0..1"})
    severity = fields.String(validate=validate.OneOf(SEVERITIES), metadata={
        "description": "critical: trading HALTED; reduce_only: trading REDUCING; warning: ML scoring rules-only. "
                       "Default: the seed's (critical for loss/drawdown, warning otherwise)"})
    enabled = fields.Boolean(load_default=True)
    reset_policy = fields.String(validate=validate.OneOf(RESET_POLICIES), metadata={
        "description": "manual (a person clears it), session_open (at the next session open), auto (when no "
                       "longer breached). Default: session_open for daily_loss_limit, auto for order_rate, "
                       "manual otherwise"})
    capital = MoneyIn(allow_none=True, low=0, strict_low=True, high=10**12, metadata={
        "description": "max_drawdown: the account equity the drawdown is a fraction of"})
    session_open = fields.String(validate=validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$"),
                                 metadata={"description": "local session open HH:MM (default 09:30)"})
    session_tz = fields.String(validate=[validate.Length(min=1, max=64), _timezone],
                               metadata={"description": "IANA zone of the session (default America/New_York)"})
    scope = Scope()


class ClearIn(Schema):
    reason = Reason(required=True)


class KillSwitchIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(KILL_KINDS),
                         metadata={"description": "ml_scoring: scoring is rules-only; orders: every new order is refused"})
    reason = Reason(required=True)
    scope = Scope()


class TradingStateIn(Schema):
    state = fields.String(required=True, validate=validate.OneOf(STATES),
                          metadata={"description": "HALTED or REDUCING sets a floor; ACTIVE removes it"})
    reason = Reason(required=True)


class ConfidenceIn(Schema):
    value = MoneyIn(places=6, required=True, low=0, high=1)
    regime = fields.String(allow_none=True, validate=validate.Length(max=40))


# -- responses ---------------------------------------------------------------------------
class BreakerOut(Schema):
    name = fields.String(required=True, validate=validate.OneOf(NAMES))
    configured = fields.Boolean(required=True)
    value = MoneyOut(places=6, allow_none=True, required=True)
    limit = MoneyOut(places=6, allow_none=True, required=True)
    severity = fields.String(allow_none=True, required=True)
    reset_policy = fields.String(allow_none=True, required=True)
    unit = fields.String(required=True)
    tripped = fields.Boolean(required=True)
    since = tf.UtcDateTime(allow_none=True, required=True, metadata={"description": "when it entered its current state"})
    tripped_at = tf.UtcDateTime(allow_none=True, required=True)
    message = fields.String(required=True)
    cleared_by = fields.String(allow_none=True, required=True, metadata={"description": ACTOR})
    cleared_at = tf.UtcDateTime(allow_none=True, required=True)


class KillSwitchOut(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True)
    scope = fields.String(required=True)
    user_id = fields.Integer(allow_none=True, required=True)
    engaged = fields.Boolean(required=True)
    engaged_by = fields.String(required=True, metadata={"description": ACTOR})
    engaged_at = tf.UtcDateTime(required=True)
    reason = fields.String(required=True)
    released_by = fields.String(allow_none=True, required=True, metadata={"description": ACTOR})
    released_at = tf.UtcDateTime(allow_none=True, required=True)
    release_reason = fields.String(allow_none=True, required=True)


class TradingStateOut(Schema):
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    since = tf.UtcDateTime(required=True)
    reason = fields.String(allow_none=True, required=True)
    breaker = fields.String(allow_none=True, required=True, metadata={"description": "what caused it"})
    manual_state = fields.String(required=True)


class BookOut(Schema):
    daily_pnl = MoneyOut(required=True)
    cumulative = MoneyOut(required=True)
    high_water = MoneyOut(required=True)


class StatusOut(Schema):
    user_id = fields.Integer(required=True)
    as_of = tf.UtcDateTime(required=True)
    trading_state = fields.Nested(TradingStateOut, required=True)
    scoring_mode = fields.String(required=True, validate=validate.OneOf(["normal", "rules_only"]))
    session_open = tf.UtcDateTime(required=True, metadata={"description": "the current session's open"})
    breakers = fields.List(fields.Nested(BreakerOut), required=True)
    kill_switches = fields.List(fields.Nested(KillSwitchOut), required=True)
    books = fields.Dict(keys=fields.String(), values=fields.Nested(BookOut), required=True,
                        metadata={"description": "trades: realized P&L of closed positions; ml: the ML ledger (paper)"})


class EffectiveConfigOut(Schema):
    limit = MoneyOut(places=6, required=True)
    severity = fields.String(required=True)
    reset_policy = fields.String(required=True)
    capital = MoneyOut(allow_none=True, required=True)
    session_open = fields.String(required=True)
    session_tz = fields.String(required=True)
    scope = fields.String(required=True)


class ConfigRowOut(Schema):
    limit = MoneyOut(places=6, required=True)
    severity = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    reset_policy = fields.String(required=True)
    capital = MoneyOut(allow_none=True, required=True)
    session_open = fields.String(required=True)
    session_tz = fields.String(required=True)
    updated_by = fields.String(required=True, metadata={"description": ACTOR})
    updated_at = tf.UtcDateTime(required=True)


class ConfigOut(Schema):
    breaker = fields.String(required=True)
    effective = fields.Nested(EffectiveConfigOut, allow_none=True, required=True,
                              metadata={"description": "what applies: the stricter of your and the deployment's"})
    user = fields.Nested(ConfigRowOut, allow_none=True, required=True)
    deployment = fields.Nested(ConfigRowOut, allow_none=True, required=True)


class AuditOut(Schema):
    id = fields.Integer(required=True)
    at = tf.UtcDateTime(required=True)
    action = fields.String(required=True)
    breaker = fields.String(allow_none=True, required=True)
    from_state = fields.String(allow_none=True, required=True)
    to_state = fields.String(allow_none=True, required=True)
    value = MoneyOut(places=6, allow_none=True, required=True)
    limit = MoneyOut(places=6, allow_none=True, required=True)
    actor = fields.String(required=True, metadata={"description": ACTOR})
    reason = fields.String(allow_none=True, required=True)
    scope = fields.String(required=True)


# -- event payloads (breakers.events) ------------------------------------------------------
class TradingStateChanged(Schema):
    """A user's trading state moved (ACTIVE / REDUCING / HALTED) and why."""
    user_id = fields.Integer(required=True)
    from_state = fields.String(required=True)
    to_state = fields.String(required=True)
    breaker = fields.String(allow_none=True, metadata={"description": "the cause: a breaker, kill_switch:orders or manual"})
    value = MoneyOut(places=6, allow_none=True)
    limit = MoneyOut(places=6, allow_none=True)
    reason = fields.String()


class BreakerTripped(Schema):
    """A breaker tripped: its value breached its limit."""
    user_id = fields.Integer(required=True)
    breaker = fields.String(required=True)
    value = MoneyOut(places=6, allow_none=True)
    limit = MoneyOut(places=6)
    severity = fields.String()
    message = fields.String()
    tripped_at = tf.UtcDateTime()


class BreakerCleared(Schema):
    """A tripped breaker was cleared by a person or by its reset policy."""
    user_id = fields.Integer(required=True)
    breaker = fields.String(required=True)
    cleared_by = fields.String()
    cleared_at = tf.UtcDateTime()
    reason = fields.String()


class KillSwitchEngaged(KillSwitchOut):
    """A kill switch (ml_scoring or orders) was engaged, per user or deployment-wide."""


class KillSwitchReleased(KillSwitchOut):
    """A kill switch was released."""


EVENTS = {"TradingStateChanged": TradingStateChanged, "BreakerTripped": BreakerTripped,
          "BreakerCleared": BreakerCleared, "KillSwitchEngaged": KillSwitchEngaged,
          "KillSwitchReleased": KillSwitchReleased}

TOPIC = Topic("breakers.events", "Breaker trips and clears, trading-state transitions and kill switches.", EVENTS)
