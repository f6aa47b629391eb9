"""Every extension point of the host: the plugin contract.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names are the
hooks below; it is found through the ``tradeloop.plugins`` entry-point group and enabled by
``TRADELOOP_PLUGINS``. The host collects each hook's results per plugin and refuses to start,
naming both plugins, when two claim the same route, table, topic, SSE path or command.
docs/plugins.md documents each hook under its exact signature (a test keeps them in step).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pluggy

from bus.topic import Topic  # noqa: F401  (plugins import it from here)

hookspec = pluggy.HookspecMarker("tradeloop")
hookimpl = pluggy.HookimplMarker("tradeloop")


@dataclasses.dataclass(frozen=True)
class SSEStream:
    """A user-scoped Server-Sent Events endpoint replaying and then following one topic."""
    path: str
    topic: str
    description: str = ""


@dataclasses.dataclass(frozen=True)
class JobKind:
    """A kind of background job (``register_job_kinds``): long or CPU-heavy work that runs on a
    job worker, never on the web process's loop.

    ``run`` is a plain service function (no Flask, no Huey). The worker calls it with the
    arguments it names among: ``db`` (``app.db.Database``: open short transactions yourself;
    hold none across the heavy part), ``params`` (the job's parameters as a dict, validated at
    submission by ``params_schema``), ``progress`` (``progress(fraction, message="")`` with
    ``fraction`` in 0..1: shown to the user, throttled; it raises to stop the work when the job
    was cancelled), ``user_id`` (who submitted it; ``None`` for a scheduled run) and
    ``job_id``. It returns a JSON-serialisable result (or ``None``) and raises to fail: an
    ``app.errors.DomainError`` becomes the job's error with its code and message.
    """
    name: str                                  # "<plugin>.<what>", e.g. "mlloop.train"
    run: Callable[..., Any]
    description: str = ""
    params_schema: Any = None                  # marshmallow Schema class (None: params must be {})
    admin_only: bool = False                   # only admins submit it; every admin sees its jobs
    max_attempts: int = 1                      # runs allowed when a worker dies mid-job (1: fail it)
    retry_on: tuple = ()                       # exception classes retried (backoff) up to max_attempts


@dataclasses.dataclass(frozen=True)
class ScheduleEntry:
    """A recurring job (``register_schedule``). Exactly one of ``every_seconds``, ``cron`` or
    ``moments`` says when: slots every N seconds (aligned to the Unix epoch), a cron line
    ``"minute hour day month weekday"`` in UTC, or ``moments(after)`` giving the next moment
    (an aware UTC datetime) strictly after ``after``, e.g. the next settlement moment from
    ``optionsmath``. Each due slot runs once across every worker (one job row per slot); slots
    missed while no worker ran coalesce into one run. ``JOBS_SCHEDULE`` overrides or turns
    entries off per deployment (docs/jobs.md)."""
    name: str                                  # unique, e.g. "tradelog.settle_expired"
    kind: str                                  # the job kind to submit
    every_seconds: float | None = None
    cron: str | None = None
    moments: Callable[[Any], Any] | None = None
    params: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Veto:
    """A reason an action may not go ahead (returned by ``check_order_allowed``)."""
    source: str       # e.g. "daily_loss_limit"
    message: str
    detail: dict | None = None


class HookSpecs:
    @hookspec
    def register_blueprints(self, app) -> list:
        """Return the plugin's flask_smorest ``Blueprint`` objects. The host registers them on
        its ``Api`` so they appear in /openapi.json; two plugins serving the same URL rule and
        method is a start-up error."""

    @hookspec
    def register_tables(self) -> Any:
        """Return the plugin's ``sqlalchemy.MetaData`` (or a list of ``Table``). Used to detect
        table-name clashes between plugins and to tell which tables a plugin owns; the
        schema itself is created by the plugin's migrations (``register_migrations``)."""

    @hookspec
    def register_migrations(self) -> tuple[str, str]:
        """Return ``(branch_label, versions_directory)``: the plugin's Alembic branch. ``tradeloop
        db upgrade`` migrates the core branch and the branches of enabled plugins only."""

    @hookspec
    def register_topics(self) -> list[Topic]:
        """Return the ``Topic`` objects the plugin publishes to (name, description, event type
        -> payload schema). They are served at /asyncapi.json; a topic has one owner."""

    @hookspec
    def register_subscriptions(self) -> dict[str, Callable]:
        """Return ``{"<context>.<EventType>": handler}`` (or ``"<topic>:<EventType>"`` for a
        topic not named ``<context>.events``). ``tradeloop worker`` runs them in the consumer
        group named after the plugin; ``handler(conn, event)`` runs in a transaction that also
        records the event as processed, so a redelivery is skipped. A handler decorated with
        ``bus.consumer.batch`` receives a list of events."""

    @hookspec
    def register_sse_streams(self) -> list[SSEStream]:
        """Return ``SSEStream`` objects; the host serves each path as a user-scoped stream of
        its topic, with replay from ``Last-Event-ID`` or ``?last_seq=``, then live events."""

    @hookspec
    def register_commands(self) -> list:
        """Return click commands or groups to add to the ``tradeloop`` CLI."""

    @hookspec
    def register_job_kinds(self) -> list[JobKind]:
        """Return ``JobKind`` objects: the background work the plugin offers. Jobs are submitted
        with ``app.jobs.submit(conn, kind, params, user_id)`` (or ``POST /api/jobs``), run on a
        job worker (``tradeloop jobs worker``) and are visible as rows at /api/jobs. A kind name
        has one owner."""

    @hookspec
    def register_schedule(self) -> list[ScheduleEntry]:
        """Return ``ScheduleEntry`` objects: jobs the schedule submits by itself (each run is a
        job with a record). An entry's name has one owner; its kind must be declared."""

    @hookspec
    def health_checks(self, app) -> dict[str, Callable[[], tuple[bool, str]]]:
        """Return ``{name: check}``; each ``check()`` returns ``(ok, detail)`` and is reported by
        GET /health."""

    @hookspec
    def check_order_allowed(self, conn, user_id: int, order: dict) -> list[Veto]:
        """Called before an order is created and again before it is executed (in that
        request's transaction). Return a list of ``Veto`` (empty to allow). Any veto from any
        plugin refuses the creation or execution with 403 ``order_vetoed`` listing every veto.
        ``order`` has ``stage`` (``"create"`` or ``"execute"``), ``order_id``, ``symbol``,
        ``legs``, ``limit_price``, ``reduces_position`` (bool) and ``position_id`` (or None)."""

    @hookspec
    def scoring_mode(self, conn, user_id: int | None) -> str | None:
        """Return ``"rules_only"`` to force rule-based scoring (no ML influence), or ``None``.
        If any plugin says rules-only, scoring is rules-only."""

    @hookspec
    def load_demo_data(self, conn, user_id: int) -> None:
        """Create a small realistic data set for ``user_id`` (``tradeloop serve --demo``), so a
        newcomer to the embedded default sees something at once."""

    @hookspec
    def app_ready(self, app) -> None:
        """Called once the app is fully built (config, database, bus and cache ready): the place
        to keep references a plugin needs later (e.g. ``app.extensions['tradeloop']``)."""
