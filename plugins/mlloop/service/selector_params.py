"""``selector_params``: the versioned rule-score weights of each user (one active version;
version 1, the defaults, is created on first use). No Flask."""
from __future__ import annotations

import json

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, utcnow
from plugins.mlloop.domain import selector_params as sp
from plugins.mlloop.tables import selector_params


def _params_of(row) -> sp.SelectorParams:
    m = row._mapping
    weights = m["weights"] if not isinstance(m["weights"], str) else json.loads(m["weights"])
    consts = m["constants"] if not isinstance(m["constants"], str) else json.loads(m["constants"])
    return sp.SelectorParams.from_row({"version": m["version"], "weights": weights, **consts})


def _params_out(row) -> dict:
    m = dict(row._mapping)
    for k in ("weights", "constants"):
        if isinstance(m[k], str):
            m[k] = json.loads(m[k])
    return m


def _params_row(user_id: int, params: sp.SelectorParams, active: bool, note: str | None) -> dict:
    data = params.to_row()
    weights = data.pop("weights")
    data.pop("version")
    return dict(user_id=user_id, version=params.version, weights=weights, constants=data,
                active=active, note=note, created_at=utcnow())


def active_params(conn, user_id: int) -> sp.SelectorParams:
    """The user's active selector_params; version 1 (the defaults) is created on first use."""
    t = selector_params.c
    r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.active.is_(True))).first()
    if r is not None:
        return _params_of(r)
    try:
        with conn.begin_nested():
            conn.execute(selector_params.insert().values(
                **_params_row(user_id, sp.DEFAULT_SELECTOR_PARAMS, True, "defaults")))
    except sa.exc.IntegrityError as exc:
        if not is_duplicate_key(exc):
            raise
        r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.active.is_(True))).first()
        if r is not None:
            return _params_of(r)
    return sp.DEFAULT_SELECTOR_PARAMS


def params_version(conn, user_id: int, version: int) -> sp.SelectorParams | None:
    t = selector_params.c
    r = conn.execute(sa.select(selector_params).where(t.user_id == user_id, t.version == version)).first()
    return _params_of(r) if r is not None else None


def list_params(conn, user_id: int) -> list[dict]:
    active_params(conn, user_id)
    t = selector_params.c
    return [_params_out(r) for r in conn.execute(
        sa.select(selector_params).where(t.user_id == user_id).order_by(t.version))]


def create_params(conn, user_id: int, data: dict) -> dict:
    """A new selector_params version (the next integer), active from now on."""
    active_params(conn, user_id)
    t = selector_params.c
    last = conn.execute(sa.select(sa.func.max(t.version)).where(t.user_id == user_id)).scalar() or 0
    consts = {k: v for k, v in data.items() if k not in ("weights", "note")}
    try:
        params = sp.SelectorParams(version=last + 1, weights=data["weights"], **consts)
    except sp.InvalidSelectorParams as exc:
        raise errors.field_error("weights" if "weight" in str(exc) else "constants", str(exc))
    conn.execute(selector_params.update().where(t.user_id == user_id, t.active.is_(True)).values(active=False))
    row = _params_row(user_id, params, True, data.get("note"))
    try:
        with conn.begin_nested():
            conn.execute(selector_params.insert().values(**row))
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise errors.Conflict("another selector_params version was created concurrently; retry")
        raise
    return _params_out(conn.execute(sa.select(selector_params).where(
        t.user_id == user_id, t.version == params.version)).first())
