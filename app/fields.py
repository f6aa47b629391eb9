"""Marshmallow fields every plugin uses for the project's conventions: times are UTC ISO-8601
with milliseconds and a ``Z``; money is a Decimal carried as a JSON string, never a float."""
from __future__ import annotations

import datetime as dt
import decimal

from marshmallow import ValidationError, fields

from bus.envelope import iso
from bus.sql import to_ms


class UtcDateTime(fields.DateTime):
    """``2025-02-05T10:30:00.000Z``. Input may carry any offset (converted to UTC); a time
    without an offset is taken as UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        try:
            result = to_ms(result)
        except (OverflowError, ValueError):
            raise ValidationError("Not a representable UTC time.")
        if not (1900 <= result.year <= 2999):
            raise ValidationError("Year must be between 1900 and 2999.")
        return result


class Money(fields.Decimal):
    """A Decimal as a JSON string (``"12.5000"``); accepts strings or numbers on input and
    refuses NaN/Infinity."""

    def __init__(self, places: int | None = 4, **kwargs):
        kwargs.setdefault("as_string", True)
        kwargs.setdefault("allow_nan", False)
        super().__init__(places=places, rounding=decimal.ROUND_HALF_EVEN, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid number.")
        try:  # a huge number is too large, not "not a number" (quantizing it would overflow)
            number = decimal.Decimal(str(value))
            # adjusted() (the exponent of the leading digit) needs no arithmetic: abs() of
            # "1e999999999" would itself overflow the decimal context (Emax 999999)
            big = number.is_finite() and not number.is_zero() and number.adjusted() >= 13
        except (decimal.DecimalException, ValueError, TypeError):
            big = False
        if big:
            raise ValidationError("Too large.")
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is not None and abs(result) >= decimal.Decimal("1e13"):
            raise ValidationError("Too large.")
        return result


def MoneyIn(*, low=None, high=None, strict_low=False, metadata=None, **kw):  # noqa: N802
    """Decimal input (a number or a numeric string) within [low, high] (``strict_low``: above
    low). The bound check is a plain callable, so the OpenAPI document keeps numeric bounds
    (a Range validator on a Decimal field would print them as strings)."""
    meta = dict(metadata or {})

    def check(value):
        if value is None:
            return
        if low is not None and (value <= low if strict_low else value < low):
            raise ValidationError(f"must be {'above' if strict_low else 'at least'} {low}")
        if high is not None and value > high:
            raise ValidationError(f"must be at most {high}")
    if low is not None:
        meta.setdefault("minimum", low)
        if strict_low:
            meta["exclusiveMinimum"] = True
    if high is not None:
        meta.setdefault("maximum", high)
    return Money(validate=check, metadata=meta, **kw)


def MoneyOut(*, metadata=None, **kw):  # noqa: N802
    """Decimal output: a JSON string such as "12.5000" (documented as a decimal string)."""
    return Money(metadata={"type": "string", "format": "decimal", **(metadata or {})}, **kw)
