"""SSE against a real gevent server: replay from Last-Event-ID / ?last_seq=, then live;
user scoping; headers, retry and heartbeats; fan-out across server processes."""
from __future__ import annotations

import time

import pytest

from tests.sse.conftest import SSEClient, post_note


def test_reconnect_with_last_event_id_gets_exactly_the_rest_in_order_then_live(sse_stack, server):
    a, token_a = sse_stack.user()
    b, token_b = sse_stack.user()
    for i in range(5):
        post_note(server, token_a, f"a{i}")
        post_note(server, token_b, f"b{i}")
    mine = sse_stack.user_seqs(a)
    assert len(mine) == 5

    first = SSEClient(server, "/sse/notes", token_a)
    got = first.take(3)
    assert [m["id"] for m in got] == mine[:3]
    first.close()  # a browser tab loses its connection after seq n
    n = got[-1]["id"]

    post_note(server, token_a, "while away")
    post_note(server, token_b, "b while away")
    again = SSEClient(server, "/sse/notes", token_a, last_event_id=n)
    expected = sse_stack.user_seqs(a, after=n)
    assert len(expected) == 3
    replayed = again.take(3)
    assert [m["id"] for m in replayed] == expected           # exactly n+1.. in order
    post_note(server, token_a, "live 1")
    post_note(server, token_b, "b live")
    post_note(server, token_a, "live 2")
    live = again.take(2)
    assert [m["data"]["payload"]["title"] for m in live] == ["live 1", "live 2"]
    assert [m["id"] for m in live] == sse_stack.user_seqs(a, after=expected[-1])
    assert all(m["data"]["user_id"] == a for m in replayed + live)
    assert all(m["id"] == m["data"]["event_seq"] for m in replayed + live)
    assert again.nothing_within(0.8)                           # no duplicates, nothing of B's
    again.close()


def test_last_seq_query_parameter_resumes_too(sse_stack, server):
    a, token = sse_stack.user()
    for i in range(4):
        post_note(server, token, f"q{i}")
    seqs = sse_stack.user_seqs(a)
    c = SSEClient(server, f"/sse/notes?last_seq={seqs[1]}", token)
    assert [m["id"] for m in c.take(2)] == seqs[2:]
    assert c.nothing_within(0.5)
    c.close()
    # the Last-Event-ID header (what a browser sends on reconnect) wins over the query string
    c = SSEClient(server, f"/sse/notes?last_seq={seqs[0]}", token, last_event_id=seqs[2])
    assert [m["id"] for m in c.take(1)] == seqs[3:]
    c.close()


def test_a_users_stream_carries_none_of_another_users_events(sse_stack, server):
    a, token_a = sse_stack.user()
    b, token_b = sse_stack.user()
    sb = SSEClient(server, "/sse/notes", token_b)
    sa_ = SSEClient(server, "/sse/notes", token_a)
    for i in range(3):
        post_note(server, token_a, f"secret {i}")
    post_note(server, token_b, "b's own")
    got_b = sb.next()
    assert got_b["data"]["user_id"] == b and got_b["data"]["payload"]["title"] == "b's own"
    assert [m["data"]["user_id"] for m in sa_.take(3)] == [a, a, a]
    assert sb.nothing_within(0.8)
    sb.close()
    sa_.close()


def test_headers_retry_and_heartbeats(sse_stack, server):
    _, token = sse_stack.user()
    c = SSEClient(server, "/sse/notes", token)
    assert c.status == 200
    assert c.headers["content-type"].startswith("text/event-stream")
    assert c.headers["cache-control"] == "no-cache"
    assert c.headers["x-accel-buffering"] == "no"
    assert "content-length" not in c.headers
    time.sleep(1.6)  # heartbeat every 0.5 s in this server
    assert c.retry == 1500
    assert c.comments.count("heartbeat") >= 2
    c.close()


def test_unauthenticated_and_bad_positions_are_refused(sse_stack, server):
    c = SSEClient(server, "/sse/notes")
    assert c.status == 401
    _, token = sse_stack.user()
    c = SSEClient(server, "/sse/notes?last_seq=abc", token)
    assert c.status == 400
    c = SSEClient(server, "/sse/notes", token, last_event_id="-3")
    assert c.status == 400


def test_every_stream_is_in_the_openapi_document_and_answers_as_documented(sse_stack, server):
    """Issue 12 item 4: /openapi.json is the whole API, streams included. Each enabled
    stream (and no other path) is a GET under /sse/ answering text/event-stream, resuming by
    ``last_seq`` or ``Last-Event-ID``; the served answers (200 stream, 400 naming the field,
    401) have the documented content types and error shape."""
    import http.client
    import json
    conn = http.client.HTTPConnection(server, timeout=10)
    conn.request("GET", "/openapi.json")
    doc = json.loads(conn.getresponse().read())
    conn.close()
    streams = {s.path for _, s in sse_stack.app.extensions["tradeloop"].sse_streams}
    assert {"/sse/notes", "/sse/jobs"} <= streams
    assert {p for p in doc["paths"] if p.startswith("/sse/")} == streams
    for path in streams:
        op = doc["paths"][path]["get"]
        assert set(doc["paths"][path]) == {"get"}
        assert set(op["responses"]["200"]["content"]) == {"text/event-stream"}
        params = {(p["in"], p["name"]): p for p in op["parameters"]}
        assert params[("query", "last_seq")]["schema"]["type"] == "integer"
        assert ("header", "Last-Event-ID") in params
        assert "400" in op["responses"] and "429" in op["responses"]
    op = doc["paths"]["/sse/notes"]["get"]
    error = doc["components"]["schemas"]["Error"]

    _, token = sse_stack.user()
    c = SSEClient(server, "/sse/notes", token)
    assert c.status == 200
    assert c.headers["content-type"].split(";")[0] in op["responses"]["200"]["content"]
    assert c.headers["cache-control"] in op["responses"]["200"]["headers"]["Cache-Control"]["schema"]["enum"]
    c.close()
    for bad in ({"path": "/sse/notes?last_seq=-1"}, {"path": "/sse/notes", "last_event_id": "x"}):
        c = SSEClient(server, token=token, **bad)
        assert c.status == 400
        body = json.loads(c.body)
        assert set(error["required"]) <= set(body)
        assert "last_seq" in body["errors"]["query"]
    assert SSEClient(server, "/sse/notes").status == 401


@pytest.mark.parametrize("sse_stack", ["production"], indirect=True)  # wake-ups cross processes via Redis
def test_live_events_fan_out_across_server_processes(sse_stack):
    """Two servers on one database: an event written through server 1 reaches a stream held
    by server 2 through the Redis wake-up, far sooner than server 2's 30 s poll fallback."""
    assert sse_stack.redis_url is not None
    s1 = sse_stack.serve(SSE_POLL_SECONDS=30)
    s2 = sse_stack.serve(SSE_POLL_SECONDS=30)
    a, token = sse_stack.user()
    c = SSEClient(s2, "/sse/notes", token)
    time.sleep(0.3)  # the stream is open (its hub subscribed to Redis)
    latencies = []
    for i in range(5):
        t0 = time.monotonic()
        post_note(s1, token, f"cross {i}")
        m = c.next(timeout=10)
        latencies.append(m["at"] - t0)
        assert m["data"]["payload"]["title"] == f"cross {i}"
    assert max(latencies) < 5.0, latencies  # a poll would have taken up to 30 s
    c.close()
