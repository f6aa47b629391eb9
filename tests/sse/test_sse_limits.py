"""SSE limits (issue 18, items 3 and 4) against real gevent servers: the per-user stream cap,
replay in pages, the reset signal for a Last-Event-ID beyond the head, streams closing when
their token is revoked, and a clean stop on SIGTERM under gunicorn."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from tests.conftest import ROOT, free_port, wait_port
from tests.sse.conftest import NOTES, SSEClient, post_note


def _revoke_current_token(addr, token):
    c = http.client.HTTPConnection(addr, timeout=10)
    h = {"Authorization": f"Bearer {token}"}
    c.request("GET", "/api/auth/tokens", headers=h)
    tid = next(t["id"] for t in json.loads(c.getresponse().read()) if t["current"])
    c.request("DELETE", f"/api/auth/tokens/{tid}", headers=h)
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 204


def test_streams_over_the_per_user_cap_are_429(sse_stack, server):
    """The default cap (20): the 21st concurrent stream of one user is refused, another
    user is not affected, and a closed stream frees its slot."""
    _, token = sse_stack.user()
    _, other = sse_stack.user()
    streams = [SSEClient(server, "/sse/notes", token) for _ in range(20)]
    try:
        assert [s.status for s in streams] == [200] * 20
        extra = SSEClient(server, "/sse/notes", token)
        assert extra.status == 429, extra.body
        body = json.loads(extra.body)
        assert body["code"] == "too_many_requests" and int(extra.headers["retry-after"]) >= 1
        theirs = SSEClient(server, "/sse/notes", other)
        assert theirs.status == 200
        theirs.close()
        streams.pop().close()
        deadline = time.monotonic() + 10  # the server notices a closed client at its next write
        while True:
            again = SSEClient(server, "/sse/notes", token)
            if again.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert again.status == 200
        streams.append(again)
    finally:
        for s in streams:
            s.close()


def test_replay_is_served_in_pages_without_gaps(sse_stack):
    addr = sse_stack.serve(SSE_REPLAY_PAGE=7)
    a, token = sse_stack.user()
    for i in range(30):
        post_note(addr, token, f"p{i}")
    seqs = sse_stack.user_seqs(a)
    c = SSEClient(addr, "/sse/notes?last_seq=0", token)
    assert [m["id"] for m in c.take(30)] == seqs
    assert c.nothing_within(0.5)
    c.close()


def test_a_last_event_id_beyond_the_head_gets_a_reset_then_the_stream_from_the_start(sse_stack, server):
    """A restored database is behind the browser's Last-Event-ID: without a signal the client
    would wait for ids it will never see."""
    a, token = sse_stack.user()
    for i in range(3):
        post_note(server, token, f"r{i}")
    seqs = sse_stack.user_seqs(a)
    head = sse_stack.head("notes.events")
    c = SSEClient(server, "/sse/notes", token, last_event_id=head + 1000)
    reset = c.next()
    assert reset["event"] == "reset" and reset["id"] == 0
    assert reset["data"] == {"reason": "ahead_of_stream", "last_event_id": head + 1000, "head": head}
    assert [m["id"] for m in c.take(3)] == seqs  # everything, from the start
    post_note(server, token, "live")
    assert c.next()["data"]["payload"]["title"] == "live"
    c.close()
    # at the head exactly: no reset
    c = SSEClient(server, "/sse/notes", token, last_event_id=sse_stack.head("notes.events"))
    assert c.nothing_within(0.8)
    c.close()


def test_a_stream_closes_when_its_token_is_revoked(sse_stack):
    addr = sse_stack.serve(SSE_AUTH_RECHECK_SECONDS=0.5)
    _, token = sse_stack.user()
    c = SSEClient(addr, "/sse/notes", token)
    assert c.status == 200
    _revoke_current_token(addr, token)
    deadline = time.monotonic() + 10
    ended = None
    while time.monotonic() < deadline:
        item = c.messages.get(timeout=max(0.1, deadline - time.monotonic()))
        if item is None:
            ended = True
            break
    assert ended, "the stream kept going after its token was revoked"
    assert any("signed out" in x for x in c.comments)
    assert SSEClient(addr, "/sse/notes", token).status == 401


def test_sigterm_closes_streams_with_a_retry_hint_and_gunicorn_stops_in_about_a_second(sse_stack):
    """gunicorn's graceful timeout is 20 s here; open streams must not hold the worker."""
    port = free_port()
    env = dict(os.environ)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(DATABASE_URL=sse_stack.database_url, TRADELOOP_PLUGINS=NOTES, PYTHONPATH=ROOT,
               SECRET_KEY="sse-test", SSE_HEARTBEAT_SECONDS="5", SSE_RETRY_MS="1500")
    if sse_stack.redis_url:
        env["REDIS_URL"] = sse_stack.redis_url
    else:
        env.pop("REDIS_URL", None)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    log = open(os.path.join(tempfile.gettempdir(), f"gunicorn-{port}.log"), "ab")
    proc = subprocess.Popen([gunicorn, "-k", "gevent", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                             "--graceful-timeout", "20", "app.wsgi:app"], env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_port(port, 60)
        addr = f"127.0.0.1:{port}"
        _, token = sse_stack.user()
        streams = [SSEClient(addr, "/sse/notes", token) for _ in range(5)]
        assert [s.status for s in streams] == [200] * 5
        post_note(addr, token, "before stop")
        assert all(s.next()["data"]["payload"]["title"] == "before stop" for s in streams)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for s in streams:
            assert s.messages.get(timeout=10) is None  # the server closed it
        proc.wait(timeout=15)
        took = time.monotonic() - started
        assert took < 10.0, f"gunicorn took {took:.1f}s to stop"  # (graceful timeout: 20 s; ~3 s unloaded)
        for s in streams:
            assert s.retries[-1] == 1000 and any("restarting" in x for x in s.comments)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_stops_tradeloop_serve_cleanly_too(sse_stack):
    addr = sse_stack.serve()
    proc = sse_stack.procs[-1]
    _, token = sse_stack.user()
    streams = [SSEClient(addr, "/sse/notes", token) for _ in range(3)]
    assert [s.status for s in streams] == [200] * 3
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for s in streams:
        assert s.messages.get(timeout=10) is None
    proc.wait(timeout=10)
    assert time.monotonic() - started < 10.0
    assert all(s.retries[-1] == 1000 for s in streams)
