"""ML settings (system-wide): the blend weight (0 = shadow), the exploration rate, the low-data
threshold; and the row lock that serialises registry changes. No Flask."""
from __future__ import annotations

from typing import Mapping

import sqlalchemy as sa

from app import errors
from app.db import utcnow
from plugins.mlloop.tables import ml_settings

SETTINGS_DEFAULTS = {
    "ml_weight": 0.0,  # 0 = shadow: scored and logged, ranking unchanged
    "exploration_rate": 0.1,  # the seed's ExplorationManager default
    "low_data_threshold": 50.0,  # the seed's: fewer similar settled ideas -> always explore
    # promotion gates (ml.gates): held-out evidence a model needs before it may serve
    "gate_min_windows": 3.0,
    "gate_min_samples": 200.0,
    "gate_min_skill": 0.0,  # Brier skill score's bootstrap lower bound must exceed this
    "gate_min_skill_over_control": 0.0,  # ... and the shuffled-label control's skill + this
}

_LOCK_ROW = "_registry_lock"  # an ml_settings row whose row lock serialises registry changes


def get_settings(conn) -> dict:
    """The blend weight, exploration rate and low-data threshold (defaults if never set)."""
    out = dict(SETTINGS_DEFAULTS)
    for r in conn.execute(sa.select(ml_settings.c.name, ml_settings.c.value)):
        if r.name in out:
            out[r.name] = float(r.value)
    return out


def update_settings(conn, values: Mapping, *, actor_user_id: int | None = None) -> dict:
    for name, value in values.items():
        if name not in SETTINGS_DEFAULTS:
            raise errors.field_error(name, "unknown setting")
        _upsert_setting(conn, name, float(value), actor_user_id)
    return get_settings(conn)


def _upsert_setting(conn, name: str, value: float, actor_user_id=None) -> None:
    now = utcnow()
    done = conn.execute(ml_settings.update().where(ml_settings.c.name == name)
                        .values(value=value, updated_at=now, updated_by=actor_user_id)).rowcount
    if not done:
        conn.execute(ml_settings.insert().values(name=name, value=value, updated_at=now,
                                                 updated_by=actor_user_id))


def lock_registry(conn) -> None:
    """Serialise promotions, rollbacks and experiment changes: an UPDATE of one row holds its
    lock until commit, so two admins promoting at once take turns (and see each other)."""
    bumped = conn.execute(ml_settings.update().where(ml_settings.c.name == _LOCK_ROW)
                          .values(value=ml_settings.c.value + 1)).rowcount
    if not bumped:  # first use: create it (a concurrent first use fails on the primary key)
        conn.execute(ml_settings.insert().values(name=_LOCK_ROW, value=0.0, updated_at=utcnow()))
