"""Classification of Klaviyo client errors into what the sync does next.

| error | action | reason |
| --- | --- | --- |
| 400, 422 | reject the rows the errors name | ``klaviyo_invalid`` |
| 409 ``duplicate_profile`` | reject the rows the errors name | ``identity_conflict`` |
| other 409 | reject the rows the errors name | ``klaviyo_conflict`` |
| 413 | split the batch; a single record is rejected | ``klaviyo_too_large`` |
| SDK model validation | reject the rows the errors name | ``sdk_invalid`` |
| 408, 429, 5xx, status 0 (SSL) | retry with backoff | |
| timeouts, refused or reset connections, protocol errors | retry with backoff | |
| 2xx body without a job id | retry with backoff | |
| 401, 403, 404, 410 and other 4xx | stop the run | |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from klaviyo_pipeline import settings
from klaviyo_pipeline.klaviyo import endpoints
from klaviyo_pipeline.klaviyo.errors import (
    KlaviyoApiError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    KlaviyoValidationError,
)
from klaviyo_pipeline.outcomes import Reason

# Proposed addition to ``outcomes.Reason``: the SDK's request model rejected the row.
SDK_INVALID = "sdk_invalid"


class ErrorAction(StrEnum):
    """Action the sync takes on a batch after an error."""

    RETRY = "retry"
    REJECT = "reject"
    SPLIT = "split"
    FATAL = "fatal"


@dataclass(frozen=True)
class Classification:
    """Action for one error, the reason for rejected rows and the message of a fatal error."""

    action: ErrorAction
    reason: str | None = None
    message: str | None = None


_RETRYABLE_STATUSES = frozenset({0, 408, 429})
_REJECT_REASONS = {400: Reason.KLAVIYO_INVALID.value, 422: Reason.KLAVIYO_INVALID.value}


def classify_error(error: Exception, revision: str = settings.API_REVISION) -> Classification:
    """Classify an error raised by a Klaviyo client.

    Args:
        error: The exception a client method raised.
        revision: The API revision the client sends, named in the message of a 410.

    Returns:
        The classification. Exceptions that are not Klaviyo client errors are fatal,
        because they are bugs or environment faults that no row caused.
    """
    if isinstance(error, KlaviyoTransportError | KlaviyoResponseError):
        return Classification(ErrorAction.RETRY)
    if isinstance(error, KlaviyoValidationError):
        return Classification(ErrorAction.REJECT, reason=SDK_INVALID)
    if not isinstance(error, KlaviyoApiError):
        return Classification(ErrorAction.FATAL, message=f"unexpected error: {error!r}")
    return classify_status(error, revision)


def classify_status(error: KlaviyoApiError, revision: str) -> Classification:
    """Classify an HTTP error response by its status and error codes."""
    status = error.status
    if status in _RETRYABLE_STATUSES or 500 <= status <= 599:
        return Classification(ErrorAction.RETRY)
    if status in _REJECT_REASONS:
        return Classification(ErrorAction.REJECT, reason=_REJECT_REASONS[status])
    if status == 409:
        codes = {detail.code for detail in error.errors}
        if "duplicate_profile" in codes:
            return Classification(ErrorAction.REJECT, reason=Reason.IDENTITY_CONFLICT.value)
        return Classification(ErrorAction.REJECT, reason=Reason.KLAVIYO_CONFLICT.value)
    if status == 413:
        return Classification(ErrorAction.SPLIT, reason=Reason.KLAVIYO_TOO_LARGE.value)
    return Classification(ErrorAction.FATAL, message=fatal_message(error, revision))


def fatal_message(error: KlaviyoApiError, revision: str) -> str:
    """Build the message of a fatal error, naming the likely cause and the fix."""
    route = endpoints.ROUTES.get(error.endpoint, error.endpoint)
    answer = f"Klaviyo returned {error.status}"
    if error.errors:
        answer += f" {error.first_code}: {error.first_detail}"
    if error.status == 401:
        return (
            f"{answer} on {route}. The API key is missing or invalid: set KLAVIYO_API_KEY "
            "to a private API key (it starts with 'pk_') of the target Klaviyo account."
        )
    if error.status == 403:
        scope = endpoints.SCOPES.get(error.endpoint, "the scope of this endpoint")
        return (
            f"{answer} on {route}. The private API key is probably missing the scope "
            f"{scope}, or the account blocks this client; add the scope to the key in "
            "Klaviyo (Settings > API keys) or use a key that has it."
        )
    if error.status == 410:
        return (
            f"{answer} on {route}. Klaviyo no longer serves API revision {revision}; "
            "upgrade klaviyo-api to a release that sends a supported revision."
        )
    if error.status == 404:
        return (
            f"{answer} on {route}. The endpoint was not found: check KLAVIYO_BASE_URL "
            "(no trailing path) and the API revision."
        )
    return f"{answer} on {route}. This client error names no row, so every request would fail."
