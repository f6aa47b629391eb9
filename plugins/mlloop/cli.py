"""``tradeloop ml ...``: the simulated market and the daily-performance job (part 1), plus
part 2's admin commands (``admin_cli.COMMANDS``).

    tradeloop ml simulate --days N --ideas-per-day K --seed S [--user NAME] [--ledger all|traded]
    tradeloop ml materialize [--user NAME]
"""
from __future__ import annotations

import json
import time

import click
from flask import current_app
from flask.cli import AppGroup

from bus.envelope import JSONEncoder
from plugins.mlloop import admin_cli, outcomes, simulation

ml = AppGroup("ml", help="ML feedback loop: simulated market, daily performance, models.")


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
    ext = current_app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        user_id = _user_id(c, user_name, create=True)
    started = time.perf_counter()
    with click.progressbar(length=days * ideas_per_day, label=f"simulating {days} day(s)") as bar:
        summary = simulation.run(ext, user_id, days=days, ideas_per_day=ideas_per_day, seed=seed,
                                 ledger=ledger, progress=bar.update, consume=False)
    click.echo("running the consumers ...")
    t0 = time.perf_counter()
    summary.consumed = simulation.drain(ext)
    summary.seconds["consumers"] += time.perf_counter() - t0
    summary.seconds["total"] = time.perf_counter() - started
    click.echo(json.dumps({"user": user_name, "user_id": user_id, **summary.as_dict()}, cls=JSONEncoder, indent=2))


@ml.command("materialize")
@click.option("--user", "user_name", default=None, help="one user (default: everyone)")
def materialize(user_name):
    """Rebuild daily_performance from pnl_events (the consumer keeps it current incrementally)."""
    ext = current_app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        user_id = _user_id(c, user_name, create=False) if user_name else None
        n = outcomes.materialize(c, user_id)
    click.echo(f"{n} day(s) materialised")


for _cmd in admin_cli.COMMANDS:
    ml.add_command(_cmd)
