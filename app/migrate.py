"""Run Alembic for the core branch and each enabled plugin's branch."""
from __future__ import annotations

import os

from alembic import command
from alembic.config import Config

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_LOCATION = os.path.join(HERE, "migrations")
CORE_VERSIONS = os.path.join(SCRIPT_LOCATION, "versions")


def branches(ext) -> dict[str, str]:
    """branch label -> versions directory, core first."""
    out = {"core": CORE_VERSIONS}
    for plugin, (label, path) in ext.migrations.items():
        out[label] = path
    return out


def upgrade(ext, *, echo=print) -> list[str]:
    done = []
    for label, path in branches(ext).items():
        cfg = Config()
        cfg.set_main_option("script_location", SCRIPT_LOCATION)
        cfg.set_main_option("version_locations", path)
        cfg.set_main_option("path_separator", "os")
        with ext.db.engine.begin() as conn:
            if ext.db.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            cfg.attributes["connection"] = conn
            cfg.attributes["version_table"] = f"alembic_version_{label}"
            command.upgrade(cfg, "heads")
        done.append(label)
    with ext.db.transaction() as conn:
        from bus import outbox
        outbox.ensure_streams(conn, ext.topic_names())
    if echo:
        echo(f"migrated: {', '.join(done)}")
    return done
