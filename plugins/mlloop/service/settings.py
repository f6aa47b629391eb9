"""ML settings (system-wide): the blend weight (0 = shadow), the exploration rate, the low-data
threshold; and the row lock that serialises registry changes. No Flask."""
from __future__ import annotations

import random
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
    return settings_of(settings_rows(conn))


def settings_rows(conn) -> dict[str, float]:
    """Every ``ml_settings`` row, name -> value, in one query: the settings and the registry's
    change counter (``lock_registry``), which together say whether a cached scoring plan is
    still current."""
    return {r.name: float(r.value) for r in conn.execute(sa.select(ml_settings.c.name, ml_settings.c.value))}


def settings_of(rows: Mapping[str, float]) -> dict:
    """The settings (defaults where never set) from ``settings_rows``."""
    return {name: rows.get(name, default) for name, default in SETTINGS_DEFAULTS.items()}


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
    lock until commit, so two admins promoting at once take turns (and see each other).

    The bump is also the registry's change counter: every change to what a scoring plan reads
    (champions, running experiments) calls this in its transaction, so every process's cached
    plan (``scoring_plan``) is reloaded by the first request that sees the commit. A change
    made another way (raw SQL) must call it too, or waits out ``PLAN_MAX_AGE``."""
    # + 1 and a random fraction: a bump undone by a rollback is never repeated by the next one,
    # so a plan cached inside the undone transaction can never match a later counter.
    bumped = conn.execute(ml_settings.update().where(ml_settings.c.name == _LOCK_ROW)
                          .values(value=ml_settings.c.value + (1.0 + random.random()))).rowcount
    if not bumped:  # first use: create it (a concurrent first use fails on the primary key)
        conn.execute(ml_settings.insert().values(name=_LOCK_ROW, value=0.0, updated_at=utcnow()))
