"""The scoring plan the selector asks per idea: champions (per regime, else global), running
experiments, settings and low-data regimes, cached per process while the registry's change
counter and the settings are unchanged (``scoring_plan``); and the
in-process cache of loaded scorers (keyed by the model's content hash). No Flask: whether
the request is rules-only is decided by the caller, once, and passed in."""
from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import weakref
from collections import OrderedDict

import sqlalchemy as sa

from app import errors
from plugins.mlloop.domain import features
from plugins.mlloop.ml import abtest
from plugins.mlloop.ml.inference import FastScorer
from plugins.mlloop.service.settings import settings_of, settings_rows
from plugins.mlloop.tables import ml_experiments, ml_models, tracked_ideas


@dataclasses.dataclass(frozen=True)
class Assignment:
    """How one idea is scored: the model (``scorer`` None: rules only), the experiment arm,
    the blend weight, and whether the idea was picked for exploration."""
    scorer: FastScorer | None
    model_id: int | None
    model_version: int | None
    experiment_id: int | None
    arm: str | None
    ml_weight: float
    exploration: bool

_SCORERS: "OrderedDict[str, FastScorer]" = OrderedDict()

_SCORERS_LOCK = threading.Lock()

_MAX_SCORERS = 16


def load_scorer(conn, model_id: int, content_id: str | None = None) -> FastScorer | None:
    """The FastScorer of registry row ``model_id``, cached in-process by the model's content
    hash (loading a blob costs tens of ms; the hash names the exact model, whatever database
    or row it came from, so the cache cannot serve a wrong model). In shadow mode: callers
    blend with the assignment's ``ml_weight``."""
    if content_id is None:
        content_id = conn.execute(sa.select(ml_models.c.content_id)
                                  .where(ml_models.c.id == model_id)).scalar()
        if content_id is None:
            return None
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(content_id)
        if scorer is not None:
            _SCORERS.move_to_end(content_id)
            return scorer
    row = conn.execute(sa.select(ml_models.c.model_blob).where(ml_models.c.id == model_id)).first()
    if row is None:
        return None
    scorer = FastScorer(bytes(row.model_blob), mode="shadow")
    if scorer.model_id != content_id:
        raise errors.Conflict(f"model {model_id}'s blob does not match its content id")
    with _SCORERS_LOCK:
        _SCORERS[content_id] = scorer
        while len(_SCORERS) > _MAX_SCORERS:
            _SCORERS.popitem(last=False)
    return scorer


def stable_unit(*parts) -> float:
    """A uniform number in [0, 1) from SHA-256 of the parts: the same in every process."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ScoringPlan:
    """Champions (per regime, else global), running experiments and settings, loaded once
    per batch of ideas; ``for_idea`` is then pure and cheap."""

    def __init__(self, conn, user_id, *, champions: dict, experiments: list, settings: dict,
                 rules_only: bool = False, low_data_regimes: frozenset = frozenset()):
        self._conn = conn
        self.user_id = user_id
        self.champions = champions  # regime (None = global) -> {"id", "model_version"}
        self.experiments = experiments
        self.settings = settings
        self.rules_only = rules_only
        self.low_data_regimes = low_data_regimes
        self._scorers: dict = {}

    def champion_for(self, regime):
        return self.champions.get(regime) if regime in self.champions else self.champions.get(None)

    def for_idea(self, idea_id: str, regime: str | None = None) -> Assignment:
        exploration = self.should_explore(idea_id, regime)
        weight = float(self.settings["ml_weight"])
        model_row, experiment_id, arm = self.champion_for(regime), None, None
        if self.rules_only:
            # No ML influence and no experiment routing: the champion scores as a shadow only.
            weight, experiments = 0.0, ()
        else:
            experiments = self.experiments
        for exp in experiments:
            if exp["regime"] is not None and exp["regime"] != regime:
                continue
            experiment_id = exp["id"]
            arm = abtest.route(exp["id"], idea_id, float(exp["traffic_split"]))
            side = "challenger" if arm == abtest.CHALLENGER else "champion"
            mid = exp[f"{side}_model_id"]
            model_row = None if mid is None else {"id": mid, "model_version": exp[f"{side}_version"],
                                                  "content_id": exp[f"{side}_content_id"]}
            if exp.get(f"{side}_ml_weight") is not None:
                weight = float(exp[f"{side}_ml_weight"])
            break
        if model_row is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        scorer = self._scorers.get(model_row["id"])
        if scorer is None:
            scorer = load_scorer(self._conn, model_row["id"], model_row["content_id"])
            self._scorers[model_row["id"]] = scorer
        if scorer is None:
            return Assignment(None, None, None, experiment_id, arm, weight, exploration)
        return Assignment(scorer, int(model_row["id"]), int(model_row["model_version"]),
                          experiment_id, arm, weight, exploration)

    def should_explore(self, idea_id: str, regime: str | None) -> bool:
        """The seed's ExplorationManager: ideas of a low-data regime are always tracked, plus
        an ``exploration_rate`` share picked by a stable hash of the idea id (so the same idea
        gets the same answer in every process and on every replay)."""
        if regime is not None and regime in self.low_data_regimes:
            return True
        return stable_unit("explore", idea_id) < float(self.settings["exploration_rate"])


#: How long a process may reuse a loaded plan at most. Champions, running experiments and
#: settings are reloaded as soon as they change (``settings.lock_registry``'s counter and the
#: settings are read by every request); this bound is for what has no counter: the low-data
#: regimes (settlements), and changes made behind the service's back (raw SQL).
PLAN_MAX_AGE = 10.0

_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # engine -> {fsv: _Loaded}
_PLANS_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class _Loaded:
    fingerprint: tuple
    loaded_at: float
    champions: dict
    experiments: tuple
    low_data_regimes: frozenset


def scoring_plan(conn, user_id, *, rules_only: bool = False,
                 feature_set_version: str = features.FEATURE_SET_VERSION) -> ScoringPlan:
    """Champions, running experiments, settings and low-data regimes for a batch of ideas.

    ``rules_only`` is the request's scoring mode, decided once by the caller (the host's
    ``scoring_mode`` hook: breakers, kill switches) and never cached: every assignment then
    has weight 0 and no experiment arm, and the scope's champion still scores as a shadow
    (logged, no influence). Champions and experiments are those of ``feature_set_version``:
    the ideas' features.

    One query per request when nothing changed: the ``ml_settings`` rows (the settings and the
    registry's change counter, bumped by every promotion, rollback, retirement and experiment
    change). While they are unchanged, the plan this process loaded for this database and
    feature set is reused, for at most ``PLAN_MAX_AGE`` seconds; otherwise champions,
    experiments and low-data regimes are read again. The counter is read first, in the
    request's transaction, so a reused plan is never older than the counter it was loaded
    under."""
    rows = settings_rows(conn)
    settings = settings_of(rows)
    fingerprint = tuple(sorted(rows.items()))
    now = time.monotonic()
    with _PLANS_LOCK:
        per_engine = _PLANS.setdefault(conn.engine, {})
        hit = per_engine.get(feature_set_version)
    if hit is None or hit.fingerprint != fingerprint or now - hit.loaded_at >= PLAN_MAX_AGE:
        champions, experiments = _champions_and_experiments(conn, feature_set_version)
        hit = _Loaded(fingerprint, now, champions, tuple(experiments),
                      low_data_regimes(conn, settings["low_data_threshold"]))
        with _PLANS_LOCK:
            per_engine[feature_set_version] = hit
    return ScoringPlan(conn, user_id, champions=hit.champions, experiments=list(hit.experiments),
                       settings=settings, rules_only=rules_only, low_data_regimes=hit.low_data_regimes)


def _champions_and_experiments(conn, feature_set_version: str) -> tuple[dict, list]:
    champions = {}
    for r in conn.execute(sa.select(ml_models.c.id, ml_models.c.model_version, ml_models.c.regime,
                                    ml_models.c.content_id)
                          .where(ml_models.c.status == "champion",
                                 ml_models.c.feature_set_version == feature_set_version)):
        champions[r.regime] = {"id": r.id, "model_version": r.model_version,
                               "content_id": r.content_id}
    experiments = []
    rows = conn.execute(sa.select(ml_experiments).where(ml_experiments.c.status == "running")
                        .order_by(ml_experiments.c.id)).all()
    if rows:
        ids = {i for r in rows for i in (r.champion_model_id, r.challenger_model_id) if i is not None}
        info = {r.id: r for r in conn.execute(
            sa.select(ml_models.c.id, ml_models.c.model_version, ml_models.c.content_id,
                      ml_models.c.feature_set_version)
            .where(ml_models.c.id.in_(ids)))}
        for r in rows:
            e = dict(r._mapping)
            challenger = info.get(e["challenger_model_id"])
            if challenger is None or challenger.feature_set_version != feature_set_version:
                continue  # an experiment routes the ideas of its challenger's feature set only
            for side in ("champion", "challenger"):
                m = info.get(e[f"{side}_model_id"])
                e[f"{side}_version"] = m.model_version if m else None
                e[f"{side}_content_id"] = m.content_id if m else None
            experiments.append(e)
    return champions, experiments


def low_data_regimes(conn, threshold: float) -> frozenset:
    """VIX regimes with fewer than ``threshold`` settled ideas (the seed's "< 50 similar").
    Regimes never seen at all are low-data too (handled by the caller: unknown -> explore)."""
    ti = tracked_ideas
    counts = dict(conn.execute(
        sa.select(ti.c.regime, sa.func.count()).where(ti.c.settlement_status == "settled")
        .group_by(ti.c.regime)).all())
    return frozenset(r for r in features.VIX_REGIMES if counts.get(r, 0) < threshold)
