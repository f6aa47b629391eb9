"""``tradeloop tradelog ...``: the trade log's jobs from a terminal.

    tradeloop tradelog settle-expired [--user NAME] [--at TIME]
    tradeloop tradelog settlement-price UNDERLYING EXPIRY PRICE [--time AM|PM] --user NAME
    tradeloop import FILE --format generic|ibkr_flex|tastytrade --user NAME [--timezone TZ]
                          [--dry-run] [--skip-bad-rows]
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation

import click
from flask import current_app
from flask.cli import AppGroup

from app import errors
from bus.envelope import JSONEncoder

group = AppGroup("tradelog", help="Trade log jobs: settle expired option legs, settlement prices.")


def _out(value) -> None:
    click.echo(json.dumps(value, cls=JSONEncoder, indent=2))


def _run(fn):
    try:
        with current_app.extensions["tradeloop"].db.transaction() as conn:
            return fn(conn)
    except errors.DomainError as exc:
        raise click.ClickException(exc.message)


def _user_id(conn, name: str | None) -> int | None:
    from app import auth
    if name is None:
        return None
    u = auth.user_by_name(conn, name)
    if u is None:
        raise click.ClickException(f"no user {name!r}")
    return u.id


def _time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


@group.command("settle-expired")
@click.option("--user", "user_name", help="Only this user's positions (default: everyone's).")
@click.option("--at", "at", help="Settle as of this time (ISO-8601; default: now).")
def settle_expired_cmd(user_name, at):
    """Settle every open option leg past its settlement moment from the recorded settlement
    prices; print the report (legs still awaiting a settlement price are listed)."""
    from plugins.tradelog import settlement

    def go(conn):
        with click.progressbar(length=1000, label="settling", file=click.get_text_stream("stderr")) as bar:
            def progress(fraction, message=""):
                bar.update(int(fraction * 1000) - bar.pos)
            return settlement.settle_expired(conn, _time(at), user_id=_user_id(conn, user_name), progress=progress)
    _out(_run(go))


@group.command("settlement-price")
@click.argument("underlying")
@click.argument("expiry")
@click.argument("price")
@click.option("--time", "settlement_time", type=click.Choice(["AM", "PM"]), default="PM", show_default=True)
@click.option("--user", "user_name", required=True)
def settlement_price_cmd(underlying, expiry, price, settlement_time, user_name):
    """Record UNDERLYING's settlement value PRICE for options expiring EXPIRY (YYYY-MM-DD)."""
    from plugins.tradelog import settlement
    try:
        day, value = dt.date.fromisoformat(expiry), Decimal(price)
    except (ValueError, InvalidOperation):
        raise click.BadParameter("EXPIRY is YYYY-MM-DD and PRICE a number") from None
    _out(_run(lambda c: settlement.set_settlement_price(c, _user_id(c, user_name), {
        "underlying": underlying, "expiry": day, "settlement_time": settlement_time, "price": value})))


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["generic", "ibkr_flex", "tastytrade"]),
              help="The file's layout (docs/tradelog.md, 'Importing executions').")
@click.option("--user", "user_name", required=True, help="Whose trade log.")
@click.option("--timezone", help="IANA zone of times without an offset (default: the exchange's).")
@click.option("--dry-run", is_flag=True, help="Print the reconciliation report; write nothing.")
@click.option("--skip-bad-rows", is_flag=True, help="Import the good rows and list the bad ones.")
def import_cmd(file, fmt, user_name, timezone, dry_run, skip_bad_rows):
    """Import a broker's CSV of executions into a user's trade log, as a job run here (with a
    progress bar; one transaction: all of it or nothing); prints the import record and its
    report (JSON). Exits non-zero naming the bad rows when the file is rejected."""
    from plugins.tradelog import imports
    with open(file, "rb") as f:
        content = f.read()
    ext = current_app.extensions["tradeloop"]

    def create(conn):
        uid = _user_id(conn, user_name)
        return uid, imports.create_import(conn, uid, content, {
            "format": fmt, "timezone": timezone, "dry_run": dry_run, "skip_bad_rows": skip_bad_rows,
            "filename": file.rsplit("/", 1)[-1]})
    uid, record = _run(create)
    with click.progressbar(length=1000, label="importing", file=click.get_text_stream("stderr")) as bar:
        job = ext.jobs.run_inline(imports.JOB_KIND, {"import_id": record["id"]}, user_id=uid, is_admin=False,
                                  listeners=[lambda fraction, message="": bar.update(int(fraction * 1000) - bar.pos)])
    with ext.db.read() as conn:
        record = imports.get_import(conn, uid, record["id"])
    if job["state"] != "succeeded":
        err = record.get("error") or job.get("error") or {}
        for line in ((err.get("errors") or {}).get("files") or {}).get("file", [])[:20]:
            click.echo(f"  {line}", err=True)
        raise click.ClickException(err.get("message") or f"the import job {job['state']}")
    _out(record)
