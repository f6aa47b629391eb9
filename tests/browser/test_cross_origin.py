"""The issue's CSRF attack in a real Chromium: a page on another port of the same host (the
same *site*, so the SameSite=Lax cookie rides along) posts a form and fetches to tradeloop
while the user is signed in to the console. Each must fail and change nothing; the console on
its own origin keeps working (tests/browser/test_console.py)."""
from __future__ import annotations

import http.server
import json
import threading

import pytest
import sqlalchemy as sa

from tests.browser.test_console import expect, new_session
from tests.conftest import free_port

pytestmark = pytest.mark.browser

ORDER = {"position_template": {"symbol": "XYZ", "legs": [{"instrument_type": "stock", "quantity": 1}]},
         "limit_price": "1.00"}


def _attacker(target: str) -> tuple[str, http.server.HTTPServer]:
    """A page on 127.0.0.1:<another port> that attacks ``target`` in four ways."""
    page = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}/api/orders" enctype="application/x-www-form-urlencoded">
  <input name="position_template" value='{json.dumps(ORDER["position_template"])}'>
</form>
<form id="t" method="POST" action="{target}/api/orders" enctype="text/plain">
  <input name='{json.dumps(ORDER)[:-1]}, "x": "' value='"}}'>
</form>
<script>
  window.results = {{}};
  fetch("{target}/api/orders", {{method: "POST", credentials: "include", mode: "no-cors",
        headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({json.dumps(ORDER)})}})
    .then(r => window.results.nocors = r.type, e => window.results.nocors = "error");
  fetch("{target}/api/orders", {{method: "POST", credentials: "include",
        headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({json.dumps(ORDER)})}})
    .then(r => window.results.cors = r.status, e => window.results.cors = "blocked");
  fetch("{target}/api/auth/logout", {{method: "POST", credentials: "include", mode: "no-cors"}})
    .then(r => window.results.logout = r.type, e => window.results.logout = "error");
</script></body></html>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}", srv


def _orders(server, uid) -> int:
    with server.engine.connect() as c:
        return c.execute(sa.text("SELECT COUNT(*) FROM tl_orders WHERE user_id = :u"), {"u": uid}).scalar_one()


def test_a_page_on_another_port_cannot_write_with_the_console_session(browser, server, shot):
    uid, token = server.user()
    ctx, console = new_session(browser, server, token)
    before = _orders(server, uid)
    evil_url, evil = _attacker(server.url)
    try:
        page = ctx.new_page()
        page.goto(evil_url)
        page.wait_for_function("() => ['nocors', 'cors', 'logout'].every(k => k in window.results)", timeout=15_000)
        results = page.evaluate("window.results")
        assert results["cors"] == "blocked"  # no CORS grant: the preflight fails
        # the classic form posts, as top-level navigations (the answer is visible then)
        for form in ("#f", "#t"):
            page.goto(evil_url)
            with page.expect_navigation():
                page.eval_on_selector(form, "f => f.submit()")
            body = json.loads(page.inner_text("body"))
            assert body["status"] == 403 and body["code"] == "cross_origin", body
        shot(page, "csrf-refused")
        assert _orders(server, uid) == before  # nothing was written
        # and the console is still signed in and writes from its own origin
        console.reload()
        expect(console.locator("#conn")).to_have_attribute("data-state", "live")
        r = console.evaluate("""async (order) => {
            const r = await fetch('/api/orders', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'Idempotency-Key': crypto.randomUUID()},
                body: JSON.stringify(order)});
            return r.status; }""", ORDER)
        assert r == 201
        assert _orders(server, uid) == before + 1
    finally:
        evil.shutdown()
        ctx.close()
