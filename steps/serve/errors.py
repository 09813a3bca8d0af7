"""Errors a client can cause or meet, each with its HTTP status and a message that says how to fix the request.

Framework-free: the HTTP app turns them into JSON in one handler; a later
protocol (gRPC) maps the same classes to its own status codes.
"""

from __future__ import annotations


class ServeError(Exception):
    """As such: a bug of ours (500); its subclasses are what a client can fix or wait out."""

    status = 500
    kind = "INTERNAL_ERROR"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}  # HTTP headers the answer needs (Retry-After, Allow)

    def as_json(self) -> dict:
        return {"error_code": self.kind, "message": self.message}


class BadRequest(ServeError):
    status = 400
    kind = "BAD_REQUEST"


class NotFound(ServeError):
    status = 404
    kind = "NOT_FOUND"


class MethodNotAllowed(ServeError):
    status = 405
    kind = "METHOD_NOT_ALLOWED"


class PayloadTooLarge(ServeError):
    status = 413
    kind = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ServeError):
    status = 415
    kind = "UNSUPPORTED_MEDIA_TYPE"


class Unavailable(ServeError):
    """Not ready yet, or at capacity: try again shortly, as Retry-After says."""

    status = 503
    kind = "UNAVAILABLE"
    RETRY_AFTER_SECONDS = "1"

    def __init__(self, message: str):
        super().__init__(message, {"Retry-After": self.RETRY_AFTER_SECONDS})


BY_STATUS = {cls.status: cls for cls in (BadRequest, NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType)}


def for_status(status: int, message: str, headers: dict[str, str] | None = None) -> ServeError:
    """The typed error for a status the HTTP stack chose itself (unknown path, wrong method, broken multipart)."""
    error = BY_STATUS.get(status, BadRequest if 400 <= status < 500 else ServeError)(message)
    error.headers.update(headers or {})
    return error
