"""mlloop: user streams -- nullable market fields, declared feature sets with extra features,
the decision's tier forecast, P(profitable) and rule source.

The baseline creates tables as ``tables.py`` declares them, so a fresh database already has
all of this; an existing one gets the missing columns and table, and the market fields a
user's stream may not have become nullable.

Revision ID: mlloop_0003
"""
import sqlalchemy as sa
from alembic import op

revision = "mlloop_0003"
down_revision = "mlloop_0002"
branch_labels = None
depends_on = None

# Columns added to existing tables (a fresh database has them from mlloop_0001), and the
# market fields a user's stream may not have.
ADDED = {"ml_decisions": ("tier_probabilities", "p_profitable", "rule_source"),
         "ml_feature_snapshots": ("extra_features",)}
NULLABLE = {"ml_market_snapshots": ("gex_total", "gex_call_wall", "gex_put_wall", "gex_gamma_flip",
                                    "market_mode", "bias_lfi")}


def upgrade():
    from plugins.mlloop import tables
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table_name, names in ADDED.items():
        have = {c["name"] for c in inspector.get_columns(table_name)}
        for name in names:
            if name not in have:
                op.add_column(table_name, sa.Column(name, tables.metadata.tables[table_name].c[name].type,
                                                    nullable=True))
    tables.metadata.create_all(bind, tables=[tables.ml_feature_sets])
    for table_name, names in NULLABLE.items():
        columns = {c["name"]: c for c in inspector.get_columns(table_name)}
        stale = [n for n in names if not columns[n]["nullable"]]
        if stale:
            with op.batch_alter_table(table_name) as batch:  # SQLite rebuilds the table
                for n in stale:
                    batch.alter_column(n, existing_type=columns[n]["type"], nullable=True)


def downgrade():
    op.drop_table("ml_feature_sets")
    for table_name, names in ADDED.items():
        with op.batch_alter_table(table_name) as batch:
            for name in names:
                batch.drop_column(name)
