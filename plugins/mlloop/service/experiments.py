"""Champion/challenger experiments: creation (one running per scope), live evaluation (SRM,
Welch on R2R, win rate, drawdown), the stopping-rules job, conclusion (promoting a winning
challenger through the registry) and abort. System-wide (admin). No Flask."""
from __future__ import annotations

from typing import Mapping

import sqlalchemy as sa
from optionsmath.decimals import quantize

from app import errors
from app.db import utcnow
from plugins.mlloop.events import MODELS
from plugins.mlloop.ml import abtest
from plugins.mlloop.ml.jsonable import jsonable
from plugins.mlloop.service.registry import (
    _audit, _dec4, _set_status, champion, feature_set_mismatch, get_model, promote,
)
from plugins.mlloop.service.settings import lock_registry
from plugins.mlloop.service.training_data import decision_frame
from plugins.mlloop.tables import ml_decisions, ml_experiments


def create_experiment(conn, data: Mapping, *, actor_user_id: int | None = None) -> dict:
    """Champion (the scope's current one; none = the rules) vs a challenger model."""
    lock_registry(conn)
    regime = data.get("regime")
    ch = get_model(conn, data["challenger_model_id"], with_metrics=False)
    if ch["status"] not in ("validating", "challenger"):
        raise errors.InvalidState(f"model {ch['id']} is {ch['status']}: only a validating "
                                  "model can be a challenger")
    mismatch = feature_set_mismatch(conn, ch)
    if mismatch:
        raise errors.Conflict(f"model {ch['id']}: {mismatch}", code="feature_set_mismatch")
    running = conn.execute(sa.select(ml_experiments.c.id).where(
        ml_experiments.c.status == "running",
        ml_experiments.c.regime.is_(None) if regime is None else
        sa.or_(ml_experiments.c.regime == regime, ml_experiments.c.regime.is_(None)))).scalar()
    if running is not None:
        raise errors.InvalidState(f"experiment {running} is already running in this scope",
                                  code="experiment_running")
    fsv = ch["feature_set_version"]
    champ = champion(conn, regime, fsv) or (champion(conn, None, fsv) if regime else None)
    if champ is not None and champ["id"] == ch["id"]:
        raise errors.InvalidState("the challenger is the champion")
    now = utcnow()
    values = dict(
        experiment_name=data["name"], description=data.get("description"),
        champion_model_id=champ["id"] if champ else None, challenger_model_id=ch["id"],
        traffic_split=quantize(round(float(data.get("traffic_split", 0.10)), 2), 2),
        status="running", started_at=data.get("started_at") or now, regime=regime,
        champion_ml_weight=data.get("champion_ml_weight"),
        challenger_ml_weight=data.get("challenger_ml_weight"),
        max_duration_days=int(data.get("max_duration_days", 14)),
        min_samples_per_arm=int(data.get("min_samples_per_arm", 100)),
        early_stop_threshold=float(data.get("early_stop_threshold", 0.01)),
        champion_samples=0, challenger_samples=0, created_by=actor_user_id)
    exp_id = conn.execute(ml_experiments.insert().values(**values)).inserted_primary_key[0]
    if ch["status"] != "challenger":
        _set_status(conn, ch["id"], "challenger")
        _audit(conn, ch["id"], "challenger", ch["status"], "challenger", regime=ch["regime"],
               actor=actor_user_id, reason=f"experiment {exp_id}")
    return get_experiment(conn, exp_id, evaluate=False)


def list_experiments(conn, status: str | None = None) -> list[dict]:
    q = sa.select(ml_experiments).order_by(ml_experiments.c.id.desc())
    if status:
        q = q.where(ml_experiments.c.status == status)
    return [_experiment_out(r._mapping) for r in conn.execute(q)]


def _experiment_row(conn, experiment_id: int, lock: bool = False) -> dict:
    q = sa.select(ml_experiments).where(ml_experiments.c.id == experiment_id)
    r = conn.execute(q).first()
    if r is None:
        raise errors.NotFound(f"experiment {experiment_id} not found")
    return dict(r._mapping)


def _experiment_out(m) -> dict:
    d = dict(m)
    for k in ("traffic_split", "champion_win_rate", "challenger_win_rate", "p_value"):
        if d.get(k) is not None:
            d[k] = float(d[k])
    return d


def experiment_samples(conn, exp: Mapping) -> tuple[dict, dict]:
    """(all decisions per arm: counts for the SRM check, settled outcomes per arm)."""
    counts = {abtest.CHAMPION: 0, abtest.CHALLENGER: 0}
    md = ml_decisions
    for arm, n in conn.execute(sa.select(md.c.experiment_arm, sa.func.count())
                               .where(md.c.experiment_id == exp["id"])
                               .group_by(md.c.experiment_arm)):
        if arm in counts:
            counts[arm] = int(n)
    frame = decision_frame(conn, experiment_id=exp["id"])
    frame = frame.dropna(subset=["r2r_achieved", "profitable"])
    frame["profitable"] = frame["profitable"].astype(float)
    outcomes = {a: frame[frame["experiment_arm"] == a] for a in counts}
    return counts, outcomes


def evaluate_experiment(conn, exp: Mapping, now=None) -> dict:
    """Live evaluation: SRM on decision counts, Welch on R2R, win rate, drawdown, and what
    the stopping rules say now."""
    counts, outcomes = experiment_samples(conn, exp)
    split = float(exp["traffic_split"])
    srm = abtest.srm_check(counts, {abtest.CHAMPION: 1.0 - split, abtest.CHALLENGER: split})
    result = abtest.evaluate(outcomes[abtest.CHAMPION], outcomes[abtest.CHALLENGER])
    stop = abtest.check_stopping(exp, outcomes, now or utcnow())
    return jsonable({"decisions": counts, "settled": {a: int(len(o)) for a, o in outcomes.items()},
                      "srm": srm, "result": result,
                      "stopping": {"stop": stop.stop, "reason": stop.reason}})


def get_experiment(conn, experiment_id: int, *, evaluate: bool = True, now=None) -> dict:
    exp = _experiment_row(conn, experiment_id)
    out = _experiment_out(exp)
    out["evaluation"] = evaluate_experiment(conn, exp, now) if evaluate else None
    return out


def check_experiments(conn, *, now=None, actor_user_id=None) -> list[dict]:
    """The stopping-rules job: every running experiment is evaluated; one whose rules say stop
    (max duration, significance, sample-ratio mismatch) is stopped with its result recorded
    and ExperimentConcluded emitted. Promotion stays an admin's decision (conclude)."""
    now = now or utcnow()
    out = []
    for exp in [dict(r._mapping) for r in conn.execute(
            sa.select(ml_experiments).where(ml_experiments.c.status == "running")
            .order_by(ml_experiments.c.id))]:
        counts, outcomes = experiment_samples(conn, exp)
        decision = abtest.check_stopping(exp, outcomes, now)
        result = jsonable(decision.result) if decision.result else None
        values = dict(champion_samples=counts[abtest.CHAMPION],
                      challenger_samples=counts[abtest.CHALLENGER],
                      last_check={"at": now.isoformat(), "stop": decision.stop,
                                  "reason": decision.reason, "result": result})
        if result:
            values.update(_result_columns(result))
        if decision.stop:
            lock_registry(conn)  # a stopped experiment no longer routes: scoring plans reload
            values.update(status="stopped", stop_reason=decision.reason, ended_at=now)
            MODELS.emit(conn, "ExperimentConcluded", aggregate_type="ml_experiment", aggregate_id=str(exp["id"]),
                        user_id=actor_user_id, payload={
                "experiment_id": exp["id"], "winner": values.get("winner"),
                "stop_reason": decision.reason, "p_value": (result or {}).get("p_value"),
                "promoted_model_id": None})
        conn.execute(ml_experiments.update().where(ml_experiments.c.id == exp["id"]).values(**values))
        out.append({"experiment_id": exp["id"], "stop": decision.stop, "reason": decision.reason,
                    "winner": values.get("winner"), "p_value": (result or {}).get("p_value")})
    return out


def _result_columns(result: Mapping) -> dict:
    ch, cl = result.get(abtest.CHAMPION) or {}, result.get(abtest.CHALLENGER) or {}
    p = result.get("p_value")
    winner = result.get("winner")
    if winner == abtest.CHAMPION and not result.get("significant"):
        winner = "no_difference"
    return dict(champion_win_rate=_dec4(ch.get("win_rate")),
                challenger_win_rate=_dec4(cl.get("win_rate")),
                p_value=None if p is None else quantize(round(float(p), 6), 6), winner=winner)


def conclude_experiment(conn, experiment_id: int, *, promote_winner: bool = True,
                        actor_user_id=None, reason=None, now=None) -> dict:
    """Final evaluation; if the challenger won (Welch p < 0.05 and higher mean R2R) and
    ``promote_winner``, it is promoted (the registry's refusals apply); a losing challenger
    goes back to validating."""
    lock_registry(conn)
    exp = _experiment_row(conn, experiment_id)
    if exp["status"] not in ("running", "stopped"):
        raise errors.InvalidState(f"experiment {experiment_id} is {exp['status']}")
    now = now or utcnow()
    ev = evaluate_experiment(conn, exp, now)
    result = ev["result"]
    promoted = None
    if result["winner"] == abtest.CHALLENGER and promote_winner:
        promote(conn, exp["challenger_model_id"], actor_user_id=actor_user_id,
                reason=reason or f"won experiment {experiment_id} (p={result['p_value']:.4g})")
        promoted = exp["challenger_model_id"]
    else:
        ch = get_model(conn, exp["challenger_model_id"], with_metrics=False)
        if ch["status"] == "challenger":
            _set_status(conn, ch["id"], "validating")
            _audit(conn, ch["id"], "experiment_ended", "challenger", "validating",
                   regime=ch["regime"], actor=actor_user_id,
                   reason=f"experiment {experiment_id}: winner {result['winner']}")
    values = dict(status="concluded", ended_at=exp["ended_at"] or now,
                  champion_samples=ev["decisions"][abtest.CHAMPION],
                  challenger_samples=ev["decisions"][abtest.CHALLENGER],
                  conclusion={**ev, "promoted_model_id": promoted, "reason": reason,
                              "concluded_by": actor_user_id},
                  **_result_columns(result))
    conn.execute(ml_experiments.update().where(ml_experiments.c.id == experiment_id).values(**values))
    MODELS.emit(conn, "ExperimentConcluded", aggregate_type="ml_experiment", aggregate_id=str(experiment_id),
                user_id=actor_user_id, payload={
        "experiment_id": experiment_id, "winner": values["winner"],
        "stop_reason": exp["stop_reason"] or "concluded", "p_value": result.get("p_value"),
        "promoted_model_id": promoted})
    return get_experiment(conn, experiment_id, evaluate=False)


def abort_experiment(conn, experiment_id: int, *, actor_user_id=None, reason=None) -> dict:
    lock_registry(conn)
    exp = _experiment_row(conn, experiment_id)
    if exp["status"] not in ("running", "stopped"):
        raise errors.InvalidState(f"experiment {experiment_id} is {exp['status']}")
    conn.execute(ml_experiments.update().where(ml_experiments.c.id == experiment_id)
                 .values(status="aborted", ended_at=utcnow(), stop_reason="aborted",
                         conclusion={"reason": reason, "aborted_by": actor_user_id}))
    ch = get_model(conn, exp["challenger_model_id"], with_metrics=False)
    if ch["status"] == "challenger":
        _set_status(conn, ch["id"], "validating")
        _audit(conn, ch["id"], "experiment_ended", "challenger", "validating", regime=ch["regime"],
               actor=actor_user_id, reason=f"experiment {experiment_id} aborted")
    return get_experiment(conn, experiment_id, evaluate=False)
