"""mlloop_0003 to mlloop_0005 on a database made before them: the new columns, tables and the
low-data regime index appear, the market fields a user's stream may not have become nullable, and the rows already
there are kept."""
from __future__ import annotations

import os
import tempfile
import uuid

import sqlalchemy as sa

from plugins.mlloop import tables

OLD_COLUMNS = {"ml_decisions": ("tier_probabilities", "p_profitable", "rule_source"),
               "ml_feature_snapshots": ("extra_features",)}
WERE_REQUIRED = ("gex_total", "gex_call_wall", "gex_put_wall", "gex_gamma_flip", "market_mode", "bias_lfi")


def _url(stack, request):
    if stack == "embedded":
        return f"sqlite:///{tempfile.mkdtemp(prefix='tl_mig_')}/m.db", None
    from tests.conftest import MARIADB_URL
    request.getfixturevalue("mariadb_url")
    name = f"tl_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    eng = sa.create_engine(MARIADB_URL + "/test")
    with eng.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")

    def drop():
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        eng.dispose()
    return f"{MARIADB_URL}/{name}", drop


def _old_shape(conn) -> None:
    """Rebuild the three tables as mlloop_0002 left them (no new columns, required market
    fields), drop the feature-set table, and stamp the branch at mlloop_0002."""
    old = sa.MetaData()
    for name in ("ml_market_snapshots", *OLD_COLUMNS):
        table = tables.metadata.tables[name]
        cols = []
        for c in table.columns:
            if c.name in OLD_COLUMNS.get(name, ()):
                continue
            copy = c._copy()
            if name == "ml_market_snapshots" and c.name in WERE_REQUIRED:
                copy.nullable = False
            cols.append(copy)
        sa.Table(name, old, *cols)
    conn.execute(sa.text("DROP TABLE ml_feature_sets"))
    conn.execute(sa.text("DROP TABLE ml_deep_scores"))
    next(i for i in tables.tracked_ideas.indexes if i.name == "ix_tracked_ideas_status_regime").drop(conn)
    for name in ("ml_market_snapshots", *OLD_COLUMNS):
        conn.execute(sa.text(f"DROP TABLE {name}"))
    old.create_all(conn)
    conn.execute(sa.text("UPDATE alembic_version_mlloop SET version_num = 'mlloop_0002'"))


def test_0003_upgrades_a_database_made_before_it(app_factory, stack, request):
    from app.migrate import upgrade
    url, drop = _url(stack, request)
    try:
        app = app_factory(["mlloop"], DATABASE_URL=url)
        ext = app.extensions["tradeloop"]
        with ext.db.engine.begin() as c:
            _old_shape(c)
            c.execute(sa.text(
                "INSERT INTO ml_market_snapshots (user_id, symbol, time, spot, vix, vix3m, gex_total, "
                "gex_call_wall, gex_put_wall, gex_gamma_flip, market_mode, bias_lfi) VALUES "
                "(7, 'SPX', '2025-01-06 15:00:00.000', 6000, 16, 17, 1e9, 6050, 5950, 5990, 'pin', 0.3)"))
        inspector = sa.inspect(ext.db.engine)
        assert "extra_features" not in {c["name"] for c in inspector.get_columns("ml_feature_snapshots")}
        upgrade(ext, echo=None)
        inspector = sa.inspect(ext.db.engine)
        for name, cols in OLD_COLUMNS.items():
            assert set(cols) <= {c["name"] for c in inspector.get_columns(name)}
        snaps = {c["name"]: c for c in inspector.get_columns("ml_market_snapshots")}
        assert all(snaps[n]["nullable"] for n in WERE_REQUIRED)
        assert {"ml_feature_sets", "ml_deep_scores"} <= set(inspector.get_table_names())
        assert "ix_tracked_ideas_status_regime" in {i["name"] for i in inspector.get_indexes("tracked_ideas")}
        with ext.db.engine.begin() as c:
            kept = c.execute(sa.text("SELECT spot, market_mode FROM ml_market_snapshots WHERE user_id = 7")).all()
            version = c.execute(sa.text("SELECT version_num FROM alembic_version_mlloop")).scalar()
        assert [(float(s), m) for s, m in kept] == [(6000.0, "pin")] and version == "mlloop_0005"
        ext.db.dispose()
    finally:
        if drop:
            drop()
