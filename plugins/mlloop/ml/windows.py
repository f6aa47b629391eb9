"""Walk-forward windows over trading days, with purging and embargo (López de Prado,
*Advances in Financial ML*, ch. 7). Pure: numpy and pandas only. See docs/mlloop-models.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plugins.mlloop.ml.data import NAT, as_utc_ns, from_ns, iso, to_ns


WINDOW_KINDS = ("sliding", "expanding")


@dataclass(frozen=True)
class Window:
    """One walk-forward split. Index arrays are positions (``iloc``) into the input frame."""

    index: int
    train_start: pd.Timestamp
    val_start: pd.Timestamp  # also the (exclusive) end of the training range
    val_end: pd.Timestamp  # exclusive
    train_idx: np.ndarray
    val_idx: np.ndarray
    purged_idx: np.ndarray
    embargoed_idx: np.ndarray

    def describe(self) -> dict:
        return {
            "window": self.index,
            "train_start": iso(self.train_start),
            "val_start": iso(self.val_start),
            "val_end": iso(self.val_end),
            "n_train": int(len(self.train_idx)),
            "n_val": int(len(self.val_idx)),
            "n_purged": int(len(self.purged_idx)),
            "n_embargoed": int(len(self.embargoed_idx)),
        }


def purge_and_embargo(
    decision_time: pd.Series | np.ndarray,
    label_time: pd.Series | np.ndarray,
    train_idx: np.ndarray,
    val_start: pd.Timestamp,
    val_end: pd.Timestamp,
    embargo: pd.Timedelta = pd.Timedelta(0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split candidate training positions into (kept, purged, embargoed).

    Purged: the row's information interval ``[decision_time, label_time]`` overlaps the
    validation interval ``[val_start, val_end)`` -- i.e. ``decision_time < val_end`` and
    ``label_time >= val_start``. A missing label_time counts as "not known yet" (+inf).
    Embargoed: not purged, and ``val_end <= decision_time < val_end + embargo`` (López de
    Prado's embargo on rows just after the test set, whose features may still carry the
    test period's information through serial correlation).
    """
    dt = as_utc_ns(decision_time)
    lt = as_utc_ns(label_time)
    idx = np.asarray(train_idx, dtype=np.int64)
    d = dt[idx]
    lab = lt[idx]
    vs, ve = to_ns(val_start), to_ns(val_end)
    emb = int(pd.Timedelta(embargo).value)
    label_unknown = lab == NAT
    overlaps = (d < ve) & ((lab >= vs) | label_unknown)
    embargoed = ~overlaps & (d >= ve) & (d < ve + emb)
    kept = ~overlaps & ~embargoed
    return idx[kept], idx[overlaps], idx[embargoed]


def walk_forward_windows(
    data: pd.DataFrame,
    *,
    train_days: int = 5,
    val_days: int = 1,
    step_days: int = 1,
    embargo: pd.Timedelta | str = "1D",
    min_train_samples: int = 0,
    max_windows: int | None = None,
    window: str = "sliding",
) -> list[Window]:
    """Walk-forward windows over the trading days present in ``data.decision_time``.

    Days are UTC dates that have at least one idea (so weekends and holidays do not eat a
    window). ``window="sliding"``: window *i* trains on ``train_days`` days, validates on the
    next ``val_days`` days, and the next window starts ``step_days`` later.
    ``window="expanding"``: every window trains on all the days before its validation block
    (at least ``train_days`` of them), so training spans more and more days and day-level
    features cannot stand in for the per-idea signal as easily. Training rows are then purged and
    embargoed against the validation interval (:func:`purge_and_embargo`), so no training
    row's label_time reaches the validation start. Windows whose training set ends up
    smaller than ``min_train_samples`` or whose validation set is empty are skipped.
    ``max_windows`` keeps the most recent ones.
    """
    if train_days < 1 or val_days < 1 or step_days < 1:
        raise ValueError("train_days, val_days and step_days must be >= 1")
    if window not in WINDOW_KINDS:
        raise ValueError(f"window must be one of {WINDOW_KINDS}, not {window!r}")
    dt = as_utc_ns(data["decision_time"])
    lt = as_utc_ns(data["label_time"]) if "label_time" in data else np.full(len(dt), NAT)
    day_ns = 86_400 * 10**9
    days = np.unique(dt // day_ns) * day_ns
    embargo = pd.Timedelta(embargo)
    windows: list[Window] = []
    last_start = len(days) - train_days - val_days
    for start in range(0, last_start + 1, step_days):
        train_start = days[0] if window == "expanding" else days[start]
        val_start = days[start + train_days]
        val_end = days[start + train_days + val_days - 1] + day_ns
        candidates = np.flatnonzero((dt >= train_start) & (dt < val_start))
        kept, purged, embargoed = purge_and_embargo(
            dt, lt, candidates, from_ns(val_start), from_ns(val_end), embargo
        )
        val_idx = np.flatnonzero((dt >= val_start) & (dt < val_end))
        if len(kept) < max(min_train_samples, 1) or len(val_idx) == 0:
            continue
        windows.append(
            Window(len(windows), from_ns(train_start), from_ns(val_start), from_ns(val_end),
                   kept, val_idx, purged, embargoed)
        )
    if max_windows is not None and len(windows) > max_windows:
        windows = windows[len(windows) - max_windows:]
        windows = [
            Window(i, w.train_start, w.val_start, w.val_end, w.train_idx, w.val_idx,
                   w.purged_idx, w.embargoed_idx)
            for i, w in enumerate(windows)
        ]
    return windows
