"""Typed errors of the Klaviyo client layer: API errors, transport errors and fatal errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from klaviyo_pipeline.masking import mask_email

_EMAIL_PATTERN = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+")


def mask_emails_in_text(text: str | None) -> str | None:
    """Replace every email address in `text` with its masked form, for logs and the sync log."""
    if not text:
        return text
    return _EMAIL_PATTERN.sub(lambda match: mask_email(match.group(0)) or "", text)


@dataclass(frozen=True)
class ApiErrorDetail:
    """One JSON:API error object from a Klaviyo error response.

    Attributes:
        code: Klaviyo's error code, such as ``invalid`` or ``duplicate_profile``.
        title: Short title of the error code.
        detail: Description of what failed, as Klaviyo wrote it.
        pointer: JSON pointer into the request body that the error names, if any.
        parameter: Query parameter or header that the error names, if any.
        status: HTTP status inside the error object, if Klaviyo sent one.
        meta: Extra fields such as ``duplicate_profile_id``.
    """

    code: str | None = None
    title: str | None = None
    detail: str | None = None
    pointer: str | None = None
    parameter: str | None = None
    status: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitHeaders:
    """Rate-limit headers of one response, in seconds and request counts.

    Klaviyo sends ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (the
    steady window) on responses other than 429, and ``Retry-After`` on a 429 instead.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None
    retry_after_seconds: float | None = None

    @classmethod
    def from_headers(cls, headers: Any) -> RateLimitHeaders:
        """Parse the headers of a response; a missing or malformed header becomes None."""
        if not headers:
            return cls()
        lookup = {str(key).lower(): str(value) for key, value in dict(headers).items()}
        return cls(
            limit=_parse_int(lookup.get("ratelimit-limit")),
            remaining=_parse_int(lookup.get("ratelimit-remaining")),
            reset_seconds=_parse_seconds(lookup.get("ratelimit-reset")),
            retry_after_seconds=_parse_retry_after(lookup.get("retry-after")),
        )


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    # An IETF-draft style value such as "150, 150;w=60" starts with the number we need.
    match = re.match(r"\s*(-?\d+)", value)
    return int(match.group(1)) if match else None


def _parse_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _parse_retry_after(value: str | None) -> float | None:
    seconds = _parse_seconds(value)
    if seconds is not None or value is None:
        return seconds
    # Retry-After may also be an HTTP date (RFC 9110, section 10.2.3).
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class KlaviyoError(Exception):
    """Base class of the errors that the Klaviyo clients raise."""


class KlaviyoApiError(KlaviyoError):
    """Klaviyo returned an HTTP error status.

    Attributes:
        status: HTTP status code.
        endpoint: Rate-limit key of the endpoint called, such as ``event_bulk_create``.
        errors: Parsed JSON:API error objects, empty if the body was not JSON:API.
        rate_limit: Rate-limit headers of the response.
    """

    def __init__(
        self,
        status: int,
        endpoint: str,
        errors: tuple[ApiErrorDetail, ...] = (),
        rate_limit: RateLimitHeaders | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        self.status = status
        self.endpoint = endpoint
        self.errors = errors
        self.rate_limit = rate_limit or RateLimitHeaders()
        self.body_excerpt = mask_emails_in_text(body_excerpt)
        super().__init__(self._describe())

    @property
    def retry_after_seconds(self) -> float | None:
        """Seconds from the ``Retry-After`` header, or None when it was missing or malformed."""
        return self.rate_limit.retry_after_seconds

    @property
    def first_code(self) -> str | None:
        """Error code of the first error object."""
        return self.errors[0].code if self.errors else None

    @property
    def first_detail(self) -> str | None:
        """Detail of the first error object, with emails masked."""
        return mask_emails_in_text(self.errors[0].detail) if self.errors else self.body_excerpt

    def _describe(self) -> str:
        parts = [f"Klaviyo returned HTTP {self.status} on {self.endpoint}"]
        if self.errors:
            first = self.errors[0]
            parts.append(f"{first.code}: {mask_emails_in_text(first.detail)}")
            if len(self.errors) > 1:
                parts.append(f"and {len(self.errors) - 1} more errors")
        elif self.body_excerpt:
            parts.append(self.body_excerpt)
        return ", ".join(parts)

    @classmethod
    def from_response(
        cls, status: int, endpoint: str, body: str | bytes | None, headers: Any
    ) -> KlaviyoApiError:
        """Build the error from a response status, body text and headers."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return cls(
            status=status,
            endpoint=endpoint,
            errors=parse_error_body(text),
            rate_limit=RateLimitHeaders.from_headers(headers),
            body_excerpt=(text or "")[:200] or None,
        )


class KlaviyoTransportError(KlaviyoError):
    """The request got no HTTP response: a timeout, a refused or reset connection, or a
    protocol error. The request may or may not have reached Klaviyo.

    Attributes:
        kind: ``timeout``, ``connection`` or ``protocol``.
        endpoint: Rate-limit key of the endpoint called.
    """

    def __init__(self, kind: str, endpoint: str, message: str) -> None:
        self.kind = kind
        self.endpoint = endpoint
        super().__init__(f"{kind} error on {endpoint}: {message}")


class KlaviyoResponseError(KlaviyoError):
    """Klaviyo returned a 2xx status but a body that the sync cannot use, such as an
    import job without an id. The sync retries the request."""

    def __init__(self, endpoint: str, message: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"unusable response from {endpoint}: {message}")


class KlaviyoValidationError(KlaviyoError):
    """The SDK's request model rejected the body before anything was sent.

    Attributes:
        endpoint: Rate-limit key of the endpoint that would have been called.
        errors: One error per invalid field, with a JSON pointer into the body.
    """

    def __init__(self, endpoint: str, errors: tuple[ApiErrorDetail, ...]) -> None:
        self.endpoint = endpoint
        self.errors = errors
        first = errors[0].detail if errors else "invalid body"
        super().__init__(f"request body for {endpoint} is invalid: {first}")


class KlaviyoFatalError(KlaviyoError):
    """A configuration error that every further request would repeat (401, 403, 410 and
    other client errors that name no row). The sync stops before sending more.

    Attributes:
        status: HTTP status code, if the error came from a response.
        report: The sync report up to the error, set by the sync before raising.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        self.report: Any = None
        super().__init__(message)


def parse_error_body(text: str | None) -> tuple[ApiErrorDetail, ...]:
    """Parse a JSON:API error body into error objects; a non-JSON body gives none."""
    if not text:
        return ()
    try:
        document = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return ()
    return tuple(_parse_error_object(item) for item in document["errors"] if isinstance(item, dict))


def _parse_error_object(item: dict[str, Any]) -> ApiErrorDetail:
    source = item.get("source") if isinstance(item.get("source"), dict) else {}
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    status = item.get("status")
    return ApiErrorDetail(
        code=_text_or_none(item.get("code")),
        title=_text_or_none(item.get("title")),
        detail=_text_or_none(item.get("detail")),
        pointer=_text_or_none(source.get("pointer")),
        parameter=_text_or_none(source.get("parameter")),
        status=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
        meta=meta,
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
