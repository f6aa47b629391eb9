"""Broker statement import (issue 19): one synthetic book written in each format's
documented layout — opens, a partial close, a roll, an assignment and an expiration — imports
to the positions and realized P&L computed by hand; twice is the same state; an overlapping
export adds only what is new; a bad row imports nothing and names the row.

The book (XYZ: an equity option, physically settled, PM):
  O1 2025-05-01  sell 3 May-16 50 puts @ 1.50, fees 1.95            -> P1 opens
  O2 2025-05-06  buy 1 back @ 0.90, fees 0.65                        -> P1 realizes 58.70
  O3 2025-05-15  buy 2 back @ 0.60 (fees 1.30) and sell 2 Jun-20 48 puts @ 1.40 (fees 1.30),
                 one order: a roll -> P1 realizes 177.40 more (236.10) and closes; P2 opens
  O4 2025-05-20  buy 1 Jun-20 55 call @ 2.00, fees 0.65              -> P3 opens
  2025-06-20     the 48 puts are assigned: 200 shares at 48 (P2 realizes 2 x 1.40 x 100 - 1.30
                 = 278.70); the 55 call expires worthless (P3: -200 - 0.65 = -200.65, closed)
  O5 2025-06-23  sell the 200 shares @ 47.00, fees 1.00: (47 - 48) x 200 - 1 = -201;
                 P2 realizes 77.70 in all and closes
  Total realized: 236.10 + 77.70 - 200.65 = 113.15.
"""
from __future__ import annotations

import io
import json

import pytest

from tests.tradelog.conftest import events_of, key

# -- the book, one row per execution (neutral form) ---------------------------------------------
# (id, order, utc time, kind, symbol/occ, side, qty, price, fees, event)
BOOK = [
    ("E1", "O1", "2025-05-01T14:00:00Z", "option", ("2025-05-16", "P", "50"), "sell", 3, "1.50", "1.95", "trade"),
    ("E2", "O2", "2025-05-06T14:00:00Z", "option", ("2025-05-16", "P", "50"), "buy", 1, "0.90", "0.65", "trade"),
    ("E3", "O3", "2025-05-15T14:00:00Z", "option", ("2025-05-16", "P", "50"), "buy", 2, "0.60", "1.30", "trade"),
    ("E4", "O3", "2025-05-15T14:00:00Z", "option", ("2025-06-20", "P", "48"), "sell", 2, "1.40", "1.30", "trade"),
    ("E5", "O4", "2025-05-20T14:00:00Z", "option", ("2025-06-20", "C", "55"), "buy", 1, "2.00", "0.65", "trade"),
    ("E6", "", "2025-06-20T20:30:00Z", "option", ("2025-06-20", "P", "48"), "buy", 2, "0", "0", "assignment"),
    ("E7", "", "2025-06-20T20:30:00Z", "stock", None, "buy", 200, "48.00", "0", "assignment"),
    ("E8", "", "2025-06-20T20:30:00Z", "option", ("2025-06-20", "C", "55"), "sell", 1, "0", "0", "expiration"),
    ("E9", "O5", "2025-06-23T14:00:00Z", "stock", None, "sell", 200, "47.00", "1.00", "trade"),
]


def occ(contract):
    expiry, right, strike = contract
    return f"XYZ   {expiry[2:4]}{expiry[5:7]}{expiry[8:10]}{right}{int(float(strike) * 1000):08d}"


def generic(rows=BOOK) -> str:
    out = ["execution_id,order_id,occurred_at,symbol,side,quantity,price,fees,event"]
    for i, o, t, kind, c, side, q, p, f, ev in rows:
        out.append(f"{i},{o},{t},{occ(c) if kind == 'option' else 'XYZ'},{side},{q},{p},{f},{ev}")
    return "\n".join(out) + "\n"


def _ny(t: str) -> str:
    """UTC -> New York wall clock (EDT in May/June 2025), IB's yyyyMMdd;HHmmss."""
    import datetime as dt
    from zoneinfo import ZoneInfo
    x = dt.datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(ZoneInfo("America/New_York"))
    return x.strftime("%Y%m%d;%H%M%S")


IB_HEADER = ("ClientAccountID,CurrencyPrimary,AssetClass,Symbol,Description,UnderlyingSymbol,Multiplier,Strike,Expiry,"
             "Put/Call,TradeID,IBExecID,IBOrderID,DateTime,TransactionType,Quantity,TradePrice,IBCommission,Buy/Sell,"
             "Open/CloseIndicator,Notes/Codes")


def ibkr(rows=BOOK) -> str:
    out = [IB_HEADER]
    opened = set()
    for i, o, t, kind, c, side, q, p, f, ev in rows:
        qty = q if side == "buy" else -q
        if kind == "option":
            expiry, right, strike = c
            contract = f'OPT,{occ(c)},XYZ {expiry} {strike} {right},XYZ,100,{strike},{expiry.replace("-", "")},{right}'
            key_ = c
        else:
            contract, key_ = "STK,XYZ,XYZ INC,XYZ,1,,,", "stk"
        oc = "C" if key_ in opened else "O"
        opened.add(key_)
        code = {"assignment": "A", "expiration": "Ep"}.get(ev, oc)
        tt = "BookTrade" if ev != "trade" else "ExchTrade"
        out.append(f"U1234567,USD,{contract},{i}0,{i}.01.01,{o},{_ny(t)},{tt},{qty},{p},-{f},"
                   f"{'BUY' if qty > 0 else 'SELL'},{oc},{code}")
    # IB repeats the header line when a file holds several sections or accounts
    return "\n".join(out[:4] + [IB_HEADER] + out[4:]) + "\n"


TASTY_HEADER = ("Date,Type,Sub Type,Action,Symbol,Instrument Type,Description,Value,Quantity,Average Price,Commissions,"
                "Fees,Multiplier,Root Symbol,Underlying Symbol,Expiration Date,Strike Price,Call or Put,Order #,Total,"
                "Currency")


def tastytrade(rows=BOOK) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo
    out = []
    opened = set()
    for i, o, t, kind, c, side, q, p, f, ev in rows:
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(ZoneInfo("America/New_York"))
        date = when.strftime("%Y-%m-%dT%H:%M:%S%z")
        k = c if kind == "option" else "stk"
        effect = "CLOSE" if k in opened else "OPEN"
        opened.add(k)
        action = f"{side.upper()}_TO_{effect}"
        mult = 100 if kind == "option" else 1
        value = float(p) * q * mult * (1 if side == "sell" else -1)
        avg = float(p) * mult * (1 if side == "sell" else -1)
        fee = float(f)
        typ, sub = ("Trade", f"{side.title()} to {effect.title()}") if ev == "trade" else ("Receive Deliver", ev.title())
        if ev == "assignment" and kind == "option":
            action = ""  # the option's removal row carries no action
        if kind == "option":
            expiry, right, strike = c
            m, d, y = expiry[5:7], expiry[8:10], expiry[2:4]
            inst = f"{occ(c)},Equity Option,{side} {q} XYZ {right} {strike},{value:.2f},{q},{avg:.2f}"
            tail = f"100,XYZ,XYZ,{int(m)}/{int(d)}/{y},{strike},{'CALL' if right == 'C' else 'PUT'}"
        else:
            inst = f"XYZ,Equity,{side} {q} XYZ @ {p},{value:.2f},{q},{avg:.2f}"
            tail = ",,XYZ,,,"
        out.append(f"{date},{typ},{sub},{action},{inst},{-fee * 0.8:.2f},{-fee * 0.2:.2f},{tail},{o},"
                   f"{value - fee:.2f},USD")
    return TASTY_HEADER + "\n" + "\n".join(reversed(out)) + "\n"  # tastytrade lists the newest first


WRITERS = {"generic": generic, "ibkr_flex": ibkr, "tastytrade": tastytrade}


def upload(tl, text, fmt, **form):
    data = {"format": fmt, **{k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
            "file": (io.BytesIO(text.encode()), f"book.{fmt}.csv")}
    return tl.c.post("/api/imports", data=data, content_type="multipart/form-data", idem=key())


def imported(tl, text, fmt, **form):
    """POST the file (202 + its job), run the job system's pending jobs here, and answer
    ``(job, import record)``."""
    r = upload(tl, text, fmt, **form)
    assert r.status_code == 202, r.json
    assert r.json["kind"] == "tradelog.import" and r.headers["Location"] == f"/api/jobs/{r.json['id']}"
    tl.c.app.extensions["tradeloop"].jobs.run_pending()
    job = tl.c.get(r.headers["Location"]).json
    record = tl.c.get(f"/api/imports/{job['params']['import_id']}").json
    assert record["job_id"] == job["id"]
    return job, record


def book_state(tl):
    """Every position (oldest first): symbol, status, rolled_from index, realized P&L, legs'
    open quantities."""
    ps = sorted(tl.c.get("/api/positions?page_size=500").json, key=lambda p: (p["opened_at"] or "", p["created_at"]))
    index = {p["id"]: i for i, p in enumerate(ps)}
    return [(p["symbol"], p["status"], index.get(p["rolled_from"]), p["realized_pnl"],
             sorted((leg["instrument_type"], leg["open_quantity"]) for leg in p["legs"])) for p in ps]


EXPECTED = [
    ("XYZ", "closed", None, "236.1000", [("option", 0)]),
    ("XYZ", "closed", 0, "77.7000", [("option", 0), ("stock", 0)]),
    ("XYZ", "closed", None, "-200.6500", [("option", 0)]),
]


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_a_book_imports_to_the_hand_computed_positions(tl_app, tl, fmt):
    job, rec = imported(tl, WRITERS[fmt](), fmt)
    assert job["state"] == "succeeded" and rec["status"] == "succeeded", (job, rec)
    rep = rec["report"]
    assert job["result"]["realized_pnl"] == rep["realized_pnl"] and job["result"]["positions_created"] == 3
    assert (rep["rows"], rep["executions"], rep["fills_recorded"], len(rep["positions_created"])) == (9, 9, 9, 3)
    settled = sorted(rep["settlements"], key=lambda s: s["kind"])
    assert [(s["kind"], s["delivered_quantity"]) for s in settled] == [("assignment", 200), ("expiration", None)]
    assert settled[0]["delivery_line"] is not None            # the shares' row is the delivery
    assert len(rep["positions_closed"]) == 3 and rep["duplicates"] == [] and rep["rejected"] == []
    assert rep["realized_pnl"] == "113.1500" and rep["warnings"] == []
    assert book_state(tl) == EXPECTED
    p1, p2 = (x for x in rep["positions_created"][:2])
    assert p2["rolled_from"] == p1["position_id"]
    chain = tl.c.get(f"/api/positions/{p2['position_id']}/chain").json
    assert chain["realized_pnl"] == "313.8000" and chain["chain_id"] == p1["position_id"]   # 236.10 + 77.70
    assert tl.c.get("/api/imports").json == [rec]
    (ev,) = [e for e in events_of(tl_app, tl.c.user.id) if e.type == "ExecutionsImported"]
    assert ev.payload["positions_created"] == 3 and ev.payload["fills_recorded"] == 9

    # the same file again: every row is a duplicate, nothing changes
    _, again = imported(tl, WRITERS[fmt](), fmt)
    assert again["status"] == "succeeded"
    assert len(again["report"]["duplicates"]) == 9 and again["report"]["fills_recorded"] == 0
    assert book_state(tl) == EXPECTED


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_an_overlapping_later_export_adds_only_the_new_executions(tl, fmt):
    _, first = imported(tl, WRITERS[fmt](BOOK[:5]), fmt)
    assert first["status"] == "succeeded", first
    assert [p["status"] for p in tl.c.get("/api/positions").json].count("open") == 2  # P2 and P3
    _, rec = imported(tl, WRITERS[fmt](BOOK), fmt)
    rep = rec["report"]
    assert len(rep["duplicates"]) == 5
    assert len(rep["positions_created"]) == 0 and rep["fills_recorded"] == 4  # assignment (2), expiration, sale
    assert len(rep["settlements"]) == 2 and len(rep["fills_matched"]) == 1   # the sale lands in P2
    assert book_state(tl) == EXPECTED


@pytest.mark.parametrize("fmt,bad_line,column", [
    ("generic", 4, "quantity"), ("ibkr_flex", 4, "Quantity"), ("tastytrade", 8, "Quantity")])
def test_a_bad_row_imports_nothing_and_is_named(tl_app, tl, fmt, bad_line, column):
    text = WRITERS[fmt]().splitlines()
    cells = text[bad_line - 1].split(",")
    header = text[0].split(",")
    cells[header.index(column)] = "three"
    text[bad_line - 1] = ",".join(cells)
    before = [e.type for e in events_of(tl_app, tl.c.user.id)]
    job, rec = imported(tl, "\n".join(text) + "\n", fmt)
    assert job["state"] == "failed" and job["error"]["code"] == "import_rejected"
    assert rec["status"] == "rejected" and rec["report"] is None
    assert rec["error"]["rejected"] == [{"line": bad_line, "column": column, "reason": "'three' is not a number"}]
    assert f"line {bad_line}, column {column}" in rec["error"]["errors"]["files"]["file"][0]
    assert tl.c.get("/api/positions").json == []
    assert [t for t in (e.type for e in events_of(tl_app, tl.c.user.id)) if not t.startswith("Job")] == before
    _, skipped = imported(tl, "\n".join(text) + "\n", fmt, skip_bad_rows=True)
    assert skipped["status"] == "succeeded", skipped
    assert [x["line"] for x in skipped["report"]["rejected"]] == [bad_line]


def test_dry_run_answers_the_same_report_and_writes_nothing(tl_app, tl):
    _, dry = imported(tl, generic(), "generic", dry_run=True)
    assert dry["status"] == "succeeded" and dry["dry_run"] is True
    assert tl.c.get("/api/positions").json == []
    assert not [e for e in events_of(tl_app, tl.c.user.id) if e.type != "ExecutionsImported"]
    _, real = imported(tl, generic(), "generic")
    assert {**dry["report"], "dry_run": False} == real["report"]  # positions' ids are stable too


def test_a_closing_row_beyond_what_is_open_is_rejected_naming_it(tl):
    text = "execution_id,order_id,occurred_at,symbol,side,quantity,price,fees,open_close\n" \
           "X1,,2025-05-01T14:00:00Z,XYZ,buy,100,50,0,open\n" \
           "X2,,2025-05-02T14:00:00Z,XYZ,sell,150,51,0,close\n"
    _, rec = imported(tl, text, "generic")
    assert rec["status"] == "rejected" and rec["error"]["rejected"][0]["line"] == 3
    bad = rec["error"]["rejected"][0]
    assert bad["column"] == "quantity" and "closes 50 more" in bad["reason"]
    assert tl.c.get("/api/positions").json == []  # the good first row was not imported either


def test_times_without_an_offset_are_in_the_files_time_zone(tl):
    """10:00 with timezone Europe/London (BST in May) is 09:00 UTC; the default, New York
    (EDT), makes it 14:00 UTC."""
    text = "occurred_at,symbol,side,quantity,price\n2025-05-01 10:00:00,XYZ,buy,10,50\n"
    _, london = imported(tl, text, "generic", timezone="Europe/London")
    assert london["status"] == "succeeded"
    pos = tl.c.get("/api/positions").json[0]
    assert pos["opened_at"] == "2025-05-01T09:00:00.000Z"
    bad = upload(tl, text, "generic", timezone="Mars/Olympus")
    assert bad.status_code == 422 and "timezone" in bad.json["errors"]["form"]
    fmt = upload(tl, text, "quicken")
    assert fmt.status_code == 422 and "format" in fmt.json["errors"]["form"]


def test_occ_symbols():
    from decimal import Decimal
    import datetime as dt
    from plugins.tradelog.imports.formats import occ_symbol, parse_occ
    assert parse_occ("SPY   250620P00500000") == ("SPY", dt.date(2025, 6, 20), "put", Decimal("500"))
    assert parse_occ("SPXW250117C05912500") == ("SPXW", dt.date(2025, 1, 17), "call", Decimal("5912.5"))
    assert parse_occ(".AAPL250117C150") is None and parse_occ("AAPL") is None
    assert occ_symbol("SPY", dt.date(2025, 6, 20), "put", Decimal("500")) == "SPY   250620P00500000"


def test_the_import_command(tl_app, tl, tmp_path):
    path = tmp_path / "book.csv"
    path.write_text(generic())
    runner = tl_app.test_cli_runner(mix_stderr=False) if _mix_stderr() else tl_app.test_cli_runner()
    out = runner.invoke(args=["import", str(path), "--format", "generic", "--user", tl.c.user.name])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout[out.stdout.index("{"):])
    assert record["report"]["realized_pnl"] == "113.1500" and record["filename"] == "book.csv"
    assert record["status"] == "succeeded" and record["job_id"]
    assert book_state(tl) == EXPECTED
    bad = tmp_path / "bad.csv"
    bad.write_text(generic().replace("E2,O2,2025-05-06T14:00:00Z", "E2,O2,yesterday"))
    out = runner.invoke(args=["import", str(bad), "--format", "generic", "--user", tl.c.user.name])
    assert out.exit_code != 0 and "line 3, column occurred_at" in (out.output + (out.stderr if _mix_stderr() else ""))


def _mix_stderr() -> bool:
    import inspect
    from click.testing import CliRunner
    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def test_the_documented_examples_parse():
    """docs/tradelog.md shows a small example of each format: each reads without a bad row, to
    the executions it describes."""
    import os
    import re
    from decimal import Decimal
    from plugins.tradelog.imports.formats import parse
    from tests.conftest import ROOT
    doc = open(os.path.join(ROOT, "docs", "tradelog.md"), encoding="utf-8").read()
    section = doc[doc.index("### Formats"):]
    blocks = dict(re.findall(r"\*\*`(\w+)`\*\* — .*?```\n(.*?)```", section, re.S))
    assert set(blocks) == set(WRITERS)
    got = {fmt: parse(text, fmt, "America/New_York") for fmt, text in blocks.items()}
    assert all(bad == [] for _, bad in got.values()), got
    g = got["generic"][0]
    assert [(e.event, e.instrument_type, e.quantity, e.strike) for e in g] == [
        ("trade", "option", -3, Decimal("50")), ("assignment", "option", 2, Decimal("48")),
        ("assignment", "stock", 200, None)]
    ib = got["ibkr_flex"][0]
    assert [(e.event, e.quantity, e.fees, e.occurred_at.isoformat()) for e in ib] == [
        ("trade", -3, Decimal("1.95"), "2025-05-01T14:00:00+00:00"),
        ("expiration", -1, Decimal("0"), "2025-06-20T20:30:00+00:00")]
    tt = got["tastytrade"][0]
    assert [(e.event, e.quantity, e.price, e.fees) for e in tt] == [
        ("trade", -3, Decimal("1.5"), Decimal("1.95")), ("assignment", 2, Decimal("0"), Decimal("0"))]
