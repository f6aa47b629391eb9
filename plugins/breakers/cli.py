"""``tradeloop breakers ...``: the kill switches, limits and status from a terminal.

    tradeloop breakers status --user NAME
    tradeloop breakers kill --kind orders|ml_scoring --reason TEXT (--user NAME | --deployment)
    tradeloop breakers release --kind ... --reason TEXT (--user NAME | --deployment)
    tradeloop breakers set-limit BREAKER LIMIT [--severity S] [--reset R] [--capital C] (--user NAME | --deployment)
    tradeloop breakers clear BREAKER --reason TEXT --user NAME
"""
from __future__ import annotations

import getpass
import json

import click
from flask import current_app
from flask.cli import AppGroup

from app import errors
from bus.envelope import JSONEncoder
from plugins.breakers import engine, service

group = AppGroup("breakers", help="Circuit breakers, trading state and kill switches.")


def _out(value) -> None:
    click.echo(json.dumps(value, cls=JSONEncoder, indent=2))


def _run(fn):
    """Run ``fn(conn)`` in one transaction, turning domain errors into CLI errors."""
    try:
        with current_app.extensions["tradeloop"].db.transaction() as conn:
            return fn(conn)
    except errors.DomainError as exc:
        raise click.ClickException(exc.message)


def _user_id(conn, name: str | None, deployment: bool) -> int | None:
    from app import auth
    if deployment:
        return None
    if not name:
        raise click.UsageError("give --user NAME or --deployment")
    u = auth.user_by_name(conn, name)
    if u is None:
        raise click.ClickException(f"no user {name!r}")
    return u.id


def _actor(by: str | None) -> str:
    return f"{by or getpass.getuser()} (cli)"


scope_options = [
    click.option("--user", "user_name", help="The user it applies to."),
    click.option("--deployment", is_flag=True, help="Deployment-wide (all users)."),
    click.option("--by", help="Who does this (default: your OS user)."),
]


def with_scope(fn):
    for opt in reversed(scope_options):
        fn = opt(fn)
    return fn


@group.command("status")
@click.option("--user", "user_name", required=True)
def status_cmd(user_name):
    """Print a user's trading state, breakers and kill switches (JSON)."""
    _out(_run(lambda c: service.status(c, _user_id(c, user_name, False), reveal_actors=True)))


@group.command("kill")
@click.option("--kind", type=click.Choice(engine.KILL_KINDS), required=True)
@click.option("--reason", required=True)
@with_scope
def kill_cmd(kind, reason, user_name, deployment, by):
    """Engage a kill switch now (stays on until released)."""
    _out(_run(lambda c: service.engage_kill_switch(
        c, _user_id(c, user_name, deployment) or 0, kind, reason,
        scope="deployment" if deployment else "user", actor=_actor(by), admin=True)))


@group.command("release")
@click.option("--kind", type=click.Choice(engine.KILL_KINDS), required=True)
@click.option("--reason", required=True)
@with_scope
def release_cmd(kind, reason, user_name, deployment, by):
    """Release an engaged kill switch."""
    _out(_run(lambda c: service.release_kill_switch(
        c, _user_id(c, user_name, deployment) or 0, kind, reason,
        scope="deployment" if deployment else "user", actor=_actor(by), admin=True)))


@group.command("set-limit")
@click.argument("breaker", type=click.Choice(engine.NAMES))
@click.argument("limit")
@click.option("--severity", type=click.Choice(engine.SEVERITIES))
@click.option("--reset", "reset_policy", type=click.Choice(engine.RESET_POLICIES))
@click.option("--capital", help="max_drawdown: the account equity")
@click.option("--disable", is_flag=True, help="Turn the breaker off for this scope.")
@with_scope
def set_limit_cmd(breaker, limit, severity, reset_policy, capital, disable, user_name, deployment, by):
    """Set a breaker's limit (and optionally severity / reset policy)."""
    from decimal import Decimal, InvalidOperation
    try:
        data = {"limit": Decimal(limit), "capital": Decimal(capital) if capital else None}
    except InvalidOperation:
        raise click.BadParameter("LIMIT and --capital must be numbers")
    data.update(severity=severity, reset_policy=reset_policy, enabled=not disable,
                scope="deployment" if deployment else "user")

    def go(c):
        uid = _user_id(c, user_name, deployment)
        return service.set_config(c, uid or 0, breaker, data, actor=_actor(by), admin=True)
    _out(_run(go))


@group.command("clear")
@click.argument("breaker", type=click.Choice(engine.NAMES))
@click.option("--reason", required=True)
@click.option("--user", "user_name", required=True)
@click.option("--by", help="Who does this (default: your OS user).")
def clear_cmd(breaker, reason, user_name, by):
    """Clear a user's tripped breaker."""
    _out(_run(lambda c: service.clear_breaker(c, _user_id(c, user_name, False), breaker, reason, actor=_actor(by))))
