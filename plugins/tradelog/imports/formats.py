"""Broker export layouts -> executions (pure: text in, ``Execution`` records or row errors out).

Three formats (docs/tradelog.md, "Importing executions", has a small example of each):

* ``generic`` — our documented CSV, one row per execution.
* ``ibkr_flex`` — Interactive Brokers' Flex Query *Trades* section exported as CSV with column
  headers (the Flex field names: ``AssetClass, Symbol, UnderlyingSymbol, Multiplier, Strike,
  Expiry, Put/Call, DateTime`` or ``TradeDate``/``TradeTime``, ``Quantity`` (signed),
  ``TradePrice``, ``IBCommission`` (negative), ``Buy/Sell``, ``Open/CloseIndicator``,
  ``Notes/Codes`` (``A`` assignment, ``Ex`` exercise, ``Ep`` expired), ``IBExecID``,
  ``TradeID``, ``IBOrderID``/``OrderID``). Repeated header lines (one per account or section)
  are skipped.
* ``tastytrade`` — tastytrade's transaction history CSV (``Date, Type, Sub Type, Action, Symbol,
  Instrument Type, Description, Value, Quantity, Average Price, Commissions, Fees, Multiplier,
  Root Symbol, Underlying Symbol, Expiration Date, Strike Price, Call or Put, Order #``, and
  ``Total, Currency`` in newer exports). ``Average Price`` is per contract (price x multiplier,
  signed like the cash); ``Money Movement`` rows are not executions and are skipped.

Every execution gets a stable **fingerprint**: the broker's execution id where the file has
one (IB's ``IBExecID``/``TradeID``, the generic ``execution_id``), else a hash of the row's
fields and its rank among identical rows, so an overlapping later export fingerprints its
executions the same way.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import re
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

FORMATS = ("generic", "ibkr_flex", "tastytrade")
EVENTS = ("trade", "expiration", "exercise", "assignment")
UTC = dt.timezone.utc
ZERO = Decimal(0)

# OCC option symbol: root (1-6 chars, space padded to 6 in the standard form), YYMMDD,
# C/P, strike x 1000 on 8 digits. "SPY   250620P00500000" or the compact "SPY250620P00500000".
OCC = re.compile(r"^\s*\.?(?P<root>[A-Z0-9]{1,6})\s*(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})\s*$")


class RowError(ValueError):
    """A bad row: its 1-based line in the file, the column, and why."""

    def __init__(self, line: int, column: str, message: str):
        self.line, self.column, self.message = line, column, message
        super().__init__(f"line {line}, column {column}: {message}")

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "reason": self.message}


@dataclasses.dataclass
class Execution:
    line: int
    fingerprint: str
    occurred_at: dt.datetime          # UTC
    underlying: str                   # the underlying's symbol (SPX, AAPL)
    root: str                         # the option root / trading symbol (SPXW, AAPL)
    instrument_type: str              # option | stock | future
    quantity: int                     # signed: + bought, - sold (a settlement row: the contracts)
    price: Decimal                    # per unit, >= 0
    fees: Decimal = ZERO              # >= 0: commissions and fees
    expiry: dt.date | None = None
    strike: Decimal | None = None
    right: str | None = None          # call | put
    multiplier: int = 1
    order_id: str | None = None
    open_close: str | None = None     # open | close | None (unknown)
    event: str = "trade"              # trade | expiration | exercise | assignment
    cash_settled: bool = False        # an exercise/assignment paid in cash (index options)

    @property
    def contract(self) -> tuple:
        return (self.underlying, self.instrument_type, self.expiry, self.strike, self.right, self.multiplier)


def parse_occ(text: str) -> tuple[str, dt.date, str, Decimal] | None:
    """``"SPY   250620P00500000"`` -> ``("SPY", date(2025, 6, 20), "put", Decimal("500"))``."""
    m = OCC.match(text.upper())
    if not m:
        return None
    try:
        expiry = dt.datetime.strptime(m["date"], "%y%m%d").date()
    except ValueError:
        return None
    return m["root"], expiry, "call" if m["right"] == "C" else "put", Decimal(m["strike"]) / 1000


def occ_symbol(root: str, expiry: dt.date, right: str, strike: Decimal) -> str:
    """The standard 21-character OCC symbol."""
    return f"{root:<6}{expiry:%y%m%d}{'C' if right == 'call' else 'P'}{int(strike * 1000):08d}"


def _hash(*parts) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


class _Row:
    """One CSV row with its line number; typed getters raise RowError naming the column."""

    def __init__(self, line: int, values: dict[str, str]):
        self.line, self.values = line, values

    def raw(self, col: str) -> str:
        return (self.values.get(col) or "").strip()

    def text(self, col: str, required: bool = True) -> str | None:
        v = self.raw(col)
        if not v or v == "--":
            if required:
                raise RowError(self.line, col, "is empty")
            return None
        return v

    def decimal(self, col: str, required: bool = True) -> Decimal | None:
        v = self.text(col, required)
        if v is None:
            return None
        try:
            d = Decimal(v.replace(",", "").replace("$", ""))
        except InvalidOperation:
            raise RowError(self.line, col, f"{v!r} is not a number") from None
        if not d.is_finite():
            raise RowError(self.line, col, f"{v!r} is not a number")
        return d

    def integer(self, col: str, required: bool = True) -> int | None:
        d = self.decimal(col, required)
        if d is None:
            return None
        if d != d.to_integral_value():
            raise RowError(self.line, col, f"{d} is not a whole number of units")
        return int(d)

    def date(self, col: str, formats: tuple[str, ...], required: bool = True) -> dt.date | None:
        v = self.text(col, required)
        if v is None:
            return None
        for f in formats:
            try:
                return dt.datetime.strptime(v, f).date()
            except ValueError:
                continue
        raise RowError(self.line, col, f"{v!r} is not a date ({' or '.join(formats)})")

    def time(self, col: str, formats: tuple[str, ...], tz: dt.tzinfo) -> dt.datetime:
        v = self.text(col)
        for f in formats:
            try:
                t = dt.datetime.strptime(v, f)
            except ValueError:
                continue
            return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)
        try:
            t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise RowError(self.line, col, f"{v!r} is not a time") from None
        return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)


def _rows(text: str, required: tuple[str, ...]) -> tuple[list[str], list[_Row]]:
    """The header and the data rows (line numbers as a text editor counts them); a repeated
    header line is skipped. RowError for a missing column (line 1) or a ragged row."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header: list[str] | None = None
    rows: list[_Row] = []
    for values in reader:
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        cells = [v.strip() for v in values]
        if header is None:
            header = cells
            missing = [c for c in required if c not in header]
            if missing:
                raise RowError(line, missing[0], f"missing column (the header has: {', '.join(header)})")
            continue
        if cells == header:
            continue
        if len(cells) != len(header):
            raise RowError(line, "*", f"{len(cells)} values for {len(header)} columns")
        rows.append(_Row(line, dict(zip(header, values))))
    if header is None:
        raise RowError(1, "*", "the file is empty")
    return header, rows


def _ranked(rows: list[tuple[_Row, tuple]]) -> dict[int, int]:
    """line -> how many identical rows (by key) came before it: keeps hash fingerprints apart."""
    seen: dict[tuple, int] = {}
    out = {}
    for row, key in rows:
        out[row.line] = seen.get(key, 0)
        seen[key] = out[row.line] + 1
    return out


# -- generic -------------------------------------------------------------------------------------
GENERIC_COLUMNS = ("occurred_at", "symbol", "side", "quantity", "price")
GENERIC_OPTIONAL = ("execution_id", "order_id", "underlying", "instrument_type", "expiry", "strike", "right",
                    "fees", "multiplier", "open_close", "event")


def parse_generic(text: str, tz: dt.tzinfo) -> tuple[list[Execution], list[RowError]]:
    _, rows = _rows(text, GENERIC_COLUMNS)
    out, errs = [], []
    keys = [(r, tuple(r.raw(c) for c in GENERIC_COLUMNS + GENERIC_OPTIONAL)) for r in rows]
    rank = _ranked(keys)
    for r in rows:
        try:
            out.append(_generic(r, tz, rank[r.line]))
        except RowError as exc:
            errs.append(exc)
    return out, errs


def _generic(r: _Row, tz, rank: int) -> Execution:
    at = r.time("occurred_at", ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"), tz)
    symbol = r.text("symbol").upper()
    side = r.text("side").lower()
    if side not in ("buy", "sell"):
        raise RowError(r.line, "side", f"{side!r}: buy or sell")
    qty = r.integer("quantity")
    if qty <= 0:
        raise RowError(r.line, "quantity", "must be positive (the side gives the direction)")
    price = r.decimal("price")
    if price < 0:
        raise RowError(r.line, "price", "must not be negative")
    fees = r.decimal("fees", False) or ZERO
    if fees < 0:
        raise RowError(r.line, "fees", "must not be negative")
    kind = (r.text("instrument_type", False) or "").lower() or None
    occ = parse_occ(symbol)
    event = (r.text("event", False) or "trade").lower()
    if event not in EVENTS:
        raise RowError(r.line, "event", f"{event!r}: one of {', '.join(EVENTS)}")
    oc = (r.text("open_close", False) or "").lower() or None
    if oc not in (None, "open", "close"):
        raise RowError(r.line, "open_close", f"{oc!r}: open or close")
    e = Execution(line=r.line, fingerprint="", occurred_at=at, underlying=symbol, root=symbol,
                  instrument_type=kind or ("option" if occ else "stock"), quantity=qty if side == "buy" else -qty,
                  price=price, fees=fees, order_id=r.text("order_id", False), open_close=oc, event=event)
    if e.instrument_type not in ("option", "stock", "future"):
        raise RowError(r.line, "instrument_type", f"{kind!r}: option, stock or future")
    if e.instrument_type == "option":
        if occ:
            e.root, e.expiry, e.right, e.strike = occ
        else:
            e.root = symbol
            e.expiry = r.date("expiry", ("%Y-%m-%d",))
            e.strike = r.decimal("strike")
            right = (r.text("right") or "").lower()
            e.right = {"c": "call", "p": "put"}.get(right, right)
            if e.right not in ("call", "put"):
                raise RowError(r.line, "right", f"{right!r}: call or put")
        if e.strike <= 0:
            raise RowError(r.line, "strike", "must be positive")
        e.underlying = (r.text("underlying", False) or e.root).upper()
        e.multiplier = r.integer("multiplier", False) or 100
    else:
        e.underlying = (r.text("underlying", False) or symbol).upper()
        e.multiplier = r.integer("multiplier", False) or 1
        if kind == "future":
            e.expiry = r.date("expiry", ("%Y-%m-%d",))
    if e.multiplier <= 0:
        raise RowError(r.line, "multiplier", "must be positive")
    exec_id = r.text("execution_id", False)
    e.fingerprint = "generic:" + (exec_id if exec_id else _hash(*(r.raw(c) for c in GENERIC_COLUMNS + GENERIC_OPTIONAL), rank))
    return e


# -- Interactive Brokers Flex Query (Trades) -------------------------------------------------------
IB_COLUMNS = ("AssetClass", "Symbol", "Quantity", "TradePrice")
IB_TIME_FORMATS = ("%Y%m%d;%H%M%S", "%Y%m%d %H%M%S", "%Y%m%d;%H:%M:%S", "%Y-%m-%d;%H:%M:%S", "%Y-%m-%d, %H:%M:%S",
                   "%Y-%m-%d %H:%M:%S", "%Y%m%d")
IB_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y")


def parse_ibkr_flex(text: str, tz: dt.tzinfo) -> tuple[list[Execution], list[RowError]]:
    header, rows = _rows(text, IB_COLUMNS)
    if "DateTime" not in header and "TradeDate" not in header:
        raise RowError(1, "DateTime", "missing column (DateTime, or TradeDate and TradeTime)")
    out, errs = [], []
    rank = _ranked([(r, tuple(r.values.values())) for r in rows])
    for r in rows:
        try:
            e = _ibkr(r, tz, rank[r.line])
            if e is not None:
                out.append(e)
        except RowError as exc:
            errs.append(exc)
    return out, errs


def _ibkr(r: _Row, tz, rank: int) -> Execution | None:
    asset = r.text("AssetClass").upper()
    kinds = {"STK": "stock", "OPT": "option", "FUT": "future"}
    if asset not in kinds:
        raise RowError(r.line, "AssetClass", f"{asset!r}: STK, OPT or FUT are imported")
    if r.raw("DateTime"):
        at = r.time("DateTime", IB_TIME_FORMATS, tz)
    else:
        day = r.text("TradeDate")
        clock = r.raw("TradeTime") or "000000"
        at = _Row(r.line, {"TradeDate": f"{day};{clock.replace(':', '')}"}).time("TradeDate", IB_TIME_FORMATS, tz)
    qty = r.integer("Quantity")
    if qty == 0:
        raise RowError(r.line, "Quantity", "is 0")
    buy_sell = r.raw("Buy/Sell").upper()
    if buy_sell.startswith("SELL") and qty > 0 or buy_sell.startswith("BUY") and qty < 0:
        raise RowError(r.line, "Quantity", f"its sign disagrees with Buy/Sell {buy_sell}")
    price = r.decimal("TradePrice")
    if price < 0:
        raise RowError(r.line, "TradePrice", "must not be negative")
    fees = -(r.decimal("IBCommission", False) or ZERO) + abs(r.decimal("Taxes", False) or ZERO)
    if fees < 0:  # IB reports a rebate as a positive commission
        fees = ZERO
    codes = {c.strip() for c in re.split(r"[;,]", r.raw("Notes/Codes")) if c.strip()}
    indicator = r.raw("Open/CloseIndicator").upper()
    oc = "close" if indicator.startswith("C") else "open" if indicator.startswith("O") else None
    event = "assignment" if "A" in codes else "exercise" if "Ex" in codes else "expiration" if "Ep" in codes else "trade"
    symbol = r.text("Symbol").upper()
    e = Execution(line=r.line, fingerprint="", occurred_at=at, underlying=symbol, root=symbol,
                  instrument_type=kinds[asset], quantity=qty, price=price, fees=fees,
                  order_id=r.raw("IBOrderID") or r.raw("OrderID") or None, open_close=oc, event=event)
    if e.instrument_type == "option":
        occ = parse_occ(symbol)
        e.underlying = (r.raw("UnderlyingSymbol") or (occ[0] if occ else symbol)).upper()
        e.root = occ[0] if occ else e.underlying
        e.expiry = r.date("Expiry", IB_DATE_FORMATS, required=occ is None) or (occ[1] if occ else None)
        strike = r.decimal("Strike", required=occ is None)
        e.strike = strike if strike is not None else occ[3]
        pc = r.raw("Put/Call").upper()[:1] or (("C" if occ[2] == "call" else "P") if occ else "")
        if pc not in ("C", "P"):
            raise RowError(r.line, "Put/Call", f"{r.raw('Put/Call')!r}: C or P")
        e.right = "call" if pc == "C" else "put"
        e.multiplier = r.integer("Multiplier", False) or 100
    else:
        e.underlying = e.root = (r.raw("UnderlyingSymbol") if e.instrument_type == "future" and r.raw("UnderlyingSymbol")
                                 else symbol).upper()
        e.multiplier = r.integer("Multiplier", False) or 1
        if e.instrument_type == "future":
            e.expiry = r.date("Expiry", IB_DATE_FORMATS)
    exec_id = r.raw("IBExecID") or r.raw("TradeID") or r.raw("TransactionID")
    e.fingerprint = "ibkr:" + (exec_id if exec_id else _hash(*r.values.values(), rank))
    return e


# -- tastytrade transaction history ----------------------------------------------------------------
TASTY_COLUMNS = ("Date", "Type", "Symbol", "Instrument Type", "Quantity", "Average Price")
TASTY_ACTIONS = {"BUY_TO_OPEN": (1, "open"), "SELL_TO_OPEN": (-1, "open"), "BUY_TO_CLOSE": (1, "close"),
                 "SELL_TO_CLOSE": (-1, "close"), "BUY": (1, None), "SELL": (-1, None)}
TASTY_KINDS = {"EQUITY OPTION": "option", "INDEX OPTION": "option", "EQUITY": "stock", "FUTURE": "future"}


def parse_tastytrade(text: str, tz: dt.tzinfo) -> tuple[list[Execution], list[RowError]]:
    _, rows = _rows(text, TASTY_COLUMNS)
    out, errs = [], []
    rank = _ranked([(r, tuple(r.values.values())) for r in rows])
    # tastytrade lists the newest first: keep the file's order only as a tie-break
    for r in rows:
        try:
            e = _tasty(r, tz, rank[r.line])
            if e is not None:
                out.append(e)
        except RowError as exc:
            errs.append(exc)
    return out, errs


def _tasty(r: _Row, tz, rank: int) -> Execution | None:
    kind = r.text("Type")
    if kind not in ("Trade", "Receive Deliver"):
        return None  # Money Movement (deposits, dividends, fees...) is not an execution
    sub = (r.raw("Sub Type") or "").lower()
    instrument = TASTY_KINDS.get(r.text("Instrument Type").upper())
    if instrument is None:
        raise RowError(r.line, "Instrument Type", f"{r.raw('Instrument Type')!r}: Equity, Equity Option, "
                                                  "Index Option or Future are imported")
    at = r.time("Date", ("%Y-%m-%dT%H:%M:%S%z", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M"), tz)
    qty = r.integer("Quantity")
    if qty <= 0:
        raise RowError(r.line, "Quantity", "must be positive (the Action gives the direction)")
    action = r.raw("Action").upper().replace(" ", "_")
    event = ("assignment" if "assignment" in sub else "exercise" if "exercise" in sub
             else "expiration" if "expiration" in sub else "trade")
    value = r.decimal("Value", False) or ZERO
    if action in TASTY_ACTIONS:
        sign, oc = TASTY_ACTIONS[action]
    elif event in ("assignment", "exercise", "expiration"):
        # the option's removal row of an assignment/exercise has no Action: it closes the leg
        sign, oc = 0, "close"
    else:
        raise RowError(r.line, "Action", f"{r.raw('Action')!r}: BUY_TO_OPEN, SELL_TO_OPEN, BUY_TO_CLOSE, "
                                         "SELL_TO_CLOSE, BUY or SELL")
    mult = r.integer("Multiplier", False) or (100 if instrument == "option" else 1)
    avg = abs(r.decimal("Average Price", False) or ZERO)
    price = avg / mult if instrument == "option" else avg  # tastytrade's average price is per contract
    fees = -((r.decimal("Commissions", False) or ZERO) + (r.decimal("Fees", False) or ZERO))
    symbol = r.text("Symbol").upper()
    e = Execution(line=r.line, fingerprint="", occurred_at=at, underlying=symbol, root=symbol,
                  instrument_type=instrument, quantity=sign * qty if sign else qty, price=price, fees=max(fees, ZERO),
                  order_id=r.raw("Order #") or None, open_close=oc, event=event,
                  cash_settled="cash settled" in sub)
    if instrument == "option":
        occ = parse_occ(symbol)
        e.root = (r.raw("Root Symbol") or (occ[0] if occ else "")).upper()
        e.underlying = (r.raw("Underlying Symbol") or e.root).upper()
        e.expiry = r.date("Expiration Date", ("%m/%d/%y", "%m/%d/%Y", "%Y-%m-%d"), required=occ is None) \
            or (occ[1] if occ else None)
        strike = r.decimal("Strike Price", required=occ is None)
        e.strike = strike if strike is not None else occ[3]
        cp = r.raw("Call or Put").upper()[:1] or (("C" if occ[2] == "call" else "P") if occ else "")
        if cp not in ("C", "P"):
            raise RowError(r.line, "Call or Put", f"{r.raw('Call or Put')!r}: CALL or PUT")
        e.right = "call" if cp == "C" else "put"
        e.multiplier = mult
        if e.cash_settled and e.price == 0 and value:
            e.price = abs(value) / (qty * mult)  # the cash paid or received per unit: the intrinsic value
    else:
        e.underlying = e.root = (r.raw("Underlying Symbol") or symbol).upper()
        if instrument == "future" and r.raw("Expiration Date"):
            e.expiry = r.date("Expiration Date", ("%m/%d/%y", "%m/%d/%Y", "%Y-%m-%d"))
    e.fingerprint = "tastytrade:" + _hash(*r.values.values(), rank)
    return e


PARSERS = {"generic": parse_generic, "ibkr_flex": parse_ibkr_flex, "tastytrade": parse_tastytrade}


def parse(text: str, fmt: str, timezone: str) -> tuple[list[Execution], list[RowError]]:
    """Executions (in market-time order) and row errors; raises RowError for a file-level
    problem (no header, a missing column) and KeyError for an unknown format or time zone."""
    tz = ZoneInfo(timezone)
    executions, errs = PARSERS[fmt](text, tz)
    executions.sort(key=lambda e: (e.occurred_at, e.line))
    return executions, errs
