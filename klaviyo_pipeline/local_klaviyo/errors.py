"""JSON:API error objects in the shape Klaviyo returns them."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Titles of the error codes. The titles of invalid, throttled and duplicate_profile are
# copied from real Klaviyo error bodies, and the others are the local server's wording.
TITLES: dict[str, str] = {
    "invalid": "Invalid input.",
    "not_authenticated": "Authentication credentials were not provided.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "duplicate_profile": "Conflict.",
    "payload_too_large": "Payload too large.",
    "unsupported_media_type": "Unsupported media type.",
    "length_required": "Length required.",
    "throttled": "Request was throttled.",
    "error": "A server error occurred.",
    "bad_gateway": "Bad gateway.",
    "service_unavailable": "Service unavailable.",
    "gateway_timeout": "Gateway timeout.",
}


@dataclass
class ApiError(Exception):
    """Error response of one request, raised by the request handlers.

    Attributes:
        status: HTTP status code.
        code: Klaviyo error code such as ``invalid`` or ``duplicate_profile``.
        detail: Human-readable description of what failed, naming the value.
        pointer: JSON pointer into the request body, for body errors.
        parameter: Name of the query parameter or header, for errors outside the body.
        meta: Extra machine-readable fields such as ``duplicate_profile_id``.
        headers: Extra response headers such as ``Retry-After``.
    """

    status: int
    code: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"

    def to_error_object(self) -> dict[str, Any]:
        """Build the JSON:API error object that goes into the ``errors`` array."""
        source: dict[str, str] = {}
        if self.pointer is not None:
            source["pointer"] = self.pointer
        if self.parameter is not None:
            source["parameter"] = self.parameter
        return {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": TITLES.get(self.code, "Error."),
            "detail": self.detail,
            "source": source,
            "links": {},
            "meta": dict(self.meta),
        }


def error_document(errors: list[ApiError]) -> dict[str, Any]:
    """Build the response body ``{"errors": [...]}`` for one or more errors."""
    return {"errors": [error.to_error_object() for error in errors]}


def invalid(detail: str, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    """Build a 400 ``invalid`` error, the code Klaviyo uses for request validation."""
    return ApiError(status=400, code="invalid", detail=detail, pointer=pointer, parameter=parameter)


def json_pointer(parts: Iterable[str | int]) -> str:
    """Join path parts into an RFC 6901 JSON pointer, escaping ``~`` and ``/``."""
    escaped = [str(part).replace("~", "~0").replace("/", "~1") for part in parts]
    if not escaped:
        return ""
    return "/" + "/".join(escaped)
