"""Errors a client can cause or meet, each with its HTTP status and a message that says how to fix the request."""

from __future__ import annotations


class ServeError(Exception):
    """As such: a bug of ours (500); its subclasses are what a client can fix or wait out."""

    status = 500
    kind = "INTERNAL_ERROR"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def as_json(self) -> dict:
        return {"error_code": self.kind, "message": self.message}


class BadRequest(ServeError):
    status = 400
    kind = "BAD_REQUEST"


class NotFound(ServeError):
    status = 404
    kind = "NOT_FOUND"


class PayloadTooLarge(ServeError):
    status = 413
    kind = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ServeError):
    status = 415
    kind = "UNSUPPORTED_MEDIA_TYPE"


class Unavailable(ServeError):
    """Not ready yet, or the queue is full: try again shortly (Retry-After)."""

    status = 503
    kind = "UNAVAILABLE"
