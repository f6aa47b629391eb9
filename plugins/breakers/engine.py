"""The breakers themselves: what each one measures, when it is breached, how configs from the
deployment and the user combine, session arithmetic, and the trading state they imply.

Pure reads and pure functions only (no writes): ``service`` decides when to latch, clear and
emit. Everything takes ``now`` so the rules are testable at any instant.
"""
from __future__ import annotations

import dataclasses
import re
import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.db import UtcDateTime
from plugins.breakers import tables as t

DAILY_LOSS, DRAWDOWN, ORDER_RATE, SLIPPAGE, CONFIDENCE = (
    "daily_loss_limit", "max_drawdown", "order_rate", "slippage_anomaly", "model_confidence")
SEVERITIES = ("critical", "reduce_only", "warning")          # most severe first
RESET_POLICIES = ("manual", "session_open", "auto")          # most conservative first
STATES = ("ACTIVE", "REDUCING", "HALTED")
KILL_KINDS = ("ml_scoring", "orders")
BOOKS = ("trades", "ml")
SLIPPAGE_WINDOW, SLIPPAGE_MIN_SAMPLES = 20, 10                # the seed's deque(maxlen=20), >= 10
RATE_WINDOW = dt.timedelta(seconds=1)
DEFAULT_SESSION_OPEN, DEFAULT_SESSION_TZ = "09:30", "America/New_York"
SIX = Decimal("0.000001")
SYSTEM = "system"                                            # the actor of automatic changes
ADMINISTRATOR = "an administrator"
_USER_ACTOR = re.compile(r".*\(user (\d+)\)", re.DOTALL)          # views' actor: "NAME (user ID)"


def shown_by(actor: str | None, viewer_id: int | None) -> str | None:
    """Who did something, as the user ``viewer_id`` may see it: another user's actor string
    (``"NAME (user ID)"``, e.g. an admin's deployment-wide switch or limit) as
    ``"an administrator"``, so no user learns another user's name or id; their own, ``system``,
    ``auto:...`` and an operator's ``"WHO (cli)"`` (the label given with ``--by``) as stored.
    ``viewer_id`` None: as stored."""
    if actor is None or viewer_id is None:
        return actor
    m = _USER_ACTOR.fullmatch(actor)
    if m is None or int(m.group(1)) == viewer_id:
        return actor
    return ADMINISTRATOR


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    severity: str          # the seed's default severity
    reset_policy: str
    unit: str
    stricter: str          # "lower" limit is stricter, or "higher" (model_confidence)
    description: str


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec(DAILY_LOSS, "critical", "session_open", "USD",
         "lower", "today's realized loss (trades book) since the session open reaches the limit"),
    Spec(DRAWDOWN, "critical", "manual", "fraction",
         "lower", "drawdown from the equity high water, (high_water - equity) / high_water, reaches the limit"),
    Spec(ORDER_RATE, "warning", "auto", "orders/s",
         "lower", "executions in the trailing second reach the limit (the next one is refused)"),
    Spec(SLIPPAGE, "warning", "manual", "per unit",
         "lower", "mean slippage of the last 20 fills exceeds the limit (needs >= 10 fills)"),
    Spec(CONFIDENCE, "warning", "manual", "0..1",
         "higher", "the latest regime confidence is below the limit"),
)}
NAMES = tuple(SPECS)


@dataclasses.dataclass(frozen=True)
class Config:
    """The effective config of one breaker for one user (deployment and user rows merged)."""
    breaker: str
    limit: Decimal
    severity: str
    reset_policy: str
    capital: Decimal | None
    session_open: str
    session_tz: str
    scope: str                   # "user" | "deployment" | "both"


@dataclasses.dataclass(frozen=True)
class Measure:
    value: Decimal | None
    breached: bool
    message: str


def q6(v) -> Decimal:
    return Decimal(v).quantize(SIX, rounding=ROUND_HALF_EVEN)


# -- configs ------------------------------------------------------------------------------
def merge(rows: list) -> Config | None:
    """Enabled rows of one breaker (deployment and/or user) -> the effective config. A user's
    row may tighten but never loosen the deployment's: the stricter limit, the more severe
    severity and the more conservative reset policy win."""
    rows = [r for r in rows if r.enabled]
    if not rows:
        return None
    spec = SPECS[rows[0].breaker]
    pick = max if spec.stricter == "higher" else min
    user_row = next((r for r in rows if r.user_id is not None), None)
    base = user_row or rows[0]
    return Config(
        breaker=spec.name,
        limit=pick(r.limit_value for r in rows),
        severity=min((r.severity for r in rows), key=SEVERITIES.index),
        reset_policy=min((r.reset_policy for r in rows), key=RESET_POLICIES.index),
        capital=next((r.capital for r in (user_row, *rows) if r is not None and r.capital is not None), None),
        session_open=base.session_open, session_tz=base.session_tz,
        scope="both" if len(rows) == 2 else ("user" if user_row else "deployment"))


def config_rows(conn, user_id: int | None) -> list:
    scopes = [0] if user_id is None else [0, user_id]
    return conn.execute(sa.select(t.configs).where(t.configs.c.scope_key.in_(scopes))).fetchall()


def effective_configs(rows) -> dict[str, Config]:
    by_name: dict[str, list] = {}
    for r in rows:
        by_name.setdefault(r.breaker, []).append(r)
    out = {}
    for name, rs in by_name.items():
        cfg = merge(rs)
        if cfg is not None:
            out[name] = cfg
    return out


# -- sessions -----------------------------------------------------------------------------
def _open_on(day: dt.date, cfg_open: str, tz: ZoneInfo) -> dt.datetime:
    hh, mm = (int(x) for x in cfg_open.split(":"))
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=tz).astimezone(dt.timezone.utc)


def last_session_open(now: dt.datetime, session_open: str = DEFAULT_SESSION_OPEN,
                      session_tz: str = DEFAULT_SESSION_TZ) -> dt.datetime:
    """The latest session open (Mon-Fri, local time) at or before ``now``."""
    tz = ZoneInfo(session_tz)
    day = now.astimezone(tz).date()
    for _ in range(8):
        if day.weekday() < 5:
            opened = _open_on(day, session_open, tz)
            if opened <= now:
                return opened
        day -= dt.timedelta(days=1)
    raise AssertionError("no session open in a week")


def next_session_open(after: dt.datetime, session_open: str = DEFAULT_SESSION_OPEN,
                      session_tz: str = DEFAULT_SESSION_TZ) -> dt.datetime:
    """The first session open (Mon-Fri, local time) strictly after ``after``."""
    tz = ZoneInfo(session_tz)
    day = after.astimezone(tz).date()
    for _ in range(8):
        if day.weekday() < 5:
            opened = _open_on(day, session_open, tz)
            if opened > after:
                return opened
        day += dt.timedelta(days=1)
    raise AssertionError("no session open in a week")


# -- measures -----------------------------------------------------------------------------
def daily_pnl(conn, user_id: int, since: dt.datetime, book: str = "trades") -> Decimal:
    v = conn.execute(sa.select(sa.func.sum(t.pnl_ledger.c.pnl)).where(
        t.pnl_ledger.c.user_id == user_id, t.pnl_ledger.c.book == book,
        t.pnl_ledger.c.occurred_at >= since)).scalar()
    return Decimal(v or 0).quantize(Decimal("0.0001"))


def book_row(conn, user_id: int, book: str):
    return conn.execute(sa.select(t.pnl_book).where(t.pnl_book.c.user_id == user_id,
                                                    t.pnl_book.c.book == book)).first()


_EXECUTIONS_SINCE = sa.select(sa.func.count()).select_from(t.order_log).where(
    t.order_log.c.user_id == sa.bindparam("uid"), t.order_log.c.executed_at > sa.bindparam("since", type_=UtcDateTime()))


def executions_in_window(conn, user_id: int, now: dt.datetime) -> int:
    """Executions whose timestamp lies in the half-open second (now - 1 s, now]."""
    return int(conn.execute(_EXECUTIONS_SINCE, {"uid": user_id, "since": now - RATE_WINDOW}).scalar() or 0)


def recent_slippage(conn, user_id: int) -> list[Decimal]:
    return list(conn.execute(sa.select(t.slippage_log.c.slippage).where(t.slippage_log.c.user_id == user_id)
                             .order_by(t.slippage_log.c.filled_at.desc(), t.slippage_log.c.order_id.desc())
                             .limit(SLIPPAGE_WINDOW)).scalars())


def measure(conn, user_id: int, cfg: Config, now: dt.datetime) -> Measure:
    """The breaker's current value and whether it is breached (reads its inputs)."""
    name, limit = cfg.breaker, cfg.limit
    if name == DAILY_LOSS:
        opened = last_session_open(now, cfg.session_open, cfg.session_tz)
        pnl = daily_pnl(conn, user_id, opened)
        loss = -pnl
        return Measure(loss, loss >= limit,
                       f"daily loss {loss} (daily P&L {pnl} since the session open) "
                       f"{'reached' if loss >= limit else 'is within'} the limit {limit}")
    if name == DRAWDOWN:
        row = book_row(conn, user_id, "trades")
        cum, hw = (row.cumulative, row.high_water) if row else (Decimal(0), Decimal(0))
        capital = cfg.capital or Decimal(0)
        peak = capital + hw
        dd = q6((hw - cum) / peak) if peak > 0 else (Decimal(0) if hw == cum else Decimal(1))
        return Measure(dd, dd >= limit,
                       f"drawdown {dd:.2%} from high water {peak} (equity {capital + cum}) "
                       f"{'reached' if dd >= limit else 'is within'} the limit {limit:.2%}")
    if name == ORDER_RATE:
        n = executions_in_window(conn, user_id, now)
        return Measure(Decimal(n), n >= limit,
                       f"{n} order executions in the last second; limit {limit.normalize():f}/s")
    if name == SLIPPAGE:
        sample = recent_slippage(conn, user_id)
        if not sample:
            return Measure(None, False, "no fills with slippage yet")
        avg = q6(sum(sample) / len(sample))
        enough = len(sample) >= SLIPPAGE_MIN_SAMPLES
        breached = enough and avg > limit
        return Measure(avg, breached,
                       f"mean slippage {avg} over the last {len(sample)} fills "
                       + ("" if enough else f"(needs {SLIPPAGE_MIN_SAMPLES} fills) ")
                       + f"{'exceeds' if breached else 'vs'} the threshold {limit}")
    if name == CONFIDENCE:
        row = conn.execute(sa.select(t.inputs).where(t.inputs.c.user_id == user_id)).first()
        if row is None or row.model_confidence is None:
            return Measure(None, False, "no regime confidence reported yet")
        v = row.model_confidence
        return Measure(v, v < limit, f"regime confidence {v} ({row.regime or 'regime n/a'}) "
                                     f"{'is below' if v < limit else 'meets'} the threshold {limit}")
    raise KeyError(name)


# -- the picture at one instant -----------------------------------------------------------
@dataclasses.dataclass
class Effective:
    """One breaker at ``now``: tripped (after reset policies), and, when a latched trip has
    been reset by its policy but not yet recorded, when that happened."""
    config: Config
    row: object | None
    tripped: bool
    reset_at: dt.datetime | None = None     # a pending automatic reset (to record)
    measure: Measure | None = None


@dataclasses.dataclass
class Snapshot:
    user_id: int
    now: dt.datetime
    configs: dict[str, Config]
    rows: dict[str, object]
    effective: dict[str, Effective]
    kill_switches: list
    trading_row: object | None

    def tripped(self, severity: str | None = None) -> list[Effective]:
        return [e for e in self.effective.values() if e.tripped and (severity is None or e.config.severity == severity)]

    def switch(self, kind: str):
        """The engaged kill switch of a kind: the user's, else the deployment's, else None."""
        mine = [k for k in self.kill_switches if k.kind == kind]
        return min(mine, key=lambda k: k.scope_key == 0) if mine else None

    def state(self, *, reveal: bool = False) -> tuple[str, dict]:
        """The trading state these breakers, switches and the manual setting imply, with its
        cause: HALTED (orders kill switch, manual halt, a critical breaker), else REDUCING
        (manual, a reduce_only breaker), else ACTIVE. The reason names who acted as
        ``shown_by`` shows it to this user (``reveal``: as stored, for an operator)."""
        viewer = None if reveal else self.user_id
        manual = self.trading_row.manual_state if self.trading_row else "ACTIVE"
        ks = self.switch("orders")
        if ks is not None:
            return "HALTED", cause("kill_switch:orders", reason=f"orders kill switch by {shown_by(ks.engaged_by, viewer)}: {ks.reason}")
        if manual == "HALTED":
            return "HALTED", cause("manual", reason=f"halted by {shown_by(self.trading_row.manual_by, viewer)}: {self.trading_row.manual_reason}")
        for e in self.tripped("critical"):
            return "HALTED", breaker_cause(e)
        if manual == "REDUCING":
            return "REDUCING", cause("manual", reason=f"reduce-only by {shown_by(self.trading_row.manual_by, viewer)}: {self.trading_row.manual_reason}")
        for e in self.tripped("reduce_only"):
            return "REDUCING", breaker_cause(e)
        return "ACTIVE", cause(None, reason="no breaker tripped")

    def scoring_mode(self) -> str:
        """rules_only when the ML kill switch is engaged or any breaker is tripped."""
        return "rules_only" if self.switch("ml_scoring") is not None or self.tripped() else "normal"

    def dirty(self) -> bool:
        """Whether something changed by the clock alone still needs recording."""
        if any(e.reset_at is not None for e in self.effective.values()):
            return True
        if any(e.tripped != bool(e.row is not None and e.row.tripped) for e in self.effective.values()):
            return True
        if any(r.tripped and n not in self.configs for n, r in self.rows.items()):
            return True
        stored = self.trading_row.state if self.trading_row else "ACTIVE"
        return stored != self.state()[0]


def cause(breaker, value=None, limit=None, reason=""):
    return {"breaker": breaker, "value": value, "limit": limit, "reason": reason}


def breaker_cause(e: Effective) -> dict:
    value = e.measure.value if e.measure else (e.row.current_value if e.row is not None else None)
    message = e.measure.message if e.measure and e.measure.breached else (
        e.row.message if e.row is not None and e.row.message else f"{e.config.breaker} tripped")
    return cause(e.config.breaker, value, e.config.limit, f"{e.config.breaker}: {message}")


# The hooks run on every execution and scoring: their statements are built once, with bind
# parameters (building a SQLAlchemy statement costs more than SQLite running it).
_UID = sa.bindparam("uid")


def _engaged(kind: str):
    ks = t.kill_switches
    return sa.exists().where(ks.c.engaged.is_(True), ks.c.kind == kind,
                             sa.or_(ks.c.scope_key == 0, ks.c.scope_key == _UID))


_TRADING = sa.select(t.trading_state, _engaged("orders").label("orders_switch"),
                     _engaged("ml_scoring").label("ml_switch")).where(t.trading_state.c.user_id == _UID)
_TRADING_LOCKED = _TRADING.with_for_update()
_CONFIGS_WITH_LATCHES = (
    sa.select(t.configs, *[c.label(f"s_{c.name}") for c in t.states.c])
    .select_from(t.configs.outerjoin(t.states, sa.and_(t.states.c.user_id == _UID,
                                                       t.states.c.breaker == t.configs.c.breaker)))
    .where(sa.or_(t.configs.c.scope_key == 0, t.configs.c.scope_key == _UID)))


def trading_row(conn, user_id: int, *, lock: bool = False):
    """The user's trading-state row, with flags telling whether an orders / ML kill switch
    (the user's or the deployment's) is engaged. ``lock``: ``FOR UPDATE`` (SQLite's single
    writer needs none: its transactions already begin IMMEDIATE)."""
    return conn.execute(_TRADING_LOCKED if lock else _TRADING, {"uid": user_id}).first()


def snapshot(conn, user_id: int, now: dt.datetime, *, measure_all: bool = False, lean: bool = False,
             lock_clock=None, ensure_row=None) -> Snapshot:
    """Read everything the rules need for ``user_id`` at ``now``.

    ``lean`` (the hooks' path): as few round trips as possible: configs joined with their
    latches (latches of breakers no longer configured bind nothing and are not read), and the
    trading row with kill-switch flags (the switches themselves only when one is engaged).
    ``lock_clock`` (the order check): lock the trading row (``FOR UPDATE``; created by
    ``ensure_row(conn, user_id)`` when missing) if an order-rate limit is set, then read the
    clock, so execution timestamps follow lock order."""
    if not lean:
        configs = effective_configs(config_rows(conn, user_id))
        rows = {r.breaker: r for r in conn.execute(sa.select(t.states).where(t.states.c.user_id == user_id))}
        trow = trading_row(conn, user_id)
    else:
        joined = conn.execute(_CONFIGS_WITH_LATCHES, {"uid": user_id}).fetchall()
        configs = effective_configs(joined)
        rows = {r.breaker: _StateRow(r) for r in joined if r.s_user_id is not None}
        lock = lock_clock is not None and ORDER_RATE in configs
        trow = trading_row(conn, user_id, lock=lock)
        if trow is None and lock:
            ensure_row(conn, user_id)
            trow = trading_row(conn, user_id, lock=True)
        if lock:
            now = lock_clock()
    if trow is None or trow.orders_switch or trow.ml_switch:
        switches = conn.execute(sa.select(t.kill_switches).where(
            t.kill_switches.c.engaged.is_(True), t.kill_switches.c.scope_key.in_([0, user_id]))).fetchall()
    else:
        switches = []
    effective = {}
    for name, cfg in configs.items():
        row = rows.get(name)
        latched = bool(row is not None and row.tripped)
        m = measure(conn, user_id, cfg, now) if (measure_all or cfg.reset_policy == "auto" or
                                                 (lock_clock is not None and name == ORDER_RATE)) else None
        if cfg.reset_policy == "auto":
            effective[name] = Effective(cfg, row, m.breached, None, m)
        elif latched and cfg.reset_policy == "session_open" and \
                now >= (at := next_session_open(row.tripped_at, cfg.session_open, cfg.session_tz)):
            effective[name] = Effective(cfg, row, False, at, m)
        else:
            effective[name] = Effective(cfg, row, latched, None, m)
    return Snapshot(user_id, now, configs, rows, effective, switches, trow)


class _StateRow:
    """A breaker_states row read through the join (columns prefixed ``s_``)."""

    def __init__(self, joined):
        self._j = joined

    def __getattr__(self, name):
        return getattr(self._j, f"s_{name}")
