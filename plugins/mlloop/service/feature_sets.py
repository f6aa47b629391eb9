"""Declared feature sets: a user's stream may send extra numeric and categorical features with
its ideas, under a feature-set version it declares once. The model registry keys models by
``feature_set_version``: a model trained on a declared set serves the ideas scored under it,
and the built-in set (``domain.features.FEATURE_SET_VERSION``) has no extras.

A version is one definition for everyone (models are system-wide): declaring it again with the
same extras returns it, with other extras is 409 ``feature_set_exists``. No Flask.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re

import sqlalchemy as sa

from app import errors
from app.db import is_duplicate_key, utcnow
from plugins.mlloop.domain.features import DEFAULT_FEATURE_LIST, FEATURE_SET_VERSION, SNAPSHOT_COLUMNS
from plugins.mlloop.tables import ml_feature_sets

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_EXTRAS = 50
MAX_CATEGORY_LENGTH = 64
RESERVED = frozenset(DEFAULT_FEATURE_LIST) | frozenset(SNAPSHOT_COLUMNS) | {
    "idea_id", "decision_time", "label_time", "regime", "profit_tier", "profitable", "r2r_achieved",
    "pnl", "id", "user_id", "tracked_idea_id", "decision_id", "recorded_at", "extra_features"}


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    version: str
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    @property
    def extras(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def builtin(self) -> bool:
        return self.version == FEATURE_SET_VERSION

    def clean(self, values: dict | None, field: str) -> dict | None:
        """An idea's extra values checked against the declaration: unknown names, a non-number
        for a numeric feature or a non-string for a categorical one are 422 naming the field;
        missing names are missing values (None). None for the built-in set."""
        values = values or {}
        if self.builtin:
            if values:
                raise errors.field_error(field, "extra features need a declared feature_set_version")
            return None
        unknown = sorted(set(values) - set(self.extras))
        if unknown:
            raise _nested(f"{field}.{unknown[0]}", f"not a feature of feature set {self.version!r} "
                                                   f"(it declares {', '.join(self.extras) or 'none'})")
        out = {}
        for name in self.numeric:
            v = values.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(float(v))):
                raise _nested(f"{field}.{name}", "a numeric feature: a finite number or null")
            out[name] = None if v is None else float(v)
        for name in self.categorical:
            v = values.get(name)
            if v is not None and (not isinstance(v, str) or not 0 < len(v) <= MAX_CATEGORY_LENGTH):
                raise _nested(f"{field}.{name}", f"a categorical feature: a string of 1..{MAX_CATEGORY_LENGTH} "
                                                 "characters or null")
            out[name] = v
        return out


BUILTIN = FeatureSet(FEATURE_SET_VERSION)


def _nested(path: str, message: str) -> errors.Unprocessable:
    """A 422 naming a nested field (``ideas.3.features.my_edge``) in webargs' nested shape."""
    node: dict = {}
    parts = path.split(".")
    cur = node
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = [message]
    return errors.Unprocessable(f"{path}: {message}", errors={"json": node})


def _row(r) -> dict:
    m = dict(r._mapping)
    for k in ("numeric", "categorical"):
        if isinstance(m[k], str):
            m[k] = json.loads(m[k])
    return m


def _of(row: dict) -> FeatureSet:
    return FeatureSet(row["version"], tuple(row["numeric"]), tuple(row["categorical"]))


def declare(conn, user_id: int, data: dict) -> tuple[dict, bool]:
    """Declare a feature set: ``{"version", "numeric": [...], "categorical": [...],
    "description"?}``. Returns (the row, created). 422 on a bad or clashing name, 409
    ``feature_set_exists`` when the version already means other extras."""
    version = data["version"]
    if version == FEATURE_SET_VERSION:
        raise errors.field_error("version", f"{FEATURE_SET_VERSION!r} is the built-in feature set")
    numeric, categorical = list(data.get("numeric") or []), list(data.get("categorical") or [])
    names = numeric + categorical
    for field, group in (("numeric", numeric), ("categorical", categorical)):
        for i, name in enumerate(group):
            if not NAME.match(name):
                raise _nested(f"{field}.{i}", "a feature name: lowercase letters, digits, _ (1-40, a letter first)")
            if name in RESERVED:
                raise _nested(f"{field}.{i}", f"{name!r} is a built-in feature or column")
    if len(set(names)) != len(names):
        raise errors.field_error("numeric", "feature names must be unique across numeric and categorical")
    if not names:
        raise errors.field_error("numeric", "declare at least one extra feature")
    if len(names) > MAX_EXTRAS:
        raise errors.field_error("numeric", f"at most {MAX_EXTRAS} extra features")
    existing = conn.execute(sa.select(ml_feature_sets).where(ml_feature_sets.c.version == version)).first()
    if existing is not None:
        row = _row(existing)
        if (row["numeric"], row["categorical"]) != (numeric, categorical):
            raise errors.Conflict(f"feature set {version!r} is already declared with other features",
                                  code="feature_set_exists", current=row)
        return row, False
    row = dict(version=version, user_id=user_id, numeric=numeric, categorical=categorical,
               description=data.get("description"), created_at=utcnow())
    try:
        with conn.begin_nested():
            conn.execute(ml_feature_sets.insert().values(**row))
    except sa.exc.IntegrityError as exc:
        if is_duplicate_key(exc):
            raise errors.Conflict(f"feature set {version!r} was declared concurrently; retry",
                                  code="feature_set_exists")
        raise
    return row, True


def get(conn, version: str) -> dict:
    r = conn.execute(sa.select(ml_feature_sets).where(ml_feature_sets.c.version == version)).first()
    if r is None:
        raise errors.NotFound(f"no feature set {version!r}")
    return _row(r)


def list_sets(conn) -> list[dict]:
    return [_row(r) for r in conn.execute(sa.select(ml_feature_sets).order_by(ml_feature_sets.c.version))]


def resolve(conn, version: str | None, field: str = "feature_set_version") -> FeatureSet:
    """The feature set of ``version`` (None: the built-in one); 422 naming ``field`` when
    undeclared."""
    if version is None or version == FEATURE_SET_VERSION:
        return BUILTIN
    r = conn.execute(sa.select(ml_feature_sets).where(ml_feature_sets.c.version == version)).first()
    if r is None:
        raise errors.field_error(field, f"no feature set {version!r}: declare it (POST /api/ml/feature-sets)")
    return _of(_row(r))


def known(conn, version: str) -> FeatureSet | None:
    """The feature set of ``version`` if it is the built-in one or declared, else None."""
    try:
        return resolve(conn, version)
    except errors.Unprocessable:
        return None
