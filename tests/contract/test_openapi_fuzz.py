"""Contract fuzzing: schemathesis generates requests for every operation in /openapi.json of
every enabled plugin and checks every response against the document: no server error, a
documented status, documented headers and content type, a body that matches its schema,
invalid input rejected (4xx) and an ``Allow`` header on 405 — on SQLite and on MariaDB + Redis.

So that responses have real shapes (a win rate computed over real trades, a 409 from a real
state), the fuzzing user starts with every plugin's demo data, and operations whose path
names an id are also fuzzed with ids of that user's real resources (a random id is rightly a
404). As plugins add routes, this covers them with no extra work: one test per operation and
stack.

(schemathesis is driven through its Python API — one hypothesis run per operation — because
its pytest plugin does not support the pytest version we run.)"""
from __future__ import annotations

import os
import re
import tempfile
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from app.plugins import installed

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))  # per operation on the embedded stack (CI time)
# The production stack runs the same views and schemas; what it adds is the database's and
# Redis's own behaviour (types, collations, locks), which fewer generated cases reach as well
# (plus the plain request on real ids that every operation gets first).
MAX_EXAMPLES_PRODUCTION = int(os.environ.get("FUZZ_MAX_EXAMPLES_PRODUCTION", "6"))
PLUGINS = [p for p in os.environ.get("FUZZ_PLUGINS", ",".join(sorted(installed()))).split(",") if p.strip()] \
    + ["tests.plugins.notes.plugin"]
# A random id is, rightly, unknown (404) even when well-formed, so "valid input must be
# accepted" does not hold for this API; every other schemathesis check does.
EXCLUDED = [getattr(st_checks, "positive_data_acceptance")] if hasattr(st_checks, "positive_data_acceptance") else []


class _Resp:
    def __init__(self, r):
        self.status_code, self.headers, self.content = r.status_code, r.headers, r.get_data()

    def json(self):
        import json
        return json.loads(self.content)

    @property
    def ok(self):
        return self.status_code < 400

    def raise_for_status(self):
        if not self.ok:
            import requests
            raise requests.HTTPError(f"{self.status_code}", response=self)


class InProcessSession:
    """The two verbs riskgraph's client uses, served by the app's own test client."""

    def __init__(self, app):
        self.app = app

    def _path(self, url):
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def get(self, url, headers=None, timeout=None, **kw):
        return _Resp(self.app.test_client().get(self._path(url), headers=headers))

    def post(self, url, json=None, headers=None, timeout=None, **kw):
        return _Resp(self.app.test_client().post(self._path(url), json=json, headers=headers))


class Target:
    """One stack's app, its fuzzing user (admin, with demo data) and the schema's operations."""

    def __init__(self, database_url: str, redis_url: str | None):
        from app import create_app
        from app.migrate import upgrade
        from tests.conftest import make_user
        self.app = create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": None,
                               "TRADELOOP_PLUGINS": PLUGINS, "SECRET_KEY": "fuzz", "IDEMPOTENCY_WAIT_SECONDS": 0.5,
                               "NOTES_TEST_KNOBS": False, "RATELIMIT_ENABLED": False,
                               "CACHE_NAMESPACE": f"fuzz{uuid.uuid4().hex[:8]}"})
        self.app.config["PROPAGATE_EXCEPTIONS"] = False
        ext = self.app.extensions["tradeloop"]
        upgrade(ext, echo=None)
        client = make_user(self.app, admin=True)
        self.token = client.token
        for impl in ext.plugins.pm.hook.load_demo_data.get_hookimpls():
            with ext.db.transaction() as conn:
                impl.function(conn=conn, user_id=client.user.id)
        # riskgraph's Pattern A calls the trade log over HTTP; here the trade log is this same
        # app, so route those calls to it in-process (a real request through the real app).
        self.app.extensions["riskgraph.http_session"] = InProcessSession(self.app)
        self.schema = schemathesis.openapi.from_wsgi("/openapi.json", self.app)
        self.operations = {}
        for result in self.schema.get_all_operations():
            op = result.ok()
            self.operations[f"{op.method.upper()} {op.path}"] = op
        self.ids = self._real_ids(client)

    def close(self) -> None:
        from tests.conftest import close_app
        close_app(self.app)

    def _real_ids(self, client) -> dict[str, list]:
        """Values of id-like fields in every parameterless GET response of the fuzzing user:
        ``{"position_id": [...], "id@/api/positions": [...]}``."""
        found: dict[str, list] = {}

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(v, (str, int)) and not isinstance(v, bool) and (k == "id" or k.endswith("_id") or k in ("code", "symbol", "name")):
                        key = f"id@{where}" if k == "id" else k
                        if v not in found.setdefault(key, []):
                            found[key].append(v)
                    else:
                        walk(v, where)
            elif isinstance(node, list):
                for item in node:
                    walk(item, where)
        for label in self.operations:
            method, path = label.split(" ", 1)
            if method == "GET" and "{" not in path:
                r = client.get(path)
                if r.status_code == 200 and r.is_json:
                    walk(r.json, path)
        return found

    def id_choices(self, op) -> list[dict]:
        """Up to three sets of real path parameters for ``op`` (empty when it has none)."""
        names = re.findall(r"{([^}]+)}", op.path)
        if not names:
            return []
        per_name = []
        for name in names:
            values = list(self.ids.get(name, []))
            stem = name[:-3] if name.endswith("_id") else name
            for key, vals in self.ids.items():  # "id" of a listing whose path names the resource
                if key.startswith("id@") and stem.replace("_", "-") in key:
                    values += [v for v in vals if v not in values]
            if not values:
                return []
            per_name.append(values[:3])
        return [{n: vals[min(i, len(vals) - 1)] for n, vals in zip(names, per_name)} for i in range(3)]


_targets: dict[str, Target] = {}


@pytest.fixture(scope="module")
def fuzz_mariadb(mariadb_url):
    """A MariaDB database of the fuzz's own: it engages deployment-wide kill switches and
    changes deployment configs as an admin, which must not leak into other tests' database."""
    import sqlalchemy as sa
    base, name = mariadb_url.rsplit("/", 1)[0], f"tl_fuzz_{os.getpid()}"
    eng = sa.create_engine(base + "/test")
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield f"{base}/{name}"
    target = _targets.pop("production", None)
    if target is not None:
        target.close()
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    eng.dispose()


def _target(stack: str, request) -> Target:
    if stack not in _targets:
        if stack == "embedded":
            db = os.path.join(tempfile.mkdtemp(prefix="tl_fuzz_"), "fuzz.db")
            _targets[stack] = Target(f"sqlite:///{db}", None)
        else:
            _targets[stack] = Target(request.getfixturevalue("fuzz_mariadb"), request.getfixturevalue("redis_url"))
    return _targets[stack]


def _labels() -> list[str]:
    from app import create_app
    db = os.path.join(tempfile.mkdtemp(prefix="tl_fuzz_labels_"), "labels.db")
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "TRADELOOP_PLUGINS": PLUGINS, "SECRET_KEY": "fuzz"})
    spec = app.test_client().get("/openapi.json").json
    # reads first, deletions last: the demo data is still there when reads are checked
    order = {"get": 0, "post": 1, "put": 2, "patch": 3, "delete": 4}
    # SSE streams (text/event-stream) never end, so a buffered call would never return; their
    # documented contract is checked against a real server in tests/sse/test_sse.py.
    def streaming(op):
        return set(op.get("responses", {}).get("200", {}).get("content", {})) == {"text/event-stream"}
    return [f"{m.upper()} {p}" for m, p in sorted(
        ((m, p) for p, ops in spec["paths"].items() for m in ops if m in order and not streaming(ops[m])),
        key=lambda mp: (order[mp[0]], mp[1]))]


# The test plugin's CPU-burn knob exists to be stopped by its own timeout: its 503
# (computation_timeout, documented) is what the off-loop drills assert, not a defect.
UNFUZZED = {"POST /api/notes/burn"}
LABELS = [label for label in _labels() if label not in UNFUZZED]


@pytest.fixture(scope="module", autouse=True)
def _close_targets():
    yield
    for stack in list(_targets):
        _targets.pop(stack).close()


@pytest.mark.parametrize("label", LABELS)
def test_every_operation_honours_its_contract(label, stack, request):
    target = _target(stack, request)
    operation = target.operations[label]
    choices = target.id_choices(operation)
    headers = {"Authorization": f"Bearer {target.token}"}
    # first the plainest request on the user's real resources (no filters: real shapes)
    for ids in choices or ([{}] if "{" not in operation.path else []):
        operation.Case(path_parameters=ids or None).call_and_validate(headers=headers, excluded_checks=EXCLUDED)
    strategies = [operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
    strategies += [operation.as_strategy(path_parameters=ids) for ids in choices]

    @given(case=st.one_of(strategies))
    @settings(max_examples=MAX_EXAMPLES if stack == "embedded" else MAX_EXAMPLES_PRODUCTION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

    run()


def test_every_path_answers_other_methods_with_405_and_allow(stack, request):
    """RFC 9110: a 405 names the methods the resource has in ``Allow``; every path of the
    document, every method it lacks."""
    target = _target(stack, request)
    spec = target.app.test_client().get("/openapi.json").json
    http = target.app.test_client()
    auth = {"Authorization": f"Bearer {target.token}", "Idempotency-Key": "fuzz-405"}
    checked = 0
    for path, ops in spec["paths"].items():
        documented = {m.upper() for m in ops if m in ("get", "post", "put", "patch", "delete")}
        url = re.sub(r"{[^}]+}", "x" * 36, path)
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
            r = http.open(url, method=method, headers=auth, json={})
            if r.status_code == 404:
                continue  # e.g. an int id route: "x..." is no id of it
            assert r.status_code == 405, (method, path, r.status_code, r.get_json())
            allow = {m.strip() for m in r.headers["Allow"].split(",")}
            assert documented <= allow and method not in allow, (method, path, allow)
            checked += 1
    assert checked > 20


def test_money_inputs_are_documented_as_the_server_reads_them(stack, request):
    """Money is read from a decimal string or a JSON number and written as a decimal string.
    Every request-body property of format ``decimal`` must admit both (else a client sending
    0.95 is outside the document, and the fuzzer's negative mode fails at random); and the
    server does accept a number there: a note with ``amount`` 0.95 answers 201 and "0.9500"."""
    target = _target(stack, request)
    spec = target.app.test_client().get("/openapi.json").json
    schemas = spec["components"]["schemas"]

    def resolve(node):
        return schemas[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
    checked = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("post", "put", "patch"):
                continue
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if not body:
                continue
            for name, prop in (resolve(body["schema"]).get("properties") or {}).items():
                alternatives = prop.get("anyOf", [prop])
                if any(a.get("format") == "decimal" for a in alternatives):
                    assert {"type": "number"} in alternatives, (method, path, name, prop)
                    checked += 1
    assert checked > 10
    from tests.conftest import make_user
    client = make_user(target.app)  # the fuzzing user's token may have been revoked by the fuzz
    r = client.post("/api/notes", json={"title": "n", "amount": 0.95}, idem=uuid.uuid4().hex)
    assert r.status_code == 201 and r.json["amount"] == "0.9500", r.json
