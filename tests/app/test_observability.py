"""Access log and /metrics (issue 12, item 3): app/observability.py.

The access log is read from the ``tradeloop.access`` logger (one JSON object per request);
the metrics are parsed with prometheus_client's own text parser, and every figure is checked
against what the test did (counts as deltas: the counters are process-wide).
"""
from __future__ import annotations

import json
import logging
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

PLUGINS = ["tradelog", "riskgraph", "breakers"]


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access_lines():
    h = Lines()
    lg = logging.getLogger("tradeloop.access")
    lg.addHandler(h)
    yield h.lines
    lg.removeHandler(h)


def scrape(app) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one GET /metrics."""
    token = app.config["METRICS_TOKEN"] = app.config.get("METRICS_TOKEN") or "scrape-secret"
    r = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.mimetype == "text/plain"
    out = {}
    for fam in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def position_body(symbol="SPX"):
    return {"symbol": symbol, "legs": [{"instrument_type": "stock", "quantity": 10}]}


def test_one_access_log_line_per_request(app_factory, new_client, access_lines):
    app = app_factory(PLUGINS)
    c = new_client(app)
    r = c.post("/api/positions", json=position_body(), idem=str(uuid.uuid4()),
               headers={"X-Request-ID": "trace-42.a:b"})
    assert r.status_code == 201 and r.headers["X-Request-ID"] == "trace-42.a:b"
    r.get_data()                                   # the line is written once the body is sent
    pid = r.get_json()["id"]
    g = c.get(f"/api/positions/{pid}")
    g.get_data()
    anon = app.test_client().get("/api/positions")  # not signed in: 401, no user
    anon.get_data()
    template = app.url_map.bind("localhost").match(f"/api/positions/{pid}", method="GET", return_rule=True)[0].rule
    assert template.startswith("/api/positions/<")                 # the route template, never the id
    assert [(x["method"], x["path"], x["status"]) for x in access_lines] == [
        ("POST", "/api/positions", 201), ("GET", template, 200), ("GET", "/api/positions", 401)]
    post, get, unauth = access_lines
    assert post["user_id"] == get["user_id"] == c.user.id and unauth["user_id"] is None
    assert post["request_id"] == "trace-42.a:b"
    assert get["request_id"] == g.headers["X-Request-ID"] and len(get["request_id"]) == 32  # made up, echoed
    assert all(isinstance(x["duration_ms"], float) and x["duration_ms"] >= 0 for x in access_lines)
    assert all(x["timestamp"].endswith("Z") and len(x["timestamp"]) == 24 for x in access_lines)  # UTC, ms


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "<script>"])
def test_an_unusable_request_id_is_replaced(app_factory, bad):
    app = app_factory(PLUGINS)
    r = app.test_client().get("/health", headers={"X-Request-ID": bad})
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] != bad and len(r.headers["X-Request-ID"]) == 32


def test_request_counts_and_latency_by_route(app_factory, new_client):
    app = app_factory(PLUGINS)
    c = new_client(app)
    before = scrape(app)
    for _ in range(3):
        c.get("/api/positions").get_data()
    c.get(f"/api/positions/{uuid.uuid4()}").get_data()            # 404 through a matched route
    app.test_client().get("/no/such/path").get_data()             # 404 on no route
    after = scrape(app)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)
    assert delta("tradeloop_http_requests_total", method="GET", route="/api/positions", status="200") == 3
    missing = uuid.uuid4()
    detail = app.url_map.bind("localhost").match(f"/api/positions/{missing}", method="GET", return_rule=True)[0].rule
    assert delta("tradeloop_http_requests_total", method="GET", route=detail, status="404") == 1
    assert delta("tradeloop_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert delta("tradeloop_http_request_duration_seconds_count", method="GET", route="/api/positions") == 3
    assert delta("tradeloop_http_request_duration_seconds_bucket", method="GET", route="/api/positions", le="+Inf") == 3


def test_outbox_and_consumer_lag_and_dead_letters(app_factory, new_client, run_consumers):
    app = app_factory(PLUGINS)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    run_consumers(app)                                            # start from caught-up groups
    before = scrape(app)
    for _ in range(2):
        assert c.post("/api/positions", json=position_body(), idem=str(uuid.uuid4())).status_code == 201
    mid = scrape(app)
    head = ("tradeloop_outbox_head_seq", (("stream", "tradelog.events"),))
    assert mid[head] - before[head] == 2                           # two PositionCreated events
    for group in ("riskgraph", "breakers"):                        # both consume tradelog.events
        key = ("tradeloop_consumer_lag_events", (("group", group), ("stream", "tradelog.events")))
        assert before[key] == 0 and mid[key] == 2
    # the in-process bus needs no relay: nothing waits for one
    assert mid[("tradeloop_outbox_backlog_events", (("stream", "tradelog.events"),))] == 0
    assert mid[("tradeloop_relay_lag_seconds", (("stream", "tradelog.events"),))] == 0
    run_consumers(app)
    after = scrape(app)
    assert after[("tradeloop_consumer_lag_events", (("group", "riskgraph"), ("stream", "tradelog.events")))] == 0

    from bus import outbox
    dead_key = ("tradeloop_dead_letters", (("group", "riskgraph"),))
    with ext.db.transaction() as conn:
        conn.execute(outbox.dead_letters.insert().values(
            consumer_group="riskgraph", event_id=str(uuid.uuid4()), stream="tradelog.events", seq=1,
            type="PositionCreated", attempts=5, error="boom", envelope="{}", failed_at=outbox.utcnow(), status="dead"))
    assert scrape(app)[dead_key] == after[dead_key] + 1
    with ext.db.transaction() as conn:
        conn.execute(outbox.dead_letters.update().where(outbox.dead_letters.c.error == "boom")
                     .values(status="requeued"))
    assert scrape(app)[dead_key] == after[dead_key]


def test_relay_backlog_and_lag_when_a_relay_is_needed(app_factory, new_client, monkeypatch):
    """With a bus that needs the relay (Kafka), unrelayed events are backlog and the oldest
    one's age is the relay lag; moving the relay's cursor clears both. (No broker needed:
    the figures come from the outbox and the relay's cursor.)"""
    from bus import outbox
    app = app_factory(PLUGINS)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    assert c.post("/api/positions", json=position_body(), idem=str(uuid.uuid4())).status_code == 201

    class NeedsRelay:
        needs_relay, name = True, "metrics-test"
    real_bus = ext._bus
    ext._bus = NeedsRelay()
    try:
        from app.observability import DeploymentCollector
        monkeypatch.setattr(DeploymentCollector, "_groups", lambda self: {})  # (no broker to ask)

        def collect():
            return {(m.name, tuple(sorted(s.labels.items()))): s.value
                    for m in DeploymentCollector(ext).collect() for s in m.samples}
        figures = collect()
        with ext.db.read() as conn:
            head = outbox.head(conn, "tradelog.events")
            cursor = outbox.get_cursor(conn, "relay:metrics-test", "tradelog.events")
            oldest = conn.execute(sa.select(outbox.outbox.c.recorded_at).where(
                outbox.outbox.c.stream == "tradelog.events", outbox.outbox.c.seq == cursor + 1)).scalar()
        key = (("stream", "tradelog.events"),)
        assert figures[("tradeloop_outbox_backlog_events", key)] == head - cursor > 0
        age = outbox.utcnow().replace(tzinfo=None) - oldest.replace(tzinfo=None)
        assert abs(figures[("tradeloop_relay_lag_seconds", key)] - age.total_seconds()) < 5
        with ext.db.transaction() as conn:
            outbox.set_cursor(conn, "relay:metrics-test", "tradelog.events", head)
        figures = collect()
        assert figures[("tradeloop_outbox_backlog_events", key)] == 0
        assert figures[("tradeloop_relay_lag_seconds", key)] == 0
    finally:
        ext._bus = real_bus


def test_sse_connections_are_counted_while_open(app_factory, new_client):
    app = app_factory(PLUGINS)
    c = new_client(app)
    key = ("tradeloop_sse_connections", (("route", "/sse/trade-log"),))
    before = scrape(app).get(key, 0.0)
    r = c.get("/sse/trade-log", buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    next(r.response)                                               # the stream is open
    assert scrape(app)[key] == before + 1
    r.close()                                                      # the client leaves
    assert scrape(app)[key] == before


def test_metrics_are_for_admins_and_the_scrape_token_only_as_documented(app_factory, new_client):
    """/metrics names every route, stream and consumer group with their volumes: an admin's
    token or the scrape-only METRICS_TOKEN reads them; no credential is 401, a wrong token 401,
    a user who is not an admin 403 — each as the OpenAPI document says."""
    app = app_factory(PLUGINS, METRICS_TOKEN="s3cret-scrape")
    http = app.test_client()
    anonymous = http.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json["code"] == "unauthorized"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert http.get("/metrics", headers={"Authorization": "Bearer s3cret-scrapE"}).status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Basic s3cret-scrape"}).status_code == 401
    scraper = http.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert scraper.status_code == 200 and b"tradeloop_http_requests_total" in scraper.data
    user = new_client(app)
    refused = user.get("/metrics")
    assert refused.status_code == 403 and refused.json["code"] == "admin_only"
    admin = new_client(app, admin=True)
    assert admin.get("/metrics").status_code == 200
    app.config["METRICS_TOKEN"] = None  # unset: no token opens it, not even an empty one
    assert http.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 401
    op = http.get("/openapi.json").get_json()["paths"]["/metrics"]["get"]
    assert op["security"] and "text/plain" in op["responses"]["200"]["content"]
    assert {"401", "403"} <= set(op["responses"])


def test_gunicorn_workers_share_one_metrics_view(tmp_path):
    """gunicorn with two gevent workers and PROMETHEUS_MULTIPROC_DIR (app/gunicorn_conf.py):
    requests answered by either worker add up in /metrics, whichever worker serves it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import requests

    from tests.conftest import ROOT, free_port, wait_port
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/g.db", PYTHONPATH=ROOT, TRADELOOP_PLUGINS="tradelog",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"), GUNICORN_BIND=f"127.0.0.1:{port}",
               ACCESS_LOG="false", SECRET_KEY="gunicorn-test", METRICS_TOKEN="gunicorn-scrape")
    bindir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bindir, "tradeloop"), "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen([os.path.join(bindir, "gunicorn"), "-c", "python:app.gunicorn_conf", "--workers", "2",
                             "app.wsgi:app"], env=env, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_port(port, 60)
        prom = tmp_path / "prom"

        def counted_by() -> set[str]:  # pids of the workers that have counted a request
            return {f[len("counter_"):-len(".db")] for f in os.listdir(prom) if f.startswith("counter_")}
        sent, deadline = 0, time.monotonic() + 60
        while (sent < 40 or len(counted_by()) < 2) and time.monotonic() < deadline:
            with requests.Session() as s:                         # a new connection: either worker
                assert s.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            sent += 1
        assert len(counted_by()) == 2, "both workers should have answered some of the requests"
        total = 0.0
        scraped = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5,
                               headers={"Authorization": "Bearer gunicorn-scrape"})
        assert scraped.status_code == 200, (tmp_path / "gunicorn.log").read_text(errors="replace")[-3000:]
        for fam in text_string_to_metric_families(scraped.text):
            for smp in fam.samples:
                if smp.name == "tradeloop_http_requests_total" and smp.labels["route"] == "/health":
                    total += smp.value
        assert total == sent  # every worker's count, not only the one that answered /metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()


@pytest.mark.kafka
def test_relay_and_consumer_lag_on_kafka(app_factory, new_client, kafka_bootstrap):
    """On the Kafka bus: written-but-unrelayed events are backlog with a relay lag until the
    relay runs; then the consumer group's lag is what Kafka holds beyond its committed offset
    (> 0 before it consumes; Tansu under-reports the high watermark, so only '> 0' is sure)
    and 0 once it has consumed and committed."""
    import time

    from bus.consumer import Group, Runner
    from tests.conftest import relay_from_head
    app = app_factory(["tradelog", "riskgraph"], KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                      KAFKA_TOPIC_PREFIX=f"m{uuid.uuid4().hex[:8]}.")
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    relay = relay_from_head(ext, ext.topic_names())  # this test's events only, not the session's
    for _ in range(3):
        assert c.post("/api/positions", json=position_body(), idem=str(uuid.uuid4())).status_code == 201
    stream = (("stream", "tradelog.events"),)
    lag_key = ("tradeloop_consumer_lag_events", (("group", "riskgraph"), ("stream", "tradelog.events")))
    before = scrape(app)
    assert before[("tradeloop_outbox_backlog_events", stream)] == 3
    assert before[("tradeloop_relay_lag_seconds", stream)] > 0
    relay.run_once()
    relayed = scrape(app)
    assert relayed[("tradeloop_outbox_backlog_events", stream)] == 0
    assert relayed[("tradeloop_relay_lag_seconds", stream)] == 0
    assert relayed[lag_key] > 0                                   # on the broker, not yet consumed
    runner = Runner(ext.db, ext.bus, Group.from_subscriptions("riskgraph", ext.plugins.subscriptions()["riskgraph"]))
    try:
        deadline = time.monotonic() + 60
        while True:
            runner.run_once(timeout=0.5)
            if scrape(app).get(lag_key) == 0:
                break
            assert time.monotonic() < deadline, f"consumer lag stayed {scrape(app).get(lag_key)}"
    finally:
        runner.close()
    assert runner.stats.handled + runner.stats.ignored >= 3
