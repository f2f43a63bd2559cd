"""Tests of the error classification table and the messages of fatal errors."""

from __future__ import annotations

import pytest

from klaviyo_pipeline.klaviyo import (
    ApiErrorDetail,
    ErrorAction,
    KlaviyoApiError,
    KlaviyoResponseError,
    KlaviyoTransportError,
    KlaviyoValidationError,
    classify_error,
)


def api_error(status: int, code: str = "invalid", endpoint: str = "event_bulk_create"):
    detail = ApiErrorDetail(code=code, title="t", detail="d", pointer="/data")
    return KlaviyoApiError(status, endpoint, (detail,))


STATUS_CASES = [
    (400, "invalid", ErrorAction.REJECT, "klaviyo_invalid"),
    (422, "invalid", ErrorAction.REJECT, "klaviyo_invalid"),
    (409, "duplicate_profile", ErrorAction.REJECT, "identity_conflict"),
    (409, "conflict", ErrorAction.REJECT, "klaviyo_conflict"),
    (413, "payload_too_large", ErrorAction.SPLIT, "klaviyo_too_large"),
    (408, "timeout", ErrorAction.RETRY, None),
    (429, "throttled", ErrorAction.RETRY, None),
    (500, "error", ErrorAction.RETRY, None),
    (502, "bad_gateway", ErrorAction.RETRY, None),
    (503, "service_unavailable", ErrorAction.RETRY, None),
    (504, "gateway_timeout", ErrorAction.RETRY, None),
    (524, "timeout", ErrorAction.RETRY, None),
    (401, "not_authenticated", ErrorAction.FATAL, None),
    (403, "permission_denied", ErrorAction.FATAL, None),
    (404, "not_found", ErrorAction.FATAL, None),
    (410, "gone", ErrorAction.FATAL, None),
    (415, "unsupported_media_type", ErrorAction.FATAL, None),
]


@pytest.mark.parametrize(("status", "code", "action", "reason"), STATUS_CASES)
def test_status_classification(status, code, action, reason):
    classification = classify_error(api_error(status, code))

    assert classification.action is action
    assert classification.reason == reason


@pytest.mark.parametrize("kind", ["timeout", "connection", "protocol"])
def test_transport_errors_retry(kind):
    error = KlaviyoTransportError(kind, "event_bulk_create", "boom")

    assert classify_error(error).action is ErrorAction.RETRY


def test_missing_job_id_retries():
    error = KlaviyoResponseError("profile_bulk_import", "no job id")

    assert classify_error(error).action is ErrorAction.RETRY


def test_sdk_validation_rejects():
    error = KlaviyoValidationError("event_bulk_create", (ApiErrorDetail(pointer="/data"),))
    classification = classify_error(error)

    assert classification.action is ErrorAction.REJECT
    assert classification.reason == "sdk_invalid"


def test_unknown_exception_is_fatal():
    assert classify_error(RuntimeError("bug")).action is ErrorAction.FATAL


def test_401_message_names_key():
    message = classify_error(api_error(401, "not_authenticated")).message

    assert "KLAVIYO_API_KEY" in message
    assert "invalid" in message


def test_403_message_names_scope():
    message = classify_error(api_error(403, "permission_denied")).message

    assert "events:write" in message


def test_403_import_names_profile_scope():
    message = classify_error(api_error(403, "permission_denied", "profile_bulk_import")).message

    assert "profiles:write" in message


def test_410_message_names_revision():
    message = classify_error(api_error(410, "gone"), revision="2023-02-22").message

    assert "2023-02-22" in message
    assert "revision" in message
