"""Decimal helpers: money is Decimal at every edge (storage, JSON, events).

Floats become Decimals through their shortest round-tripping repr (``0.1`` -> ``Decimal("0.1")``,
not the binary expansion ``0.1000000000000000055511151231257827...``); quantizing rounds
half-even (banker's rounding, the ``decimal`` module's default) unless told otherwise.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

ZERO = Decimal(0)
CENT = Decimal("0.01")


def to_decimal(value) -> Decimal:
    """``value`` (Decimal, int, str or float) as a Decimal. Floats through ``repr``; a
    non-finite float or a string that is no number raises ``ValueError``; ``None`` raises
    ``TypeError`` (use ``to_decimal_or_none`` when None is allowed)."""
    if isinstance(value, Decimal):
        return value
    if value is None:
        raise TypeError("expected a number, got None")
    if isinstance(value, bool):
        raise TypeError("expected a number, got a bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    try:
        out = Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return out


def to_decimal_or_none(value) -> Decimal | None:
    """``to_decimal`` with ``None`` and float NaN mapped to ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return to_decimal(value)


def quantize(value, places: int = 2, rounding: str = ROUND_HALF_EVEN) -> Decimal | None:
    """``value`` rounded to ``places`` decimal places (``None`` stays ``None``)."""
    value = to_decimal_or_none(value)
    if value is None:
        return None
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding)


def cents(value) -> Decimal | None:
    """``quantize(value, 2)``: a money amount in whole cents."""
    return quantize(value, 2)
