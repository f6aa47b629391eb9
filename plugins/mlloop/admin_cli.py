"""``tradeloop ml ...`` admin commands of the model registry, drift and experiments.

Part 1's plugin adds ``COMMANDS`` to its ``ml`` group. Commands run in the app context and
open their own transactions; training loads in one, fits outside any, stores in another,
so a long fit holds no database lock.
"""
from __future__ import annotations

import json

import click
from flask import current_app

from app import errors
from app.lazy import lazy_module

# pandas/scipy/CatBoost behind it: imported when a command runs, not for `tradeloop --help`.
modelops = lazy_module("plugins.mlloop.modelops")


def _db():
    return current_app.extensions["tradeloop"].db


def _echo_json(obj) -> None:
    click.echo(json.dumps(modelops._jsonable(obj), indent=2, default=str))


def _fail(exc: errors.DomainError):
    raise click.ClickException(f"{exc.code}: {exc.message}")


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
    db = _db()
    with db.read() as c:
        frame = modelops.load_training_frame(c, regime=regime)
    click.echo(f"{len(frame)} settled ideas with features"
               + (f" in regime {regime}" if regime else ""))
    if len(frame) < 50:
        raise click.ClickException("not enough settled ideas to train (need 50)")
    state = {"bar": None, "done": 0}

    def progress(done, total, message):
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label="training",
                                             item_show_func=lambda m: m)
            state["bar"].__enter__()
        state["bar"].update(done - state["done"], message)
        state["done"] = done

    try:
        model = modelops.train_frame(frame, params=params, options=options, progress=progress)
    except ValueError as exc:
        raise click.ClickException(f"training failed: {exc}")
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
    with db.transaction() as c:
        row = modelops.register_model(c, model, regime=regime,
                                      dataset_hash=modelops.dataset_hash(frame),
                                      reference=modelops.reference_sample(frame, model),
                                      description=description)
    agg = model.metrics.get("aggregate") or {}
    click.echo(f"registered model {row['id']} ({row['model_name']} v{row['model_version']}, "
               f"{row['status']}): auc_ovr={agg.get('auc_ovr')}, "
               f"rule_auc_profitable={agg.get('rule_auc_profitable')}, "
               f"score_auc_profitable={agg.get('score_auc_profitable')}")


@click.command("models")
@click.option("--status", type=click.Choice(["training", "validating", "champion", "challenger", "retired"]))
def models_cmd(status):
    """List registered model versions."""
    with _db().read() as c:
        rows = modelops.list_models(c, status=status)
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
            row = modelops.promote(c, model_id, reason=reason)
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
            row = modelops.rollback(c, regime=regime, reason=reason)
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
            rep = modelops.check_drift(c, model_id=model_id, regime=regime, days=days,
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
            e = modelops.create_experiment(c, {"name": name, "challenger_model_id": challenger_model_id,
                                               **opts})
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"experiment {e['id']} running: champion {e['champion_model_id']} vs "
               f"challenger {e['challenger_model_id']} at {e['traffic_split']:.0%}")


@experiment_group.command("list")
def experiment_list():
    """List experiments."""
    with _db().read() as c:
        for e in modelops.list_experiments(c):
            click.echo(f"{e['id']:>4} {e['experiment_name']:<30} {e['status']:<9} "
                       f"{e['champion_model_id']} vs {e['challenger_model_id']} winner={e['winner']}")


@experiment_group.command("show")
@click.argument("experiment_id", type=int)
def experiment_show(experiment_id):
    """Show an experiment with its live evaluation (SRM, Welch, stopping)."""
    try:
        with _db().read() as c:
            _echo_json(modelops.get_experiment(c, experiment_id))
    except errors.DomainError as exc:
        _fail(exc)


@experiment_group.command("check")
def experiment_check():
    """Run the stopping rules on every running experiment (schedule this)."""
    with _db().transaction() as c:
        for r in modelops.check_experiments(c):
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
            e = modelops.conclude_experiment(c, experiment_id, promote_winner=not no_promote,
                                             reason=reason)
    except errors.DomainError as exc:
        _fail(exc)
    click.echo(f"experiment {e['id']} concluded: winner={e['winner']} p={e['p_value']} "
               f"promoted={(e['conclusion'] or {}).get('promoted_model_id')}")


@click.command("checklist")
def checklist_cmd():
    """The go-live checklist (the mid-week plan's six criteria)."""
    with _db().read() as c:
        out = modelops.go_live_checklist(c)
    for item in out["criteria"]:
        click.echo(f"[{'x' if item['passed'] else ' '}] {item['title']}: {json.dumps(item['value'], default=str)}")
    click.echo(f"{out['passed']}/{out['total']} passed")


@click.command("settings")
@click.option("--ml-weight", type=click.FloatRange(0, 1), default=None)
@click.option("--exploration-rate", type=click.FloatRange(0, 1), default=None)
def settings_cmd(ml_weight, exploration_rate):
    """Show or change the blend weight (0 = shadow) and the exploration rate."""
    values = {k: v for k, v in dict(ml_weight=ml_weight, exploration_rate=exploration_rate).items()
              if v is not None}
    with _db().transaction() as c:
        out = modelops.update_settings(c, values) if values else modelops.get_settings(c)
    _echo_json(out)


COMMANDS: list = [train_cmd, models_cmd, promote_cmd, rollback_cmd, drift_cmd, experiment_group,
                  checklist_cmd, settings_cmd]
