"""``tradeloop ml ...``: the simulated market, the daily-performance job, and the admin commands
of the model registry, drift and experiments.

    tradeloop ml simulate --days N --ideas-per-day K --seed S [--user NAME] [--ledger all|traded]
    tradeloop ml materialize [--user NAME]
    tradeloop ml train | models | promote | rollback | drift | experiment ... | checklist | settings

Commands run in the app context and open their own transactions; the long ones (training,
the simulator) call the same service functions a background job does, and show their
``progress(fraction, message)`` as a progress bar. The service layer loads on first use, so
``tradeloop --help`` does not import pandas, scipy or CatBoost.
"""
from __future__ import annotations

import json
import time

import click
from flask import current_app
from flask.cli import AppGroup

from app import errors
from bus.envelope import JSONEncoder
from plugins.mlloop import service

ml = AppGroup("ml", help="ML feedback loop: simulated market, daily performance, models.")


def _ext():
    return current_app.extensions["tradeloop"]


def _db():
    return _ext().db


def _echo_json(obj) -> None:
    from plugins.mlloop.ml.jsonable import jsonable
    click.echo(json.dumps(jsonable(obj), indent=2, default=str))


def _fail(exc: errors.DomainError):
    raise click.ClickException(f"{exc.code}: {exc.message}")


class ProgressBar:
    """A ``progress(fraction, message)`` callback drawn as a click progress bar (per mille)."""

    def __init__(self, label: str):
        self.label, self.bar, self.done = label, None, 0

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=1000, label=self.label, item_show_func=lambda m: m)
            self.bar.__enter__()
        step = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.bar.update(max(step - self.done, 0), message)
        self.done = max(step, self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _user_id(conn, name: str, create: bool) -> int:
    from app import auth
    u = auth.user_by_name(conn, name)
    if u is None:
        if not create:
            raise click.ClickException(f"no user {name!r}")
        u, _token = auth.create_user(conn, name)
    return u.id


@ml.command("simulate")
@click.option("--days", type=click.IntRange(1, 500), default=3, show_default=True)
@click.option("--ideas-per-day", type=click.IntRange(1, 200_000), default=20_000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**31), default=1, show_default=True)
@click.option("--user", "user_name", default="simulator", show_default=True,
              help="the user who owns the simulated ideas (created if missing)")
@click.option("--ledger", type=click.Choice(["all", "traded"]), default="all", show_default=True,
              help="marks for every idea (hypothetical outcomes to learn from) or for traded ideas only")
def simulate(days, ideas_per_day, seed, user_name, ledger):
    """Run a synthetic SPX-like market through scoring, fills, the P&L ledger and settlement."""
    from plugins.mlloop.sim import drive
    ext = _ext()
    with ext.db.transaction() as c:
        user_id = _user_id(c, user_name, create=True)
        mode = ext.scoring_mode(c, user_id)   # decided once for the whole run
    started = time.perf_counter()
    bar = ProgressBar(f"simulating {days} day(s)")
    try:
        summary = drive.run(ext.db, user_id, days=days, ideas_per_day=ideas_per_day, seed=seed,
                            ledger=ledger, mode=mode, progress=bar)
    finally:
        bar.close()
    click.echo("running the consumers ...")
    t0 = time.perf_counter()
    summary.consumed = drive.drain(ext)
    summary.seconds["consumers"] += time.perf_counter() - t0
    summary.seconds["total"] = time.perf_counter() - started
    click.echo(json.dumps({"user": user_name, "user_id": user_id, **summary.as_dict()}, cls=JSONEncoder, indent=2))


@ml.command("materialize")
@click.option("--user", "user_name", default=None, help="one user (default: everyone)")
def materialize(user_name):
    """Rebuild daily_performance from pnl_events (the consumer keeps it current incrementally)."""
    with _db().transaction() as c:
        user_id = _user_id(c, user_name, create=False) if user_name else None
        n = service.outcomes.materialize(c, user_id)
    click.echo(f"{n} day(s) materialised")


@click.command("train")
@click.option("--regime", default=None, help="train only this VIX regime's ideas (its own champion scope)")
@click.option("--iterations", type=click.IntRange(1, 5000), default=None)
@click.option("--depth", type=click.IntRange(1, 10), default=None)
@click.option("--learning-rate", type=click.FloatRange(0.001, 1.0), default=None)
@click.option("--seed", "random_seed", type=int, default=None)
@click.option("--train-days", type=click.IntRange(1), default=None)
@click.option("--val-days", type=click.IntRange(1), default=None)
@click.option("--step-days", type=click.IntRange(1), default=None)
@click.option("--embargo-days", type=click.FloatRange(0), default=None)
@click.option("--min-train-samples", type=click.IntRange(1), default=None)
@click.option("--max-windows", type=click.IntRange(1), default=None)
@click.option("--min-regime-samples", type=click.IntRange(1), default=None)
@click.option("--description", default=None)
def train_cmd(regime, iterations, depth, learning_rate, random_seed, description, **options):
    """Train a model (walk-forward, purged, embargoed) and register it as validating."""
    params = {k: v for k, v in dict(iterations=iterations, depth=depth,
                                    learning_rate=learning_rate,
                                    random_seed=random_seed).items() if v is not None}
    bar = ProgressBar("training")
    try:
        row = service.training.train(_db(), params=params, options=options, regime=regime,
                                     description=description, progress=bar)
    except errors.DomainError as exc:
        _fail(exc)
    finally:
        bar.close()
    click.echo(f"registered model {row['id']} ({row['model_name']} v{row['model_version']}, "
               f"{row['status']})")
    for line in training_report(row):
        click.echo(line)


def _f(v, digits=4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def training_report(row: dict) -> list[str]:
    """What the training showed: held-out AUCs, the deployed forecast's Brier per tier beside
    the base rate's, its skill with bootstrap bounds, the control's, the regime decisions
    and the promotion gates."""
    m, g = row["metrics"], row["gates"]
    held, pooled, agg = m.get("held_out") or {}, m.get("pooled") or {}, m.get("aggregate") or {}
    ctrl = m.get("control") or {}
    out = [f"held-out ({m.get('n_windows')} windows, {held.get('n')} ideas, {held.get('n_days')} days): "
           f"auc_ovr={_f(held.get('auc_ovr'), 3)} auc_profitable={_f(held.get('auc_profitable'), 3)} "
           f"score_auc_profitable={_f(pooled.get('score_auc_profitable'), 3)} "
           f"rule_auc_profitable={_f(agg.get('rule_auc_profitable'), 3)}",
           "Brier per tier (deployed, calibrated forecast | base-rate forecast | skill):"]
    for k, t in sorted((held.get("tiers") or {}).items()):
        out.append(f"  tier {k}: {_f(t.get('brier'))} | {_f(t.get('brier_base'))} | {_f(t.get('bss'), 3)}")
    out.append(f"  all tiers: {_f(held.get('brier'))} | {_f(held.get('brier_base'))} | bss "
               f"{_f(held.get('bss'), 3)} (bootstrap {_f(held.get('bss_lower'), 3)}..{_f(held.get('bss_upper'), 3)})")
    out.append(f"shuffled-label control: auc_ovr={_f(ctrl.get('auc_ovr'), 3)} "
               f"auc_profitable={_f(ctrl.get('auc_profitable'), 3)} bss={_f(ctrl.get('bss'), 3)}"
               if ctrl else "shuffled-label control: not run")
    regimes = (m.get("regimes") or {}).get("held_out") or {}
    out.append("regime sub-models: " + (", ".join(
        f"{r} {'kept' if d.get('kept') else 'global serves'}" for r, d in regimes.items()) or "none (global serves)"))
    out.append(f"promotion gates: {'passed' if g['passed'] else 'FAILED'}")
    for gate in g["gates"]:
        out.append(f"  [{'x' if gate['passed'] else ' '}] {gate['name']}: {gate['message']}")
    return out


@click.command("models")
@click.option("--status", type=click.Choice(["training", "validating", "champion", "challenger", "retired"]))
def models_cmd(status):
    """List registered model versions."""
    with _db().read() as c:
        rows = service.registry.list_models(c, status=status)
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['model_name']} v{r['model_version']:<4} {r['status']:<11} "
                   f"regime={r['regime'] or '-':<13} val_auc={r['val_auc']}  "
                   f"fsv={r['feature_set_version']}  data={r['data_start']}..{r['data_end']}")


@click.command("promote")
@click.argument("model_id", type=int)
@click.option("--reason", default=None)
def promote_cmd(model_id, reason):
    """Make MODEL_ID champion of its regime scope (refused on feature-set mismatch or drift)."""
    try:
        with _db().transaction() as c:
            row = service.registry.promote(c, model_id, reason=reason)
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"model {row['id']} is champion ({row['regime'] or 'global'})")


@click.command("rollback")
@click.option("--regime", default=None)
@click.option("--reason", default=None)
def rollback_cmd(regime, reason):
    """Retire the champion and restore the one it replaced."""
    try:
        with _db().transaction() as c:
            row = service.registry.rollback(c, regime=regime, reason=reason)
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"model {row['id']} is champion again ({row['regime'] or 'global'})")


@click.command("drift")
@click.option("--model", "model_id", type=int, default=None, help="default: the champion")
@click.option("--regime", default=None)
@click.option("--days", type=click.FloatRange(0.01), default=5.0)
@click.option("--psi-threshold", type=click.FloatRange(0, min_open=True), default=None)
def drift_cmd(model_id, regime, days, psi_threshold):
    """Check feature and score drift of a model against its training reference."""
    try:
        with _db().transaction() as c:
            rep = service.drift_reports.check_drift(c, model_id=model_id, regime=regime, days=days,
                                       config={"psi_threshold": psi_threshold})
    except errors.DomainError as exc:
        _fail(exc)
    r = rep["report"]
    click.echo(f"report {rep['id']} model {rep['model_id']}: drift_detected={rep['drift_detected']} "
               f"share_drifted={rep['share_drifted']:.2f} score_psi={rep['score_psi']} "
               f"drifted={', '.join(r['drifted_features']) or '-'}")


@click.group("experiment")
def experiment_group():
    """Champion/challenger experiments."""


@experiment_group.command("create")
@click.argument("name")
@click.argument("challenger_model_id", type=int)
@click.option("--split", "traffic_split", type=click.FloatRange(0.01, 0.99), default=0.10)
@click.option("--max-duration-days", type=click.IntRange(1), default=14)
@click.option("--min-samples-per-arm", type=click.IntRange(2), default=100)
@click.option("--early-stop-threshold", type=click.FloatRange(0, 0.5, min_open=True), default=0.01)
@click.option("--regime", default=None)
def experiment_create(name, challenger_model_id, **opts):
    """Start NAME: the champion vs CHALLENGER_MODEL_ID."""
    try:
        with _db().transaction() as c:
            e = service.experiments.create_experiment(c, {"name": name, "challenger_model_id": challenger_model_id,
                                               **opts})
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"experiment {e['id']} running: champion {e['champion_model_id']} vs "
               f"challenger {e['challenger_model_id']} at {e['traffic_split']:.0%}")


@experiment_group.command("list")
def experiment_list():
    """List experiments."""
    with _db().read() as c:
        for e in service.experiments.list_experiments(c):
            click.echo(f"{e['id']:>4} {e['experiment_name']:<30} {e['status']:<9} "
                       f"{e['champion_model_id']} vs {e['challenger_model_id']} winner={e['winner']}")


@experiment_group.command("show")
@click.argument("experiment_id", type=int)
def experiment_show(experiment_id):
    """Show an experiment with its live evaluation (SRM, Welch, stopping)."""
    try:
        with _db().read() as c:
            _echo_json(service.experiments.get_experiment(c, experiment_id))
    except errors.DomainError as exc:
        _fail(exc)


@experiment_group.command("check")
def experiment_check():
    """Run the stopping rules on every running experiment (schedule this)."""
    with _db().transaction() as c:
        for r in service.experiments.check_experiments(c):
            click.echo(f"experiment {r['experiment_id']}: stop={r['stop']} reason={r['reason']} "
                       f"winner={r['winner']} p={r['p_value']}")


@experiment_group.command("conclude")
@click.argument("experiment_id", type=int)
@click.option("--no-promote", is_flag=True, help="do not promote a winning challenger")
@click.option("--reason", default=None)
def experiment_conclude(experiment_id, no_promote, reason):
    """Conclude an experiment (promoting a winning challenger unless --no-promote)."""
    try:
        with _db().transaction() as c:
            e = service.experiments.conclude_experiment(c, experiment_id, promote_winner=not no_promote,
                                             reason=reason)
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"experiment {e['id']} concluded: winner={e['winner']} p={e['p_value']} "
               f"promoted={(e['conclusion'] or {}).get('promoted_model_id')}")


@click.command("checklist")
def checklist_cmd():
    """The go-live checklist (the mid-week plan's six criteria)."""
    with _db().read() as c:
        out = service.evaluation.go_live_checklist(c)
    for item in out["criteria"]:
        click.echo(f"[{'x' if item['passed'] else ' '}] {item['title']}: {json.dumps(item['value'], default=str)}")
    click.echo(f"{out['passed']}/{out['total']} passed")


@click.command("settings")
@click.option("--ml-weight", type=click.FloatRange(0, 1), default=None)
@click.option("--exploration-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--gate-min-windows", type=click.IntRange(0, 1000), default=None,
              help="promotion gate: walk-forward windows a model needs")
@click.option("--gate-min-samples", type=click.IntRange(0), default=None,
              help="promotion gate: held-out ideas a model needs")
@click.option("--gate-min-skill", type=click.FloatRange(-10, 1), default=None,
              help="promotion gate: the Brier skill score's bootstrap lower bound must exceed this")
@click.option("--gate-min-skill-over-control", type=click.FloatRange(-10, 1), default=None,
              help="promotion gate: ... and the shuffled-label control's skill by this")
def settings_cmd(**values):
    """Show or change the blend weight (0 = shadow), the exploration rate and the promotion gates."""
    values = {k: v for k, v in values.items() if v is not None}
    with _db().transaction() as c:
        out = service.settings.update_settings(c, values) if values else service.settings.get_settings(c)
    _echo_json(out)


for _cmd in [train_cmd, models_cmd, promote_cmd, rollback_cmd, drift_cmd, experiment_group,
             checklist_cmd, settings_cmd]:
    ml.add_command(_cmd)
