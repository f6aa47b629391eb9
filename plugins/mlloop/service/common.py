"""What the mlloop use cases share: the topic names, the feature columns a decision records
(and the check that they fit their ``ml_feature_snapshots`` columns), id derivation and
chunked SQL helpers."""
from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Sequence

import sqlalchemy as sa
from optionsmath.decimals import cents

from app import errors
from plugins.mlloop import events
from plugins.mlloop.domain import features as fx
from plugins.mlloop.tables import ml_feature_snapshots

# The topic names (the Topic objects, with their schemas, are in plugins.mlloop.events).
DECISIONS = events.DECISIONS.name
FEATURES = events.FEATURES.name
PNL = events.PNL.name

NAMESPACE = uuid.UUID("0b8f2d3e-6c1a-5e47-9a2b-4d7c1f0e8a91")

CENT = Decimal("0.01")

CHUNK = 1000

STRATEGY_COLUMNS = ("strategy_type", "side", "direction", "dte", "width", "strike_vs_spot", "original_score")

FEATURE_COLUMNS = tuple(c for c in fx.SNAPSHOT_COLUMNS) + STRATEGY_COLUMNS


def chunks(seq: Sequence, n: int = CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def dec2(x) -> Decimal | None:
    """A score as stored (2 places): a float is rounded as a float first (what replay compares);
    None and NaN stay None."""
    if x is None:
        return None
    return cents(round(x, 2) if isinstance(x, float) else x)


def tracked_idea_id(user_id: int, idea_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"idea:{user_id}:{idea_id}"))


def decision_key(user_id: int, idea_id: str, context_id: str, params_version: int) -> str:
    return hashlib.sha256(f"{user_id}\x1f{idea_id}\x1f{context_id}\x1f{params_version}".encode()).hexdigest()


def decision_id_of(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "decision:" + key))


def feature_snapshot_id_of(decision_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "features:" + decision_id))


def _column_limit(col: str) -> float | None:
    typ = ml_feature_snapshots.c[col].type
    if isinstance(typ, sa.Numeric) and typ.precision:
        return 10.0 ** (typ.precision - typ.scale)
    return None

_LIMITS = {c: _column_limit(c) for c in FEATURE_COLUMNS if c in ml_feature_snapshots.c}


def check_fits(features: dict, field: str) -> None:
    """A feature that would not fit its ml_feature_snapshots column is bad input (422)."""
    for col, limit in _LIMITS.items():
        v = features.get(col)
        if limit is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= limit:
            raise errors.field_error(field, f"{col} would be {v}, outside its range (|x| < {limit:g})")


def insert_new(conn, table, rows: dict[str, dict]) -> int:
    ids = list(rows)
    for part in chunks(ids):
        for (have,) in conn.execute(sa.select(table.c.id).where(table.c.id.in_(part))):
            rows.pop(have, None)
    new = list(rows.values())
    for part in chunks(new, 5000):
        conn.execute(table.insert(), part)
    return len(new)
