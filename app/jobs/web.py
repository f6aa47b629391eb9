"""What views use to submit jobs (re-exported by ``app.jobs``): the request's ``JobSystem``,
``submit`` on behalf of the signed-in user, and the ``202 Accepted`` answer."""
from __future__ import annotations


def system():
    """The app's ``JobSystem`` (``app.extensions['tradeloop'].jobs``)."""
    from flask import current_app
    return current_app.extensions["tradeloop"].jobs


def submit(conn, kind: str, params: dict | None = None, *, user=None) -> dict:
    """Submit a job on behalf of the signed-in ``user`` (an ``app.auth.User``) in the
    request's transaction. See ``JobSystem.submit`` for the errors (422, 403, 503)."""
    return system().submit(conn, kind, params, user_id=user.id if user else None,
                           is_admin=bool(user and user.is_admin))


def accepted(job: dict):
    """``202 Accepted`` with ``Location: /api/jobs/{id}`` and the job as the body: what a
    view returns for a long operation (document it with ``@blp.response(202, JobSchema)``)."""
    return job, 202, {"Location": f"/api/jobs/{job['id']}"}
