"""SQL building blocks shared by the bus and the host: column types and commit hooks.

``UtcDateTime`` stores UTC with millisecond precision on every backend; ``Money`` is a
Decimal in storage and in Python (never a float); ``JSONType`` is JSON. ``on_commit``
registers work to run only after a connection's transaction commits.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
import warnings
from decimal import Decimal, ROUND_HALF_EVEN

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

warnings.filterwarnings("ignore", message=".*does \\*not\\* support Decimal.*")
log = logging.getLogger(__name__)

MS = dt.timedelta(milliseconds=1)


def utcnow() -> dt.datetime:
    """Now, UTC, truncated to milliseconds (what every backend stores)."""
    return to_ms(dt.datetime.now(dt.timezone.utc))


def to_ms(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


class UtcDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetime stored as naive UTC with millisecond precision."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=3))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return to_ms(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return to_ms(value.replace(tzinfo=dt.timezone.utc))


class Money(sa.types.TypeDecorator):
    """Decimal money/price, 4 decimal places by default; never a float in Python."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 4):
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self._quantum = Decimal(1).scaleb(-scale)

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return Decimal(str(value)).quantize(self._quantum, rounding=ROUND_HALF_EVEN)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return Decimal(str(value)).quantize(self._quantum, rounding=ROUND_HALF_EVEN)


JSONType = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")


def uuid_column(name: str = "id", **kw) -> sa.Column:
    return sa.Column(name, sa.String(36), **kw)


def on_commit(conn: Connection, fn) -> None:
    """Run ``fn()`` after this connection's transaction commits (never if it rolls back)."""
    callbacks = conn.info.setdefault("after_commit", [])
    callbacks.append(fn)


def run_after_commit(conn: Connection) -> None:
    callbacks = conn.info.get("after_commit") or []
    conn.info["after_commit"] = []
    for fn in callbacks:
        try:
            fn()
        except Exception:  # a notifier must never turn a committed write into an error
            log.exception("after-commit callback failed")


def is_duplicate_key(exc: BaseException) -> bool:
    """True for a unique/primary-key violation on any supported backend."""
    if not isinstance(exc, sa.exc.IntegrityError):
        return False
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "args", [None])[0]
    if code == 1062:  # MySQL/MariaDB ER_DUP_ENTRY
        return True
    text = str(orig).lower()
    return "unique constraint" in text or "duplicate" in text or "primary key" in text
