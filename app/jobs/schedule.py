"""The schedule: plugins' ``ScheduleEntry`` objects, adjusted by ``JOBS_SCHEDULE``, turned
into jobs by every worker's maintenance tick.

Each due slot becomes one job row whose ``schedule_key`` is ``"<entry>@<slot>"`` (unique), so
however many workers tick, a slot runs once; every scheduled run is a job with a record
(``GET /api/jobs?kind=...`` as an admin). A slot is the latest moment at or before now: the
current ``every_seconds`` slot (aligned to the Unix epoch), the latest minute matching the
``cron`` line (UTC), or the latest of ``moments``. Slots missed while no worker ran (up to
``JOBS_SCHEDULE_CATCHUP_SECONDS`` back) coalesce into one run — every scheduled kind is a
"bring things up to date" job, so one run catches up.

``JOBS_SCHEDULE`` (env) overrides entries per deployment, ``;``-separated::

    JOBS_SCHEDULE="mlloop.drift_check=every 3600; tradelog.settle_expired=off; host.purge_jobs=cron 0 3 * * *"

``off`` disables an entry, ``on`` enables one that ships disabled, ``every N`` (seconds) and
``cron M H DOM MON DOW`` replace its timing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from app.db import is_duplicate_key, to_ms, utcnow

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


def parse_overrides(raw) -> dict[str, dict]:
    """``JOBS_SCHEDULE`` -> ``{entry name: {field: value}}``; a malformed item is a
    ``ValueError`` naming it."""
    if not raw:
        return {}
    if isinstance(raw, dict):
        items = [f"{k}={v}" for k, v in raw.items()]
    else:
        items = [p.strip() for p in str(raw).replace("\n", ";").split(";") if p.strip()]
    out: dict[str, dict] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name:
            raise ValueError(f"JOBS_SCHEDULE item {item!r}: expected NAME=off|on|every N|cron M H DOM MON DOW")
        words = spec.split()
        if spec == "off":
            out[name] = {"enabled": False}
        elif spec == "on":
            out[name] = {"enabled": True}
        elif words[:1] == ["every"] and len(words) == 2:
            try:
                seconds = float(words[1])
            except ValueError:
                seconds = 0
            if not seconds > 0:
                raise ValueError(f"JOBS_SCHEDULE item {item!r}: 'every' needs a positive number of seconds")
            out[name] = {"enabled": True, "every_seconds": seconds, "cron": None, "moments": None}
        elif words[:1] == ["cron"] and len(words) == 6:
            cron = " ".join(words[1:])
            try:
                cron_test(cron)
            except ValueError as exc:
                raise ValueError(f"JOBS_SCHEDULE item {item!r}: {exc}") from None
            out[name] = {"enabled": True, "cron": cron, "every_seconds": None, "moments": None}
        else:
            raise ValueError(f"JOBS_SCHEDULE item {item!r}: expected off, on, 'every N' or 'cron M H DOM MON DOW'")
    return out


def cron_test(line: str):
    """A function ``(naive UTC datetime) -> bool`` for a five-field cron line (Huey's
    ``crontab``, which raises ``ValueError`` on a bad field)."""
    from huey import crontab
    minute, hour, day, month, weekday = line.split()
    try:
        return crontab(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, strict=True)
    except ValueError as exc:
        raise ValueError(f"cron line {line!r}: {exc}") from None


def latest_slot(entry, now: dt.datetime, since: dt.datetime) -> dt.datetime | None:
    """The latest slot of ``entry`` in ``(since, now]`` (``every_seconds``: the current slot,
    whatever ``since``), or None."""
    if entry.every_seconds:
        step = float(entry.every_seconds)
        ts = (now.timestamp() // step) * step
        return to_ms(dt.datetime.fromtimestamp(ts, UTC))
    if entry.cron:
        test = cron_test(entry.cron)
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        floor = since.astimezone(UTC)
        while minute > floor:
            if test(minute.replace(tzinfo=None)):
                return minute
            minute -= dt.timedelta(minutes=1)
        return None
    if entry.moments:
        latest, m = None, entry.moments(since)
        for _ in range(100_000):  # bounded: moments must move forward
            if m is None or m > now:
                break
            latest, m = m, entry.moments(m)
        return to_ms(latest) if latest is not None else None
    return None


def slot_key(name: str, slot: dt.datetime) -> str:
    return f"{name}@{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{slot.microsecond // 1000:03d}Z"


class Schedule:
    """The effective entries of a deployment and the tick that submits their due slots."""

    def __init__(self, system, entries: list[tuple[str, object]], overrides: dict[str, dict], *,
                 catchup_seconds: float):
        self.system = system
        self.catchup = dt.timedelta(seconds=catchup_seconds)
        known = {e.name for _, e in entries}
        self.unknown_overrides = sorted(set(overrides) - known)
        for name in self.unknown_overrides:
            log.warning("JOBS_SCHEDULE names %r, which no enabled plugin schedules", name)
        self.entries: list[tuple[str, object]] = []
        for owner, entry in entries:
            if entry.kind not in system.kinds:
                raise ValueError(f"schedule entry {entry.name!r} ({owner}) names undeclared job kind {entry.kind!r}")
            if entry.name in overrides:
                entry = dataclasses.replace(entry, **overrides[entry.name])
            timings = [x for x in (entry.every_seconds, entry.cron, entry.moments) if x]
            if len(timings) != 1:
                raise ValueError(f"schedule entry {entry.name!r} needs exactly one of every_seconds, cron, moments")
            self.entries.append((owner, entry))
        self._scanned: dict[str, dt.datetime] = {}
        self._checked = False

    def check(self) -> None:
        """Raise ValueError naming the entry whose cron line Huey's ``crontab`` rejects. Run on
        first use (a tick, ``describe``), not when the app is built: checking imports Huey,
        which a CLI command or a web request that never touches the schedule should not pay
        for. JOBS_SCHEDULE's own cron lines are checked when it is parsed (at start-up)."""
        if self._checked:
            return
        for owner, entry in self.entries:
            if entry.cron:
                try:
                    cron_test(entry.cron)
                except ValueError as exc:
                    raise ValueError(f"schedule entry {entry.name!r} ({owner}): {exc}") from None
        self._checked = True

    def active(self):
        self.check()
        return [(o, e) for o, e in self.entries if e.enabled]

    def tick(self, now: dt.datetime | None = None) -> list[str]:
        """Submit every due slot not yet submitted (by any worker). Returns the new job ids.
        ``now`` may be given (a fake clock in tests)."""
        now = now or utcnow()
        submitted = []
        for owner, entry in self.active():
            since = self._scanned.get(entry.name, now - self.catchup)
            slot = latest_slot(entry, now, since)
            if slot is None:
                self._scanned[entry.name] = now
                continue
            key = slot_key(entry.name, slot)
            try:
                job = self.system.submit_system(entry.kind, dict(entry.params), schedule_key=key)
            except Exception as exc:
                if is_duplicate_key(exc):  # another worker (or an earlier tick) took this slot
                    self._scanned[entry.name] = now
                    continue
                # Not scanned: the slot is tried again on the next tick.
                log.exception("schedule entry %s: could not submit its %s run", entry.name, key)
                continue
            self._scanned[entry.name] = now
            submitted.append(job["id"])
        return submitted

    def describe(self, now: dt.datetime | None = None) -> list[dict]:
        """Each entry with its timing and the slot it would run now (for the API and CLI)."""
        now = now or utcnow()
        self.check()
        out = []
        for owner, entry in self.entries:
            timing = (f"every {entry.every_seconds:g} s" if entry.every_seconds else
                      f"cron {entry.cron} (UTC)" if entry.cron else "at each moment of its calendar")
            out.append({"name": entry.name, "kind": entry.kind, "owner": owner, "enabled": entry.enabled,
                        "timing": timing, "params": entry.params, "description": entry.description,
                        "latest_slot": latest_slot(entry, now, now - self.catchup) if entry.enabled else None})
        return out
