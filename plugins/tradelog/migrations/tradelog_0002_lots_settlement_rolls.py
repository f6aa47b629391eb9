"""tradelog: lots, settlement, rolls, marks, reducing orders, import fingerprints, the
journal's risk picture.

New tables are created; new columns are added to the baseline's tables where missing (the
baseline creates the tables as ``tables.py`` declares them, so a fresh database already has
them and only an existing one needs the columns). Existing positions start their own chain.

Revision ID: tradelog_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "tradelog_0002"
down_revision = "tradelog_0001"
branch_labels = None
depends_on = None


def upgrade():
    from plugins.tradelog import tables
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table_name, names in tables.ADDED_0002.items():
        have = {c["name"] for c in inspector.get_columns(table_name)}
        table = tables.metadata.tables[table_name]
        for name in names:
            if name not in have:
                col = table.c[name]
                op.add_column(table_name, sa.Column(name, col.type, nullable=True if col.server_default is None
                                                    else col.nullable, server_default=col.server_default.arg
                                                    if col.server_default is not None else None))
    have_indexes = {i["name"] for i in inspector.get_indexes("tl_fills")}
    if "ux_tl_fills_fingerprint" not in have_indexes:
        op.create_index("ux_tl_fills_fingerprint", "tl_fills", ["user_id", "fingerprint"], unique=True)
    if "ix_tl_positions_chain" not in {i["name"] for i in inspector.get_indexes("tl_positions")}:
        op.create_index("ix_tl_positions_chain", "tl_positions", ["user_id", "chain_id"])
    tables.metadata.create_all(bind, tables=[tables.settlements, tables.settlement_prices, tables.marks])
    op.execute("UPDATE tl_positions SET chain_id = id WHERE chain_id IS NULL")
    op.execute("UPDATE tl_legs SET open_quantity = (SELECT COALESCE(SUM(f.quantity), 0) FROM tl_fills f "
               "WHERE f.leg_id = tl_legs.id)")


def downgrade():
    from plugins.tradelog import tables
    tables.metadata.drop_all(op.get_bind(), tables=[tables.marks, tables.settlement_prices, tables.settlements])
    for table_name, names in tables.ADDED_0002.items():
        with op.batch_alter_table(table_name) as batch:
            for name in names:
                batch.drop_column(name)
