"""Legs: one line of a position (an option, a stock or a future), from dicts or by hand."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from optionsmath.bsm import DAYS_PER_YEAR


class InvalidLeg(ValueError):
    """A leg (or a dict describing one) is malformed; the message names the field."""


_KINDS = ("option", "stock", "future")


def _norm_right(right):
    if right is None:
        return None
    text = str(right).strip().lower()
    if text in ("c", "call", "calls"):
        return "call"
    if text in ("p", "put", "puts"):
        return "put"
    raise InvalidLeg(f"right: expected 'call' or 'put', got {right!r}")


def _as_date(value, field):
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidLeg(f"{field}: expected an ISO date (YYYY-MM-DD), got {value!r}") from None


@dataclass(frozen=True)
class Leg:
    """One line of a position.

    ``quantity`` is signed (+ long, - short) and counts contracts (or shares);
    ``premium`` is the price paid/received per unit of the underlying, always >= 0, used
    for the P&L (``None``: cost basis taken at the current theoretical value);
    ``iv`` is a decimal (0.2 = 20%); the expiry is either a date (``expiry``, resolved
    against the valuation date) or ``expiry_years`` from the valuation date.
    Stocks and futures are linear in the underlying price (for options on futures, the
    grid price is the future's price; use q = r to get Black-76).
    """

    kind: str
    right: str | None = None
    strike: float | None = None
    expiry_years: float | None = None
    quantity: int = 1
    premium: float | None = None
    iv: float | None = None
    multiplier: int = 100
    expiry: dt.date | None = None

    def __post_init__(self):
        kind = str(self.kind).strip().lower()
        if kind not in _KINDS:
            raise InvalidLeg(f"kind: expected one of {_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        if isinstance(self.quantity, bool) or int(self.quantity) != self.quantity:
            raise InvalidLeg(f"quantity: expected a signed integer, got {self.quantity!r}")
        object.__setattr__(self, "quantity", int(self.quantity))
        if int(self.multiplier) != self.multiplier or self.multiplier <= 0:
            raise InvalidLeg(f"multiplier: expected a positive integer, got {self.multiplier!r}")
        object.__setattr__(self, "multiplier", int(self.multiplier))
        if self.premium is not None:
            if not math.isfinite(self.premium) or self.premium < 0:
                raise InvalidLeg(f"premium: expected a finite price >= 0, got {self.premium!r}")
            object.__setattr__(self, "premium", float(self.premium))
        if self.iv is not None:
            if not math.isfinite(self.iv) or self.iv < 0:
                raise InvalidLeg(f"iv: expected a decimal volatility >= 0, got {self.iv!r}")
            object.__setattr__(self, "iv", float(self.iv))
        object.__setattr__(self, "expiry", _as_date(self.expiry, "expiry"))
        if kind != "option":
            if self.strike is not None:
                raise InvalidLeg(f"strike: a {kind} leg has no strike")
            object.__setattr__(self, "right", None)
            return
        object.__setattr__(self, "right", _norm_right(self.right))
        if self.right is None:
            raise InvalidLeg("right: an option leg needs 'call' or 'put'")
        if self.strike is None or not math.isfinite(self.strike) or self.strike <= 0:
            raise InvalidLeg(f"strike: expected a positive number, got {self.strike!r}")
        object.__setattr__(self, "strike", float(self.strike))
        if self.expiry is None and self.expiry_years is None:
            raise InvalidLeg("expiry: an option leg needs an expiry date or expiry_years")
        if self.expiry_years is not None:
            if not math.isfinite(self.expiry_years):
                raise InvalidLeg(f"expiry_years: expected a number, got {self.expiry_years!r}")
            object.__setattr__(self, "expiry_years", float(self.expiry_years))

    def years_to_expiry(self, valuation_date=None):
        """Years (calendar days / 365) from ``valuation_date`` to expiry, >= 0; None if linear."""
        if self.kind != "option":
            return None
        if self.expiry is not None and valuation_date is not None:
            days = (self.expiry - _as_date(valuation_date, "valuation_date")).days
            return max(days, 0) / DAYS_PER_YEAR
        if self.expiry_years is not None:
            return max(self.expiry_years, 0.0)
        raise InvalidLeg("valuation_date: needed to turn the leg's expiry date into years")


def leg_from_dict(row: Mapping, valuation_date=None, *, valuation_time=None, underlying=None) -> Leg:
    """Build a ``Leg`` from a plain dict as the API/trade log sends it.

    Time to expiry: with ``valuation_time`` (an aware datetime) ``expiry_years`` is the
    fraction of a 365-day year to the leg's settlement moment (``markettime``: the
    calendar of the leg's ``underlying`` or the ``underlying`` argument, its ``settlement``
    style "AM"/"PM" or the default for that underlying); an option past that moment has
    T = 0 (settled). Else with ``valuation_date``: whole calendar days / 365, an expiry
    before that date being an error.

    Keys (aliases in brackets): ``instrument_type`` [kind], ``right`` [option_right],
    ``strike``, ``expiry`` [expiration, expiry_date] (ISO date) or ``expiry_years``,
    ``quantity`` (signed), ``price`` [premium] per unit, ``iv``, ``multiplier`` (default 100
    for options, 1 for stocks and futures). With a ``valuation_date`` the leg also gets
    ``expiry_years`` filled in.
    """
    if not isinstance(row, Mapping):
        raise InvalidLeg(f"leg: expected an object, got {type(row).__name__}")

    def pick(*names):
        for name in names:
            if row.get(name) is not None:
                return row[name]
        return None

    kind = pick("instrument_type", "kind")
    if kind is None:
        raise InvalidLeg("instrument_type: required")
    kind = str(kind).strip().lower()
    multiplier = pick("multiplier")
    if multiplier is None:
        multiplier = 100 if kind == "option" else 1
    quantity = pick("quantity", "qty")
    if quantity is None:
        raise InvalidLeg("quantity: required (signed: + long, - short)")

    def number(name, value):
        if value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidLeg(f"{name}: expected a number, got {value!r}") from None

    expiry = _as_date(pick("expiry", "expiration", "expiry_date"), "expiry")
    expiry_years = number("expiry_years", pick("expiry_years"))
    if expiry is not None and valuation_time is not None and kind == "option":
        from optionsmath.markettime import years_to_settlement
        try:
            expiry_years = years_to_settlement(valuation_time, pick("underlying") or underlying, expiry,
                                               style=pick("settlement"))
        except ValueError as exc:
            raise InvalidLeg(str(exc)) from None
    elif expiry is not None and valuation_date is not None and kind == "option":
        days = (expiry - _as_date(valuation_date, "valuation_date")).days
        if days < 0:
            raise InvalidLeg(f"expiry: {expiry.isoformat()} is before the valuation date")
        expiry_years = days / DAYS_PER_YEAR
    try:
        qty = float(quantity)
    except (TypeError, ValueError):
        raise InvalidLeg(f"quantity: expected a signed integer, got {quantity!r}") from None
    if not qty.is_integer():
        raise InvalidLeg(f"quantity: expected a signed integer, got {quantity!r}")
    mult = number("multiplier", multiplier)
    if mult is None or not mult.is_integer():
        raise InvalidLeg(f"multiplier: expected a positive integer, got {multiplier!r}")
    return Leg(
        kind=kind,
        right=pick("right", "option_right") if kind == "option" else None,
        strike=number("strike", pick("strike")) if kind == "option" else None,
        expiry_years=expiry_years if kind == "option" else None,
        quantity=int(qty),
        premium=number("price", pick("price", "premium")),
        iv=number("iv", pick("iv", "implied_volatility")),
        multiplier=int(mult),
        expiry=expiry if kind == "option" else None,
    )


def legs_from_dicts(rows: Iterable[Mapping], valuation_date=None, *, valuation_time=None,
                    underlying=None) -> list[Leg]:
    """``leg_from_dict`` over a list; errors name the leg's index (``legs[2].strike: ...``)."""
    legs = []
    for i, row in enumerate(rows):
        try:
            legs.append(leg_from_dict(row, valuation_date, valuation_time=valuation_time,
                                      underlying=underlying))
        except InvalidLeg as exc:
            raise InvalidLeg(f"legs[{i}].{exc}") from None
    return legs

