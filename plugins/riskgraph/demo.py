"""A newcomer's first risk graph: a few SPX strategies, a template and market inputs,
created through the same service functions as real traffic."""
from __future__ import annotations

from decimal import Decimal

from plugins.riskgraph import service

SPOT = 6000.0

STRATEGIES = [
    dict(strategy="vertical", side="call", strike=Decimal("6000"), width=25, dte=14,
         debit=Decimal("11.40"), label="6000/6025 call vertical", color="#2b7bb9"),
    dict(strategy="butterfly", side="put", strike=Decimal("5950"), width=25, dte=7,
         debit=Decimal("4.10"), label="5925/5950/5975 put fly", color="#d9822b"),
    dict(strategy="single", side="call", strike=Decimal("6100"), width=None, dte=21,
         debit=Decimal("18.75"), label="6100 long call", color="#6a9f3a", visible=False),
]


def load(conn, user_id: int) -> None:
    service.set_market_inputs(conn, user_id, "SPX", {"spot": SPOT, "iv": 0.16, "r": 0.04, "q": 0.013})
    for i, s in enumerate(STRATEGIES):
        service.create_strategy(conn, user_id, {"symbol": "SPX", "sort_order": i, **s},
                                change_reason="demo data")
    service.create_template(conn, user_id, {
        "name": "ATM call vertical, 2 weeks", "description": "25-wide debit call spread at the money",
        "symbol": "SPX", "strategy": "vertical", "side": "call", "strike_offset": 0, "width": 25,
        "dte_target": 14, "debit_estimate": Decimal("11.50")})
