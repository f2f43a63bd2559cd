"""Tests of error bodies, rate-limit headers and email masking in error text."""

from __future__ import annotations

import json

from klaviyo_pipeline.klaviyo import KlaviyoApiError, RateLimitHeaders
from klaviyo_pipeline.klaviyo.errors import mask_emails_in_text, parse_error_body


def test_parse_json_api_errors():
    body = json.dumps(
        {
            "errors": [
                {
                    "id": "1",
                    "status": 409,
                    "code": "duplicate_profile",
                    "title": "Conflict.",
                    "detail": "A profile already exists",
                    "source": {"pointer": "/data/attributes"},
                    "meta": {"duplicate_profile_id": "P1"},
                }
            ]
        }
    )
    (error,) = parse_error_body(body)

    assert error.code == "duplicate_profile"
    assert error.status == 409
    assert error.pointer == "/data/attributes"
    assert error.meta == {"duplicate_profile_id": "P1"}


def test_non_json_body_has_no_errors():
    assert parse_error_body("<html>Bad gateway</html>") == ()
    assert parse_error_body(None) == ()
    assert parse_error_body('{"errors": "x"}') == ()


def test_rate_limit_headers_case_insensitive():
    headers = RateLimitHeaders.from_headers(
        {"ratelimit-limit": "150", "RateLimit-Remaining": "0", "RATELIMIT-RESET": "42"}
    )

    assert headers.limit == 150
    assert headers.remaining == 0
    assert headers.reset_seconds == 42


def test_retry_after_forms():
    assert RateLimitHeaders.from_headers({"Retry-After": "3"}).retry_after_seconds == 3
    assert RateLimitHeaders.from_headers({"Retry-After": "1.5"}).retry_after_seconds == 1.5
    assert RateLimitHeaders.from_headers({"Retry-After": "soon"}).retry_after_seconds is None
    date = RateLimitHeaders.from_headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert date.retry_after_seconds == 0


def test_missing_headers_are_none():
    headers = RateLimitHeaders.from_headers(None)

    assert headers.retry_after_seconds is None
    assert headers.remaining is None


def test_emails_masked_in_detail():
    text = "invalid email address 'jane.doe@example.com' for profile"

    assert mask_emails_in_text(text) == "invalid email address 'j***@example.com' for profile"


def test_api_error_message_masks_email():
    body = json.dumps({"errors": [{"code": "invalid", "detail": "bad jane@example.com"}]})
    error = KlaviyoApiError.from_response(400, "event_bulk_create", body, {})

    assert "jane@" not in str(error)
    assert "j***@example.com" in str(error)
    assert error.first_detail == "bad j***@example.com"
