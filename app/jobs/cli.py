"""``tradeloop jobs ...``: run workers, submit and follow jobs, see the schedule.

    tradeloop jobs worker [--threads N] [--no-schedule]   a job worker process (consumer + schedule)
    tradeloop jobs submit KIND [-p k=v ...] [--wait]      queue a job (--wait: follow it with a bar)
    tradeloop jobs run KIND [-p k=v ...]                  run a job here, now, with a progress bar
    tradeloop jobs list [--state S] [--kind K]            every job, newest first
    tradeloop jobs show ID | cancel ID
    tradeloop jobs kinds | schedule                       declared kinds; the effective schedule
    tradeloop jobs tick                                   one recovery + schedule tick, then exit
"""
from __future__ import annotations

import json
import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup

jobs_cli = AppGroup("jobs", help="Background jobs: workers, submitting, following, the schedule.")


def _system():
    return current_app.extensions["tradeloop"].jobs


def _params(pairs, raw_json) -> dict:
    params = {}
    if raw_json:
        try:
            params.update(json.loads(raw_json))
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--json")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(value)  # numbers, booleans, lists; else the plain string
        except ValueError:
            params[key] = value
    return params


def progress_bar(label: str = "", *, file=None):
    """A terminal progress bar (tqdm) as a ``progress(fraction, message)`` listener: the same
    callback shape a job function reports through. Returns ``(listener, close)``."""
    from tqdm import tqdm
    bar = tqdm(total=1000, desc=label, unit="‰", file=file or sys.stderr, dynamic_ncols=True,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def listener(fraction, message=""):
        bar.n = int(round(float(fraction) * 1000))
        if message:
            bar.set_postfix_str(str(message)[:60], refresh=False)
        bar.refresh()
    return listener, bar.close


def _print_job(job: dict) -> None:
    click.echo(json.dumps(job, default=str, indent=2))


def _fail_on(job: dict) -> None:
    if job["state"] != "succeeded":
        err = job.get("error") or {}
        raise click.ClickException(f"job {job['id']} {job['state']}: {err.get('message', job.get('message'))}")


@jobs_cli.command("worker")
@click.option("--threads", type=int, default=None, help="Jobs run at once (default JOBS_WORKER_THREADS).")
@click.option("--schedule/--no-schedule", "run_schedule", default=True,
              help="Also submit the schedule's due runs (safe on every worker).")
@click.option("--tick", type=float, default=None, help="Seconds between recovery/schedule ticks.")
@click.option("--parent-pid", type=int, default=None, hidden=True)
def worker_cmd(threads, run_schedule, tick, parent_pid):
    """Run a job worker: take jobs off the queue, run them, keep the schedule."""
    import logging
    from app.jobs import worker
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker.run(current_app.extensions["tradeloop"], threads=threads, run_schedule=run_schedule,
               tick_seconds=tick, parent_pid=parent_pid)


@jobs_cli.command("submit")
@click.argument("kind")
@click.option("-p", "--param", "pairs", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it is).")
@click.option("--json", "raw_json", default=None, help="All params as a JSON object.")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
def submit_cmd(kind, pairs, raw_json, wait):
    """Queue a job (as an admin job, on no user's behalf) and print its id."""
    from app import errors
    from app.jobs import store
    system = _system()
    try:
        job = system.submit_system(kind, _params(pairs, raw_json))
    except errors.DomainError as exc:
        raise click.ClickException(f"{exc.message} {json.dumps(exc.errors) if exc.errors else ''}".strip())
    click.echo(job["id"])
    if not wait:
        return
    listener, close = progress_bar(kind)
    try:
        while True:
            with system.ext.db.read() as conn:
                job = store.public(store.get(conn, job["id"]))
            listener(job["progress"], job["message"])
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
    finally:
        close()
    _fail_on(job)
    _print_job(job["result"])


@jobs_cli.command("run")
@click.argument("kind")
@click.option("-p", "--param", "pairs", multiple=True, help="KEY=VALUE (VALUE parsed as JSON when it is).")
@click.option("--json", "raw_json", default=None, help="All params as a JSON object.")
def run_cmd(kind, pairs, raw_json):
    """Run a job in this process now, with a progress bar (still recorded as a job)."""
    from app import errors
    system = _system()
    listener, close = progress_bar(kind)
    try:
        job = system.run_inline(kind, _params(pairs, raw_json), listeners=[listener])
    except errors.DomainError as exc:
        raise click.ClickException(f"{exc.message} {json.dumps(exc.errors) if exc.errors else ''}".strip())
    finally:
        close()
    _fail_on(job)
    _print_job(job["result"])


@jobs_cli.command("list")
@click.option("--state", default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=30, show_default=True)
def list_cmd(state, kind, limit):
    """Every job (all users), newest first."""
    import sqlalchemy as sa
    from app.jobs.tables import jobs
    q = sa.select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
    if state:
        q = q.where(jobs.c.state == state)
    if kind:
        q = q.where(jobs.c.kind == kind)
    with _system().ext.db.read() as conn:
        rows = conn.execute(q).fetchall()
    for r in rows:
        click.echo(f"{r.id}  {r.state:<9} {r.progress * 100:5.1f}%  {r.kind:<32} user={r.user_id}  "
                   f"{r.created_at:%Y-%m-%dT%H:%M:%S}Z  {r.message[:60]}")


@jobs_cli.command("show")
@click.argument("job_id")
def show_cmd(job_id):
    """One job as JSON."""
    from app.jobs import store
    with _system().ext.db.read() as conn:
        row = store.get(conn, job_id)
    if row is None:
        raise click.ClickException(f"no job {job_id}")
    _print_job(store.public(row))


@jobs_cli.command("cancel")
@click.argument("job_id")
def cancel_cmd(job_id):
    """Cancel a job (a running one stops at its next progress report)."""
    from app import errors
    system = _system()
    try:
        with system.ext.db.transaction() as conn:
            job, finished = system.cancel(conn, None, job_id)
    except errors.DomainError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"{job_id}: {'cancelled' if finished else 'cancel requested'}")


@jobs_cli.command("kinds")
def kinds_cmd():
    """The declared job kinds."""
    system = _system()
    for name, kind in sorted(system.kinds.items()):
        flags = " [admin]" if kind.admin_only else ""
        click.echo(f"{name:<36} {system.owners[name]:<10}{flags} {kind.description}")


@jobs_cli.command("schedule")
def schedule_cmd():
    """The effective schedule (after JOBS_SCHEDULE)."""
    system = _system()
    for e in system.schedule.describe():
        state = "on " if e["enabled"] else "off"
        click.echo(f"[{state}] {e['name']:<34} {e['timing']:<28} -> {e['kind']}  {e['description']}")
    for name in system.schedule.unknown_overrides:
        click.echo(f"warning: JOBS_SCHEDULE names {name!r}, which no enabled plugin schedules", err=True)


@jobs_cli.command("tick")
def tick_cmd():
    """One recovery + schedule tick (for a deployment that drives the schedule from cron)."""
    out = _system().maintenance()
    click.echo(json.dumps(out, default=str))
