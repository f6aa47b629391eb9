"""TradeLog integration, Pattern A (pull): fetch a position's snapshot over HTTP, compute its
risk, store the artifact, and post the reference back to the trade log.

Only published HTTP contracts are used (``GET /api/positions/{id}/snapshot`` and ``POST
/api/positions/{id}/risk-artifact``), with the caller's own Authorization header, so the
trade log may run in another process (or not at all). ``TradelogClient`` takes any
``requests``-compatible session, so tests can point it at a real server.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from app import errors
from plugins.riskgraph import service
from bus.envelope import iso

log = logging.getLogger(__name__)


class TradelogUnavailable(errors.DomainError):
    """The trade log could not be reached or answered with an error; nothing was stored."""
    status = 503
    code = "tradelog_unavailable"


class TradelogClient:
    def __init__(self, base_url: str, authorization: str | None, *, session=None, timeout: float = 10.0,
                 headers: dict | None = None):
        """``authorization``: the caller's Authorization header; ``headers``: other credentials
        to send instead (a browser session's cookie when there is no Authorization)."""
        import requests  # (here, not at import: the CLI's start-up does not need it)
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": authorization} if authorization else dict(headers or {})
        self.session = session or requests.Session()
        self.timeout = timeout

    def snapshot(self, position_id: str) -> dict:
        import requests
        url = f"{self.base_url}/api/positions/{position_id}/snapshot"
        try:
            resp = self.session.get(url, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TradelogUnavailable(f"GET {url} failed: {type(exc).__name__}") from None
        if resp.status_code == 404:
            raise errors.NotFound(f"position {position_id} not found in the trade log")
        if resp.status_code != 200:
            raise TradelogUnavailable(f"GET {url} answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise TradelogUnavailable(f"GET {url} did not answer JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("legs"), list):
            raise TradelogUnavailable(f"GET {url} answered something that is not a position snapshot")
        return body

    def link(self, position_id: str, artifact_id: str, computed_at) -> int | None:
        """POST the artifact reference (Idempotency-Key: one per artifact, so a retry is
        harmless). Returns the status code, or None if the trade log was unreachable."""
        import requests
        url = f"{self.base_url}/api/positions/{position_id}/risk-artifact"
        headers = dict(self.headers, **{"Idempotency-Key": f"riskgraph-artifact-{artifact_id}"})
        try:
            resp = self.session.post(url, json={"artifact_id": artifact_id, "computed_at": iso(computed_at)},
                                     headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            log.warning("risk-artifact callback %s failed: %s", url, exc)
            return None
        if resp.status_code >= 300:
            log.warning("risk-artifact callback %s answered %s: %s", url, resp.status_code, resp.text[:200])
        return resp.status_code


def pull_position_risk(get_conn: Callable, user_id: int, position_id: str, client: TradelogClient,
                       args: dict, after_response: Callable[[Callable], None]) -> dict:
    """Pattern A. The snapshot is fetched before this request opens its transaction
    (``get_conn`` is called only afterwards), and the reference is posted back after the
    response, once the artifact is committed — so no database lock is held across a call
    to the trade log (which may share the database, or even the process)."""
    snapshot = client.snapshot(position_id)
    if str(snapshot.get("position_id") or snapshot.get("id")) != str(position_id):
        raise TradelogUnavailable("the trade log answered a snapshot of another position")
    c = get_conn()
    artifact, reused = service.compute_position_artifact(c, user_id, snapshot, args, source="snapshot")
    if snapshot.get("symbol"):
        service.set_market_inputs(c, user_id, snapshot["symbol"], args)
    url = f"{client.base_url}/api/positions/{position_id}/risk-artifact"
    if not reused:
        after_response(lambda: client.link(position_id, artifact["id"], artifact["computed_at"]))
    return {**artifact, "reused": reused, "link": {"url": url, "status": "already_linked" if reused else "scheduled"}}
