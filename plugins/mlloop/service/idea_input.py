"""An incoming idea checked against what it can be: its geometry, its own decision time (not
before the market context it is scored against: point in time), its expiry (not before the
decision's session), its price against the structure's bounds (a 5-wide vertical bought for
8.00 can never pay what it cost; a credit larger than the most it can lose cannot be), a rule
score it brings itself, and the extra features of a declared feature set. Every refusal is a
422 naming the field (``ideas.<i>.<field>``). No Flask."""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from app import errors
from plugins.mlloop.domain import calendar, ideas
from plugins.mlloop.service.feature_sets import FeatureSet

CENT = Decimal("0.01")


@dataclasses.dataclass
class Incoming:
    idea: ideas.TradeIdea
    decision_time: dt.datetime
    rule_score: Decimal | None        # the caller's own rule score, if it sent one
    extras: dict | None               # the declared feature set's values (None: built-in set)


def idea_error(index: int, field: str, message: str) -> errors.Unprocessable:
    """A 422 naming ``ideas.<index>.<field>`` in webargs' nested shape."""
    return errors.Unprocessable(f"ideas.{index}.{field}: {message}",
                                errors={"json": {"ideas": {str(index): {field: [message]}}}})


def parse(item: dict, index: int, *, as_of: dt.datetime, default_time: dt.datetime,
          feature_set: FeatureSet) -> Incoming:
    when = calendar.utc_ms(item["decision_time"]) if item.get("decision_time") else default_time
    if when < as_of:
        raise idea_error(index, "decision_time", f"before the market context's as_of ({as_of.isoformat()}): "
                                                 "features would come from after the decision")
    session = calendar.session_date(when)
    exp = item["expiration"]
    if exp < session:
        raise idea_error(index, "expiration", f"before the decision date ({session})")
    try:
        idea = ideas.TradeIdea(
            idea_id=item["idea_id"], strategy=item["strategy"], side=item["side"],
            direction=item["direction"], strike=Decimal(item["strike"]),
            width=item.get("width") if item["strategy"] != "single" else None,
            expiration=exp, dte=(exp - session).days, debit=Decimal(item["debit"]),
            quantity=item.get("quantity", 1), symbol=item.get("symbol", "SPX"), decision_time=when)
    except ideas.InvalidIdea as exc:
        raise errors.Unprocessable(f"ideas.{index}: {exc}",
                                   errors={"json": {"ideas": {str(index): {"_schema": [str(exc)]}}}})
    check_bounds(idea, index)
    score = item.get("rule_score")
    if score is not None:
        score = Decimal(score).quantize(CENT)
        if not Decimal(0) <= score <= Decimal(100):
            raise idea_error(index, "rule_score", "a rule score is within 0..100")
    extras = feature_set.clean(item.get("features"), f"ideas.{index}.features")
    return Incoming(idea, when, score, extras)


def check_bounds(idea: ideas.TradeIdea, index: int) -> None:
    """The entry price must leave the structure a possible profit and a possible loss: a debit
    above the most it can be worth at expiry, or a credit above the most it can lose, is an
    impossible input (``optionsmath.payoff_extremes`` over every expiry price)."""
    best, worst = ideas.pnl_range(idea.strategy, idea.side, idea.direction, idea.strike, idea.width,
                                  idea.debit, idea.quantity)
    per_share = Decimal(ideas.MULTIPLIER * idea.quantity)
    if best is not None and best < 0:
        worth = (Decimal(idea.debit) + best / per_share).quantize(CENT)
        raise idea_error(index, "debit", f"paying {idea.debit} for a {idea.strategy} worth at most {worth} "
                                         "at expiry: it can never make money")
    if worst is not None and worst > 0:
        owe = (-Decimal(idea.debit) - worst / per_share).quantize(CENT)
        raise idea_error(index, "debit", f"a credit of {-Decimal(idea.debit)} for a {idea.strategy} that can "
                                         f"lose at most {owe} at expiry: it can never lose")
