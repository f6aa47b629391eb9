"""The ``tradeloop`` command: a Flask CLI group. Plugins add commands via ``register_commands``.

    tradeloop serve [--host H] [--port P] [--demo]   gevent WSGI server (embedded default:
                                                     migrates, runs relay + workers in-process)
    tradeloop db upgrade                             migrate core + enabled plugins
    tradeloop users create NAME [--admin]            prints the new API token
    tradeloop tokens list|create|revoke|purge-sessions  API tokens and browser sessions (admin)
    tradeloop plugins                                enabled/installed plugins and what they add
    tradeloop relay [--once]                         outbox -> Kafka
    tradeloop worker [--group G] [--once]            run the enabled plugins' subscriptions
    tradeloop jobs worker|submit|run|list|...        background jobs and the schedule (app/jobs)
    tradeloop deadletters list|requeue ID            failed events, never silently dropped

Every command that needs tables first checks the database is migrated (``require_schema``)
and otherwise stops with one line naming the URL (no traceback, no empty SQLite file).
"""
from __future__ import annotations

import os
import sys
import threading
import time

import click
from flask import current_app
from flask.cli import AppGroup, FlaskGroup, with_appcontext


def _ext():
    return current_app.extensions["tradeloop"]


def _create_app(*_args, **_kw):
    from app import create_app
    return create_app()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo/--no-demo", default=False, help="Create a demo user with data and print its token.")
@click.option("--migrate/--no-migrate", default=None, help="Migrate on start (default: yes on SQLite).")
@click.option("--workers/--no-workers", "run_workers", default=None,
              help="Run the relay and the bus consumers in this process (default: yes on the in-process bus).")
@click.option("--jobs/--no-jobs", "run_jobs", default=None,
              help="Start a job worker process beside the server (default: yes on the embedded SQLite job queue).")
def serve(host, port, demo, migrate, run_workers, run_jobs):
    """Serve the API, SSE streams and console with gevent."""
    NoDelayWSGIServer = _nodelay_server_class()
    app = current_app._get_current_object()
    ext = _ext()
    if not os.environ.get("SECRET_KEY"):
        app.secret_key = app.config["SECRET_KEY"] = _local_secret()
    if migrate is None:
        migrate = ext.db.dialect == "sqlite"
    if migrate:
        from app.migrate import upgrade
        upgrade(ext)
    else:
        require_schema(ext)
    if demo:
        _demo(ext)
    if run_workers is None:
        run_workers = not ext.bus.needs_relay
    if run_workers:
        start_background_workers(ext)
    if run_jobs is None:
        run_jobs = ext.jobs.queue.backend == "sqlite"
    if run_jobs:
        _start_job_worker()
    from app import prepare_to_serve
    prepare_to_serve(app)  # the OpenAPI document, before the first request
    click.echo(f"tradeloop on http://{host}:{port}  (docs: /docs, console: /console, plugins: "
               f"{', '.join(ext.plugins.names) or 'none'}, database: {ext.db.dialect}, "
               f"bus: {ext.bus.name}, cache: {ext.cache.name})")
    server = NoDelayWSGIServer((host, port), app, log=None, error_log=sys.stderr)

    def on_sigterm(_signum, _frame):  # close event streams with a retry hint, then stop
        import gevent
        from app import sse
        sse.begin_shutdown()
        gevent.spawn_later(0.1, server.stop, 2)
    import signal
    signal.signal(signal.SIGTERM, on_sigterm)
    server.serve_forever()


def _start_job_worker():
    """A job worker in its own process, so training never shares this process's CPU; it
    dies with the server."""
    import atexit
    from app.jobs.worker import start_process
    proc = start_process()

    def stop():
        if proc.poll() is None:
            proc.terminate()
    atexit.register(stop)
    click.echo(f"job worker: pid {proc.pid}")
    return proc


def _nodelay_server_class():
    import socket
    from gevent.pywsgi import WSGIServer

    class NoDelayWSGIServer(WSGIServer):
        """gevent's server writes headers and body separately; without TCP_NODELAY a client's
        delayed ACK holds the body back ~40 ms on a kept-alive connection."""

        def handle(self, sock, address):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            return super().handle(sock, address)
    return NoDelayWSGIServer


def _local_secret(path: str = ".tradeloop-secret") -> str:
    """Without SECRET_KEY, keep one in a private file in the working directory so browser
    sessions survive a restart of the embedded server."""
    import secrets
    if os.path.exists(path):
        with open(path) as f:
            value = f.read().strip()
        if value:
            return value
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def _demo(ext):
    from app import auth
    with ext.db.transaction() as conn:
        user = auth.user_by_name(conn, "demo")
        fresh = user is None
        if fresh:
            user, token = auth.create_user(conn, "demo", admin=True)
        else:
            token = auth.issue_token(conn, user.id, label="serve --demo")
    if fresh:
        for impl in ext.plugins.pm.hook.load_demo_data.get_hookimpls():
            with ext.db.transaction() as conn:  # one plugin's demo data failing spoils no other's
                impl.function(conn=conn, user_id=user.id)
    click.echo("=" * 72)
    click.echo(f"demo user: demo   token: {token}")
    click.echo("sign in at /console with that token, or: curl -H 'Authorization: Bearer <token>' ...")
    click.echo("=" * 72)


def start_background_workers(ext) -> list[threading.Thread]:
    """Relay (when the bus needs one) and one consumer runner per plugin, as daemon threads
    (greenlets under gevent)."""
    from bus.consumer import Group, Runner
    threads = []
    if ext.bus.needs_relay:
        from bus.relay import Relay
        relay = Relay(ext.db, ext.bus, ext.topic_names(), lease_ttl=float(ext.config["RELAY_LEASE_SECONDS"]))
        threads.append(threading.Thread(target=relay.run_forever, name="relay", daemon=True))
    for group, subs in ext.plugins.subscriptions().items():
        runner = Runner(ext.db, ext.bus, Group.from_subscriptions(group, subs),
                        max_attempts=int(ext.config["CONSUMER_MAX_ATTEMPTS"]),
                        backoff=float(ext.config["CONSUMER_BACKOFF_SECONDS"]))
        threads.append(threading.Thread(target=runner.run_forever, name=f"worker-{group}", daemon=True))
    for t in threads:
        t.start()
    return threads


db_cli = AppGroup("db", help="Database migrations.")


@db_cli.command("upgrade")
def db_upgrade():
    """Migrate the core branch and each enabled plugin's branch to head."""
    from app.migrate import upgrade
    upgrade(_ext(), echo=click.echo)


users_cli = AppGroup("users", help="Users and API tokens.")


@users_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May use the system-wide (admin) endpoints.")
def users_create(name, admin):
    """Create a user and print its API token (shown only once)."""
    from app import auth, errors
    try:
        with _ext().db.transaction() as conn:
            user, token = auth.create_user(conn, name, admin=admin)
    except errors.Conflict as exc:
        raise click.ClickException(exc.message)
    click.echo(token)


@users_cli.command("token")
@click.argument("name")
def users_token(name):
    """Issue another API token for an existing user."""
    from app import auth
    with _ext().db.transaction() as conn:
        user = auth.user_by_name(conn, name)
        if user is None:
            raise click.ClickException(f"no user {name!r}")
        click.echo(auth.issue_token(conn, user.id))


@click.command("plugins")
def plugins_cmd():
    """List installed plugins, which are enabled, and what each contributes."""
    from app.plugins import installed
    ext = _ext()
    tables: dict[str, list[str]] = {}
    for t, owner in ext.table_owners.items():
        tables.setdefault(owner, []).append(t)
    for name in sorted(set(installed()) | set(ext.plugins.names)):
        on = name in ext.plugins.names
        click.echo(f"{'[on] ' if on else '[off]'} {name}")
        if on:
            topics = [t.name for p, t in ext.topics if p == name]
            streams = [s.path for p, s in ext.sse_streams if p == name]
            click.echo(f"      tables: {', '.join(sorted(tables.get(name, []))) or '-'}")
            click.echo(f"      topics: {', '.join(topics) or '-'}   sse: {', '.join(streams) or '-'}")


@click.command("relay")
@click.option("--once", is_flag=True, help="Publish what is pending and exit.")
@click.option("--republish-from", type=int, default=None,
              help="Move every stream's relay position back to this seq first (e.g. 0 after a broker lost its data).")
def relay_cmd(once, republish_from):
    """Publish the outbox to Kafka; rows are marked sent only once delivered."""
    import signal
    from bus.relay import Relay
    ext = _ext()
    relay = Relay(ext.db, ext.bus, ext.topic_names(), lease_ttl=float(ext.config["RELAY_LEASE_SECONDS"]))
    if republish_from is not None:
        relay.rewind(republish_from)
    if once:
        click.echo(f"published {relay.run_once()}")
        return
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly: hand the lease over at once
        signal.signal(sig, lambda *_: (stopping.set(), relay.wake()))
    relay.run_forever(stop=stopping.is_set)


@click.command("worker")
@click.option("--group", "groups", multiple=True, help="Consumer group(s) to run (default: every enabled plugin's).")
@click.option("--once", is_flag=True, help="Drain what is available and exit.")
def worker_cmd(groups, once):
    """Run the enabled plugins' bus subscriptions (one consumer group per plugin)."""
    from bus.consumer import Group, Runner
    ext = _ext()
    subs = ext.plugins.subscriptions()
    chosen = groups or tuple(subs)
    unknown = set(chosen) - set(subs)
    if unknown:
        raise click.ClickException(f"no subscriptions for: {', '.join(sorted(unknown))}")
    runners = [Runner(ext.db, ext.bus, Group.from_subscriptions(g, subs[g]),
                      max_attempts=int(ext.config["CONSUMER_MAX_ATTEMPTS"]),
                      backoff=float(ext.config["CONSUMER_BACKOFF_SECONDS"])) for g in chosen]
    if once:
        total = 0
        for r in runners:
            while True:
                n = r.run_once(timeout=2.0)
                total += n
                if n == 0:
                    break
        click.echo(f"handled {total}")
        return
    threads = [threading.Thread(target=r.run_forever, daemon=True, name=r.group.name) for r in runners]
    for t in threads:
        t.start()
    click.echo(f"worker running groups: {', '.join(chosen)}")
    while True:
        time.sleep(3600)


dl_cli = AppGroup("deadletters", help="Events a handler kept failing on.")


@dl_cli.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include requeued ones.")
def dl_list(show_all):
    """List dead letters."""
    import sqlalchemy as sa
    from bus.outbox import dead_letters as t
    q = sa.select(t).order_by(t.c.id)
    if not show_all:
        q = q.where(t.c.status == "dead")
    with _ext().db.transaction() as conn:
        rows = conn.execute(q).fetchall()
    if not rows:
        click.echo("no dead letters")
    for r in rows:
        click.echo(f"{r.id}\t{r.status}\t{r.consumer_group}\t{r.stream}#{r.seq}\t{r.type}\t"
                   f"attempts={r.attempts}\t{r.failed_at:%Y-%m-%dT%H:%M:%S}Z\t{r.error[:120]}")


@dl_cli.command("requeue")
@click.argument("dead_letter_id", type=int)
def dl_requeue(dead_letter_id):
    """Run a dead letter's handler again now."""
    import sqlalchemy as sa
    from bus.consumer import requeue, stream_of
    from bus.outbox import dead_letters as t
    ext = _ext()
    with ext.db.transaction() as conn:
        row = conn.execute(sa.select(t.c.consumer_group).where(t.c.id == dead_letter_id)).first()
    if row is None:
        raise click.ClickException(f"no dead letter {dead_letter_id}")
    subs = ext.plugins.subscriptions().get(row.consumer_group, {})
    handlers = {stream_of(k)[1]: fn for k, fn in subs.items()}
    requeue(ext.db, dead_letter_id, handlers)
    click.echo(f"requeued {dead_letter_id}")


# Commands that run on a database without tables: ``db upgrade`` creates them, ``serve``
# migrates (or checks itself with --no-migrate), the others read only the configuration.
NO_SCHEMA_NEEDED = {("db", "upgrade"), ("serve",), ("plugins",), ("jobs", "kinds"), ("jobs", "schedule")}


def require_schema(ext) -> None:
    """Stop a command cleanly (``click.ClickException``: one line on stderr, exit 1) unless the
    database has been migrated: every branch (core + each enabled plugin) has its Alembic
    version table. An SQLite file that does not exist is never created here (connecting would
    create an empty one). The message names the URL without its password.

    Checks presence, not that each branch is at head (that needs Alembic's scripts, which
    ``tradeloop --help`` does not load)."""
    import sqlalchemy as sa
    url = ext.db.url
    shown = url.render_as_string(hide_password=True)
    hint = f"run `tradeloop db upgrade` (database: {shown})"
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
            raise click.ClickException(f"database not migrated (no database file {path!r}): {hint}")
    labels = ["core", *(label for label, _path in ext.migrations.values())]
    try:
        with ext.db.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(f"cannot read the database {shown}: {first}") from None
    missing = [label for label in labels if f"alembic_version_{label}" not in tables]
    if missing == labels:
        raise click.ClickException(f"database not migrated: {hint}")
    if missing:
        raise click.ClickException(f"database not migrated for {', '.join(missing)}: {hint}")


def _guard_schema(cmd: click.Command, path: tuple[str, ...]) -> None:
    """Run ``require_schema`` before the callback of ``cmd`` (each leaf of a group), once,
    unless its command path is in ``NO_SCHEMA_NEEDED``. Plugins' commands included."""
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            _guard_schema(sub, (*path, name))
        return
    callback = cmd.callback
    if callback is None or path in NO_SCHEMA_NEEDED or getattr(callback, "_tl_schema_checked", False):
        return

    def checked(*args, **kwargs):
        from flask.cli import ScriptInfo
        app = click.get_current_context().ensure_object(ScriptInfo).load_app()  # the one already built
        require_schema(app.extensions["tradeloop"])
        return callback(*args, **kwargs)
    checked.__wrapped__ = callback
    checked._tl_schema_checked = True
    cmd.callback = checked


class TradeloopGroup(FlaskGroup):
    """Flask's group, with the database check (``require_schema``) in front of every command
    that needs tables."""

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            _guard_schema(cmd, (name,))
        return cmd


cli = TradeloopGroup(create_app=_create_app, add_default_commands=False, set_debug_flag=False,
                     load_dotenv=False, help="tradeloop: the back end for an options trader's desk.")
from app.auth_cli import tokens as tokens_cli  # noqa: E402
from app.jobs.cli import jobs_cli  # noqa: E402  (light: Huey is imported only when used)

for command in (serve, db_cli, users_cli, tokens_cli, plugins_cmd, relay_cmd, worker_cmd, dl_cli, jobs_cli):
    if not isinstance(command, click.Group):  # (AppGroup commands get an app context already)
        command.callback = with_appcontext(command.callback)
    cli.add_command(command)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from gevent import monkey
        monkey.patch_all()
    cli.main(args=argv, prog_name="tradeloop")
