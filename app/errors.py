"""Domain errors and the one JSON error shape.

Service code raises these plain exceptions (never ``abort``); one handler in the host maps
them to HTTP. Every error body has the same shape::

    {"status": 409, "code": "version_conflict", "message": "...",
     "errors": {"json": {"field": ["..."]}},        # only for input errors
     "current": {...}}                               # only for stale writes
"""
from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str | None = None, *, errors: dict | None = None,
                 current: dict | None = None, code: str | None = None, **extra):
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.errors = errors
        self.current = current
        if code:
            self.code = code
        self.extra = extra

    def body(self) -> dict:
        body = {"status": self.status, "code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        if self.current is not None:
            body["current"] = self.current
        body.update(self.extra)
        return body


class BadRequest(DomainError):
    """The request could not be understood."""
    status = 400
    code = "bad_request"


class Unauthorized(DomainError):
    """Sign in, or send Authorization: Bearer <token>."""
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    """You may not do this."""
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    """No such resource."""
    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The resource is not in a state that allows this."""
    status = 409
    code = "conflict"


class VersionConflict(Conflict):
    """The resource has changed since the version you sent."""
    code = "version_conflict"


class InvalidState(Conflict):
    """The resource's state does not allow this transition."""
    code = "invalid_state"


class IdempotencyInFlight(Conflict):
    """A request with this Idempotency-Key is still being processed; retry shortly."""
    code = "idempotency_key_in_flight"


class Unprocessable(DomainError):
    """The request was well-formed but its content is invalid."""
    status = 422
    code = "validation_error"


class IdempotencyKeyReused(Unprocessable):
    """This Idempotency-Key was used with a different request."""
    code = "idempotency_key_reused"


class PreconditionRequired(DomainError):
    """This change needs an If-Match header with the version you last read."""
    status = 428
    code = "precondition_required"


def field_error(field: str, message: str, location: str = "json") -> Unprocessable:
    """A 422 naming one field, in the same shape webargs uses for schema errors."""
    return Unprocessable(f"{field}: {message}", errors={location: {field: [message]}})
