"""CLI commands on a database that was never migrated fail with one line, not a traceback.

Found by the breaker: ``cd /tmp && tradeloop users create x`` printed SQLAlchemy's
``no such table: users`` traceback and left an empty ``tradeloop.db`` in the directory.
Every command that needs tables now says the database is not migrated, names it (without a
password) and points at ``tradeloop db upgrade``; only ``db upgrade`` (and ``serve``, which
migrates SQLite on start) may create the SQLite file.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask.cli import ScriptInfo

from tests.conftest import MARIADB_URL, ROOT

pytestmark = pytest.mark.timeout(60)

PLUGINS = ["tradelog", "riskgraph", "mlloop", "breakers"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRADELOOP_PLUGINS")}
    env.update(PYTHONPATH=ROOT, **extra)
    return env


def test_users_create_in_a_fresh_directory_says_migrate_and_creates_no_file(tmp_path):
    """The breaker's repro, as a user runs it: the default URL (sqlite:///tradeloop.db,
    relative to the working directory), no DATABASE_URL."""
    proc = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "users", "create", "x"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "database not migrated" in lines[0]
    assert "tradeloop db upgrade" in lines[0] and "sqlite:///tradeloop.db" in lines[0]
    assert proc.stdout == ""
    assert os.listdir(tmp_path) == []  # no empty tradeloop.db left behind


def _invoke(url: str, args: list[str]):
    from app import create_app
    from app.cli import cli
    app = create_app({"DATABASE_URL": url, "TRADELOOP_PLUGINS": PLUGINS, "REDIS_URL": None,
                      "KAFKA_BOOTSTRAP_SERVERS": None, "SECRET_KEY": "test-secret"})
    try:
        return CliRunner().invoke(cli, args, obj=ScriptInfo(create_app=lambda: app))
    finally:
        app.extensions["tradeloop"].db.dispose()


# one command of each owner: core, tokens, dead letters, jobs, and each plugin's
COMMANDS = [["users", "create", "x"], ["users", "token", "x"], ["tokens", "list"], ["deadletters", "list"],
            ["jobs", "list"], ["ml", "models"], ["breakers", "status", "--user", "x"],
            ["tradelog", "settle-expired"], ["relay", "--once"],
            # (port -1: without the check it fails to bind at once instead of serving forever)
            ["serve", "--no-migrate", "--no-workers", "--no-jobs", "--port", "-1"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_every_command_that_needs_tables_refuses_an_unmigrated_sqlite_file(tmp_path, args):
    path = tmp_path / "never.db"
    result = _invoke(f"sqlite:///{path}", args)
    assert result.exit_code == 1, result.output
    assert "database not migrated" in result.output and "tradeloop db upgrade" in result.output
    assert isinstance(result.exception, SystemExit), result.exception  # click's clean exit, no error
    assert not path.exists()


def test_an_empty_database_and_a_partly_migrated_one_name_what_is_missing():
    """A MariaDB database without tables; then one with only the core branch migrated (a
    plugin enabled after the last upgrade): the message names the plugins' branches."""
    name = f"tl_cli_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(MARIADB_URL + "/test")
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        from tests.conftest import missing
        missing("MariaDB", str(exc)[:200])
    try:
        url = f"{MARIADB_URL}/{name}"
        result = _invoke(url, ["users", "create", "x"])
        assert result.exit_code == 1
        assert result.output.strip() == (f"Error: database not migrated: run `tradeloop db upgrade` "
                                         f"(database: {url})")
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE TABLE {name}.alembic_version_core (version_num VARCHAR(32))")
        result = _invoke(url, ["tokens", "list"])
        assert result.exit_code == 1
        assert "database not migrated for tradelog, riskgraph, mlloop, breakers" in result.output
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def test_an_unreachable_database_is_one_line_without_the_password():
    """Wrong credentials: the server's refusal in one line, the URL with ``***``."""
    url = MARIADB_URL.replace("://root@", "://root:s3cret-pw@") + "/test"
    assert "s3cret-pw" in url
    result = _invoke(url, ["users", "create", "x"])
    assert result.exit_code == 1
    assert "s3cret-pw" not in result.output
    assert "cannot read the database" in result.output and "root:***@" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_db_upgrade_creates_the_file_then_commands_work(tmp_path):
    path = tmp_path / "fresh.db"
    assert _invoke(f"sqlite:///{path}", ["db", "upgrade"]).exit_code == 0
    result = _invoke(f"sqlite:///{path}", ["users", "create", "x"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tl_")
