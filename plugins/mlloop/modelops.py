"""Model operations (mlloop part 2): scoring plans for the selector, training, the registry,
experiments, drift, exploration, evaluation and replay. No Flask: functions take a
SQLAlchemy ``conn`` in an open transaction. Models are system-wide (admin operations).
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict

import sqlalchemy as sa

from plugins.mlloop import abtest
from plugins.mlloop.inference import FastScorer
from plugins.mlloop.registry import (
    SETTINGS_DEFAULTS, ml_experiments, ml_models, ml_settings,
)

# -- the scoring plan (the agreed interface with part 1) ---------------------------------


@dataclasses.dataclass(frozen=True)
class Assignment:
    """How one idea is scored: which model (None: rules only), which experiment arm, the
    blend weight, and whether the idea was picked for exploration."""
    scorer: FastScorer | None
    model_id: int | None
    model_version: int | None
    experiment_id: int | None
    arm: str | None
    ml_weight: float
    exploration: bool


_SCORERS: "OrderedDict[int, FastScorer]" = OrderedDict()
_SCORERS_LOCK = threading.Lock()
_MAX_SCORERS = 16


def load_scorer(conn, model_id: int) -> FastScorer | None:
    """The FastScorer of registry row ``model_id``, cached in-process (loading a blob is slow).
    Rows are immutable once written, so the cache never goes stale."""
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(model_id)
        if scorer is not None:
            _SCORERS.move_to_end(model_id)
            return scorer
    row = conn.execute(sa.select(ml_models.c.model_blob, ml_models.c.model_version)
                       .where(ml_models.c.id == model_id)).first()
    if row is None:
        return None
    scorer = FastScorer(bytes(row.model_blob), mode="shadow")
    with _SCORERS_LOCK:
        _SCORERS[model_id] = scorer
        while len(_SCORERS) > _MAX_SCORERS:
            _SCORERS.popitem(last=False)
    return scorer


def get_settings(conn) -> dict:
    out = dict(SETTINGS_DEFAULTS)
    for r in conn.execute(sa.select(ml_settings.c.name, ml_settings.c.value)):
        out[r.name] = float(r.value)
    return out


def stable_unit(*parts) -> float:
    """A uniform number in [0, 1) from SHA-256 of the parts: the same in every process."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScoringPlan:
    """Champions (per regime, else global) and running experiments, loaded once per batch."""

    def __init__(self, conn, user_id, *, champions: dict, experiments: list, settings: dict,
                 rules_only: bool = False, low_data_regimes: frozenset = frozenset()):
        self._conn = conn
        self.user_id = user_id
        self.champions = champions  # regime (None = global) -> model row (mapping)
        self.experiments = experiments
        self.settings = settings
        self.rules_only = rules_only
        self.low_data_regimes = low_data_regimes

    def champion_for(self, regime):
        return self.champions.get(regime) or self.champions.get(None)

    def for_idea(self, idea_id: str, regime: str | None = None) -> Assignment:
        exploration = self.should_explore(idea_id, regime)
        weight = float(self.settings["ml_weight"])
        if self.rules_only:
            return Assignment(None, None, None, None, None, 0.0, exploration)
        champion = self.champion_for(regime)
        model_row, experiment_id, arm = champion, None, None
        for exp in self.experiments:
            if exp["regime"] is not None and exp["regime"] != regime:
                continue
            arm = abtest.route(exp["id"], idea_id, float(exp["traffic_split"]))
            experiment_id = exp["id"]
            if arm == abtest.CHALLENGER:
                model_row = {"id": exp["challenger_model_id"],
                             "model_version": exp["challenger_version"]}
                if exp.get("challenger_ml_weight") is not None:
                    weight = float(exp["challenger_ml_weight"])
            else:
                if exp["champion_model_id"] is None:
                    model_row = None
                else:
                    model_row = {"id": exp["champion_model_id"],
                                 "model_version": exp["champion_version"]}
                if exp.get("champion_ml_weight") is not None:
                    weight = float(exp["champion_ml_weight"])
            break
        if model_row is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        scorer = load_scorer(self._conn, model_row["id"])
        if scorer is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        return Assignment(scorer, int(model_row["id"]), int(model_row["model_version"]),
                          experiment_id, arm, weight, exploration)

    def should_explore(self, idea_id: str, regime: str | None) -> bool:
        """The seed's ExplorationManager: low-data regimes are always tracked, plus a random
        ``exploration_rate`` share chosen by a stable hash of the idea (reproducible)."""
        if regime is not None and regime in self.low_data_regimes:
            return True
        return stable_unit("explore", idea_id) < float(self.settings["exploration_rate"])


def scoring_plan(conn, user_id) -> ScoringPlan:
    """Load champions, running experiments and settings once for a batch of ideas."""
    settings = get_settings(conn)
    rules_only = False
    try:
        from flask import current_app  # the host's hook, when called inside the app
        rules_only = current_app.extensions["tradeloop"].scoring_mode(conn, user_id) == "rules_only"
    except RuntimeError:
        pass
    champions = {}
    for r in conn.execute(sa.select(ml_models.c.id, ml_models.c.model_version, ml_models.c.regime)
                          .where(ml_models.c.status == "champion")):
        champions[r.regime] = {"id": r.id, "model_version": r.model_version}
    versions = {r.id: r.model_version for r in conn.execute(
        sa.select(ml_models.c.id, ml_models.c.model_version))} if champions or True else {}
    experiments = []
    for r in conn.execute(sa.select(ml_experiments).where(ml_experiments.c.status == "running")
                          .order_by(ml_experiments.c.id)):
        e = dict(r._mapping)
        e["champion_version"] = versions.get(e["champion_model_id"])
        e["challenger_version"] = versions.get(e["challenger_model_id"])
        experiments.append(e)
    return ScoringPlan(conn, user_id, champions=champions, experiments=experiments,
                       settings=settings, rules_only=rules_only)


def list_models(conn, *, status: str | None = None) -> list[dict]:
    cols = [c for c in ml_models.c if c.name not in ("model_blob", "reference")]
    q = sa.select(*cols).order_by(ml_models.c.id.desc())
    if status:
        q = q.where(ml_models.c.status == status)
    return [dict(r._mapping) for r in conn.execute(q)]
