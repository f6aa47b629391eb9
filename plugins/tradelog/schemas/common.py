"""Shared by every tradelog schema: the enumerations, bounds and field helpers (ids, signed
quantities, prices as Decimal strings, tags, dates and UTC times)."""
from __future__ import annotations

import datetime as dt

from marshmallow import ValidationError, fields, validate

from app import fields as tf


STATUSES = ("planned", "open", "closed")


INSTRUMENTS = ("option", "stock", "future")


RIGHTS = ("call", "put")


PHASES = ("setup", "entry", "management", "exit", "review")


SETTLEMENT_KINDS = ("expiration", "exercise", "assignment")


SETTLEMENT_TIMES = ("AM", "PM")


SETTLEMENT_TYPES = ("cash", "physical")


FILL_KINDS = ("trade", "expiration", "exercise", "assignment", "delivery")


ORDER_STATUSES = ("pending", "filled", "cancelled")


ORDER_TYPES = ("limit", "market")


STRATEGIES = ("single", "vertical", "straddle", "strangle", "calendar", "diagonal", "butterfly", "condor",
              "iron_butterfly", "iron_condor", "stock", "covered_call", "protective_put", "custom")


GROUP_BYS = ("strategy", "underlying", "tag", "weekday", "dte_bucket", "roll_chain")


MAX_LEGS = 16


MAX_QTY = 1_000_000


MAX_PRICE = 10_000_000  # per unit; keeps every dollar figure well inside the stored precision


Id = lambda **kw: fields.String(validate=validate.Length(min=1, max=36), **kw)  # noqa: E731


Qty = lambda **kw: fields.Integer(strict=True, validate=[  # noqa: E731
    validate.Range(min=-MAX_QTY, max=MAX_QTY), validate.NoneOf([0], error="must not be 0")], **kw)


MoneyIn = tf.MoneyIn    # the host's decimal-string field with numeric bounds


MoneyOut = tf.MoneyOut


Price = lambda **kw: MoneyIn(low=0, high=MAX_PRICE, **kw)  # noqa: E731


Tags = lambda **kw: fields.List(fields.String(validate=validate.Length(min=1, max=50)),  # noqa: E731
                                validate=validate.Length(max=20), allow_none=True, **kw)


class IsoDate(fields.Date):
    """A date (``2025-02-21``); also serialises one already in ISO form (stored JSON)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            value = dt.date.fromisoformat(value[:10])
        return super()._serialize(value, attr, obj, **kwargs)


class Time(tf.UtcDateTime):
    """A UTC time (``2025-02-05T10:30:00.000Z``) between 1900 and 2999: every backend stores
    it, and an extreme offset can't overflow the conversion to UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            result = super()._deserialize(value, attr, data, **kwargs)
        except OverflowError:
            raise ValidationError("out of range") from None
        if not 1900 <= result.year <= 2999:
            raise ValidationError("must be between 1900 and 2999")
        return result


class Day(fields.Date):
    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if not 1900 <= result.year <= 2999:
            raise ValidationError("must be between 1900 and 2999")
        return result
