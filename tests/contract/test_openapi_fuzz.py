"""Contract fuzzing: schemathesis generates requests for every operation in /openapi.json of
every enabled plugin (bounded examples per operation, signed in) and checks that no response
is a server error and every response matches its documented status, headers and schema.
As plugins add routes, this covers them with no extra work: there is one test per operation.

(schemathesis is driven through its Python API — one hypothesis run per operation — because
its pytest plugin does not support the pytest version we run.)"""
from __future__ import annotations

import os
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks

from app.plugins import installed

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
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


def _build():
    from app import create_app
    from app.migrate import upgrade
    from tests.conftest import make_user
    db = os.path.join(tempfile.mkdtemp(prefix="tl_fuzz_"), "fuzz.db")
    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "TRADELOOP_PLUGINS": PLUGINS, "SECRET_KEY": "fuzz",
                      "IDEMPOTENCY_WAIT_SECONDS": 0.5,
                      "NOTES_TEST_KNOBS": False})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    upgrade(app.extensions["tradeloop"], echo=None)
    token = make_user(app, admin=True).token
    # riskgraph's Pattern A calls the trade log over HTTP; here the trade log is this same
    # app, so route those calls to it in-process (a real request through the real app).
    app.extensions["riskgraph.http_session"] = InProcessSession(app)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = {}
    for result in schema.get_all_operations():
        op = result.ok()
        operations[f"{op.method.upper()} {op.path}"] = op
    return app, token, operations


APP, TOKEN, OPERATIONS = _build()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_operation_honours_its_contract(label):
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=EXCLUDED)

    run()
