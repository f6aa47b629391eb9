"""The embedded default's demo data: a newcomer sees positions, fills, journal entries and an
order at once."""
from __future__ import annotations

from tests.tradelog.conftest import TL


def test_demo_data_loads_a_small_realistic_book(tl_app, new_client):
    c = new_client(tl_app)
    ext = tl_app.extensions["tradeloop"]
    with ext.db.transaction() as conn:
        ext.plugins.pm.hook.load_demo_data(conn=conn, user_id=c.user.id)
    tl = TL(c)
    positions = c.get("/api/positions").json
    assert sorted(p["status"] for p in positions) == ["closed", "closed", "closed", "open", "open"]
    strategies = sorted(tl.snapshot(p["id"])["metadata"]["derived_strategy"] for p in positions)
    assert strategies == ["butterfly", "iron_condor", "stock", "vertical", "vertical"]
    assert all(tl.snapshot(p["id"])["fills"] for p in positions)
    journal = [e for p in positions for e in c.get(f"/api/journal_entries?position_id={p['id']}").json]
    assert len(journal) == 3 and {e["phase"] for e in journal} == {"review", "exit", "entry"}
    assert len(c.get("/api/orders/active").json) == 1
    stats = c.get("/api/tradelog/stats").json["overall"]
    assert stats["closed_positions"] == 3 and stats["wins"] == 2
