"""The model's view of the data: class order, label columns, missing values, how features
are presented to CatBoost, and time as int64 nanoseconds.

Shared by training and both scoring paths, so a row converts identically everywhere.
Pure: numpy and pandas only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

# Profit tiers, worst first (the seed's classify_profit_tier): the class order of every
# probability vector this package produces.
CLASS_ORDER: tuple[int, ...] = (0, 1, 2, 3)
TIER_NAMES: tuple[str, ...] = ("big_loss", "small_loss", "small_win", "big_win")
LABEL_COLUMNS: tuple[str, ...] = ("profit_tier", "profitable", "r2r_achieved", "pnl")
GLOBAL = "__global__"  # key of the model used for every regime without its own
# What a missing categorical value becomes, in training and in scoring.
MISSING_CATEGORY = "__missing__"

NAT = np.iinfo(np.int64).min
P_EPS = 1e-12


def infer_cat_features(frame: pd.DataFrame, feature_list: Sequence[str]) -> list[str]:
    """Features whose dtype is object, string or category."""
    return [
        f for f in feature_list
        if f in frame and (isinstance(frame[f].dtype, pd.CategoricalDtype)
                           or pd.api.types.is_object_dtype(frame[f])
                           or pd.api.types.is_string_dtype(frame[f]))
    ]


def prepare_features(frame: pd.DataFrame, feature_list: Sequence[str],
                     cat_features: Sequence[str]) -> pd.DataFrame:
    """Categoricals as str (missing -> ``__missing__``), numerics as float64 (missing -> NaN).

    Element for element the same conversion as :func:`category_value` and ``float()``, which
    the single-idea fast path uses, so a row scores identically either way.
    """
    cats = set(cat_features)
    n = len(frame)
    dtypes = dict(zip(frame.columns, frame.dtypes))
    plain = [f for f in feature_list
             if f not in cats and f in dtypes and pd.api.types.is_numeric_dtype(dtypes[f])
             and not pd.api.types.is_bool_dtype(dtypes[f])]
    # One 2-D conversion for the plain numeric columns: per-column access dominates otherwise.
    block = frame[plain].to_numpy(dtype=float, na_value=np.nan) if plain else None
    where = {f: i for i, f in enumerate(plain)}
    cols = {}
    for f in feature_list:
        if f in where:
            cols[f] = block[:, where[f]]
        elif f not in frame:
            cols[f] = (np.full(n, MISSING_CATEGORY, dtype=object) if f in cats
                       else np.full(n, np.nan))
        elif f in cats:
            values = frame[f].to_numpy(dtype=object)
            missing = pd.isna(values)
            if not missing.any() and pd.api.types.infer_dtype(values, skipna=False) == "string":
                cols[f] = values  # the common case: already all str
            else:
                cols[f] = np.array([MISSING_CATEGORY if m else (v if type(v) is str else str(v))
                                    for v, m in zip(values, missing)], dtype=object)
        else:
            cols[f] = pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=float,
                                                                       na_value=np.nan)
    return pd.DataFrame(cols, index=frame.index, columns=list(feature_list), copy=False)


def category_value(v) -> str:
    """How a categorical value is presented to CatBoost (the same in training and scoring)."""
    if is_missing(v):
        return MISSING_CATEGORY
    return str(v)


def onehot(y) -> np.ndarray:
    y = np.asarray(y)
    return (y[:, None] == np.asarray(CLASS_ORDER)[None, :]).astype(float)


def as_utc_ns(values) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC); NaT -> NAT (which is numpy's NaT bit pattern)."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    s = pd.to_datetime(pd.Series(values), utc=True).astype("datetime64[ns, UTC]")
    return s.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)


def to_ns(ts) -> int:
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.as_unit("ns").value)


def from_ns(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def iso(ts) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False

