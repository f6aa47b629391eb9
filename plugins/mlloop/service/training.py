"""Training as a use case: load every user's settled ideas, walk-forward train, register the
model (status validating). One :func:`train` for the API, the CLI and background jobs: it
loads in one read transaction, fits with none open, registers in another, and reports
``progress(fraction, message)``. No Flask."""
from __future__ import annotations

import contextlib
from typing import Callable, Mapping

from app import errors
from plugins.mlloop.service import feature_sets, registry, training_data

Progress = Callable[[float, str], None]

# The loop's procedure (docs/mlloop-models.md): expanding walk-forward windows (every window
# trains on all earlier days, at least ``train_days``), sub-models only where a regime earned
# its place, day-level features left out while training spans < 60 days, and the
# shuffled-label control run with every training (the promotion gates compare with it).
TRAIN_DEFAULTS = dict(window="expanding", train_days=10, val_days=2, step_days=2, embargo_days=1.0,
                      min_train_samples=500, max_windows=10, min_regime_samples=500,
                      regime_min_days=10, regime_min_val_rows=200, regime_min_improvement=0.01,
                      day_feature_min_days=60, control=True, calibration="auto")
MIN_ROWS = 50


class InTransaction:
    """An open connection presented as a database: ``read()`` and ``transaction()`` both yield
    it, so the whole use case runs in the caller's transaction (a request's, a test's)."""

    def __init__(self, conn):
        self.conn = conn

    @contextlib.contextmanager
    def read(self):
        yield self.conn

    @contextlib.contextmanager
    def transaction(self):
        yield self.conn


def as_database(db):
    """``db`` if it opens transactions itself (``app.db.Database``), else an open connection
    wrapped in :class:`InTransaction`."""
    return db if hasattr(db, "transaction") and hasattr(db, "read") else InTransaction(db)


def train_frame(frame, *, params: Mapping | None = None, options: Mapping | None = None,
                progress=None, feature_list=None, cat_features=None):
    """Walk-forward train on a prepared frame (``ml.train.train_model`` with our defaults);
    ``progress(done, total, message)`` as the pure pipeline reports it."""
    import pandas as pd

    from plugins.mlloop.ml.train import train_model

    o = {**TRAIN_DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    feature_list = training_data.FEATURE_LIST if feature_list is None else feature_list
    cat_features = training_data.CAT_FEATURES if cat_features is None else cat_features
    return train_model(
        frame, feature_list, cat_features=list(cat_features), score_column="original_score",
        params=params, window=o["window"], train_days=int(o["train_days"]),
        val_days=int(o["val_days"]), step_days=int(o["step_days"]),
        embargo=pd.Timedelta(days=float(o["embargo_days"])),
        min_train_samples=int(o["min_train_samples"]), max_windows=o["max_windows"],
        calibration=o["calibration"], regime_column=training_data.REGIME_COLUMN,
        min_regime_samples=int(o["min_regime_samples"]), regime_min_days=int(o["regime_min_days"]),
        regime_min_val_rows=int(o["regime_min_val_rows"]),
        regime_min_improvement=float(o["regime_min_improvement"]),
        day_feature_min_days=int(o["day_feature_min_days"]), control=bool(o["control"]),
        progress=progress)


def train(db, *, params: Mapping | None = None, options: Mapping | None = None,
          regime: str | None = None, progress: Progress | None = None,
          actor_user_id: int | None = None, description: str | None = None, frame=None,
          min_rows: int = MIN_ROWS, feature_set_version: str | None = None) -> dict:
    """Train on every user's settled ideas (``regime``: only that VIX regime's, registered as
    a candidate champion for that regime) and register the result (status validating).
    ``feature_set_version``: the ideas scored under a declared feature set, with its extra
    features (default: the built-in set); the model serves that set's ideas.

    ``db``: an ``app.db.Database`` (load in a read transaction, fit with none open, register
    in a write transaction: a long fit holds no lock) or an open connection (everything in
    the caller's transaction). ``progress(fraction 0..1, message)``: loading, each
    walk-forward window, the final fit, registration. Errors: 409 ``insufficient_data``
    under ``min_rows`` ideas, 409 ``training_failed`` when the data cannot be fitted."""
    db = as_database(db)
    report = progress or (lambda fraction, message: None)
    report(0.0, "loading settled ideas")
    with db.read() as c:
        fset = feature_sets.resolve(c, feature_set_version)
        if frame is None:
            frame = training_data.load_training_frame(c, regime=regime, feature_set=fset)
    names, cats = training_data.feature_columns(fset)
    if len(frame) < min_rows:
        raise errors.InvalidState(
            f"only {len(frame)} settled ideas with features"
            + (f" in regime {regime}" if regime else "") + f"; need at least {min_rows}",
            code="insufficient_data")
    report(0.05, f"{len(frame)} settled ideas")

    def windows(done, total, message):
        report(0.05 + 0.9 * done / max(total, 1), message)

    try:
        model = train_frame(frame, params=params, options=options, progress=windows,
                            feature_list=names, cat_features=cats)
    except ValueError as exc:
        raise errors.InvalidState(f"training failed: {exc}", code="training_failed")
    with db.transaction() as c:
        row = registry.register_model(
            c, model, regime=regime, dataset_hash=training_data.dataset_hash(frame, names),
            reference=training_data.reference_sample(frame, model), actor_user_id=actor_user_id,
            description=description, feature_set_version=fset.version)
    report(1.0, f"registered model {row['id']}")
    return row
