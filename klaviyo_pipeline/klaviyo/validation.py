"""Klaviyo's documented request rules, checked locally by the fake and the dry-run clients.

Each check returns JSON:API error objects with a JSON pointer into the body, in the form
Klaviyo uses, so the sync maps them back to records the same way as real errors. The
rules come from the Events and Profiles API overviews and the OpenAPI spec (revision
2026-07-15): at least one profile identifier; a valid email of at most 100 characters; an
E.164 phone number; a metric name under 128 characters; a ``unique_id`` of 1 to 255
characters; an event time after 2000-01-01 and at most one year ahead; at most 400
properties per event; at most 1,000 events per bulk request, 10,000 profiles per import
job and 100 KB per profile; no repeated (profile, metric, unique_id) in one bulk request.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from klaviyo_pipeline import settings
from klaviyo_pipeline.klaviyo.errors import ApiErrorDetail

EVENTS_POINTER = "/data/attributes/events-bulk-create/data"
PROFILES_POINTER = "/data/attributes/profiles/data"
IDENTIFIERS = ("email", "phone_number", "external_id", "id")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def invalid(detail: str, pointer: str) -> ApiErrorDetail:
    """Build a 400 ``invalid`` error object for one pointer."""
    return ApiErrorDetail(
        code="invalid", title="Invalid input.", detail=detail, pointer=pointer, status=400
    )


def body_size(body: dict[str, Any]) -> int:
    """Return the size in bytes of `body` encoded as compact UTF-8 JSON, as the client sends it."""
    return len(orjson.dumps(body))


def check_profile_attributes(attributes: Any, pointer: str) -> list[ApiErrorDetail]:
    """Check the identifiers of one profile's attributes."""
    if not isinstance(attributes, dict):
        return [invalid("profile attributes must be an object", pointer)]
    if not any(attributes.get(name) for name in IDENTIFIERS):
        return [invalid("a profile needs one of email, phone_number, external_id or id", pointer)]
    errors = []
    email = attributes.get("email")
    if email is not None and (
        not isinstance(email, str)
        or len(email) > settings.MAX_EMAIL_LENGTH
        or not _EMAIL.match(email)
    ):
        errors.append(invalid(f"invalid email address {email!r}", f"{pointer}/email"))
    phone = attributes.get("phone_number")
    if phone is not None and (not isinstance(phone, str) or not _E164.match(phone)):
        errors.append(invalid(f"invalid E.164 phone number {phone!r}", f"{pointer}/phone_number"))
    return errors


def check_event_attributes(attributes: Any, pointer: str, now: datetime) -> list[ApiErrorDetail]:
    """Check one event's metric name, unique_id, time and properties."""
    if not isinstance(attributes, dict):
        return [invalid("event attributes must be an object", pointer)]
    errors = []
    metric = ((attributes.get("metric") or {}).get("data") or {}).get("attributes") or {}
    name = metric.get("name")
    if not isinstance(name, str) or not name or len(name) > settings.MAX_METRIC_NAME_LENGTH:
        errors.append(
            invalid(
                f"metric name must be 1 to {settings.MAX_METRIC_NAME_LENGTH} characters",
                f"{pointer}/metric/data/attributes/name",
            )
        )
    unique_id = attributes.get("unique_id")
    if unique_id is not None and not 1 <= len(str(unique_id)) <= settings.MAX_UNIQUE_ID_LENGTH:
        errors.append(invalid("unique_id must be 1 to 255 characters", f"{pointer}/unique_id"))
    errors.extend(_check_time(attributes.get("time"), f"{pointer}/time", now))
    properties = attributes.get("properties")
    if not isinstance(properties, dict):
        errors.append(invalid("properties must be an object", f"{pointer}/properties"))
    elif len(properties) > settings.MAX_PROPERTIES:
        errors.append(invalid("an event may have at most 400 properties", f"{pointer}/properties"))
    return errors


def _check_time(value: Any, pointer: str, now: datetime) -> list[ApiErrorDetail]:
    if value is None:
        return []
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return [invalid(f"invalid ISO 8601 time {value!r}", pointer)]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    earliest = datetime(settings.MIN_EVENT_YEAR, 1, 1, tzinfo=UTC)
    latest = now + timedelta(days=settings.MAX_EVENT_DAYS_AHEAD)
    if not earliest <= moment <= latest:
        return [invalid(f"time {value!r} is before 2000 or more than a year ahead", pointer)]
    return []


def profile_identity(attributes: dict[str, Any]) -> str:
    """Return the identifier Klaviyo resolves a profile by: email, phone, external_id or id."""
    for name in ("email", "phone_number", "external_id", "id"):
        value = attributes.get(name)
        if value:
            return f"{name}:{value}"
    return ""


def event_bulk_items(body: Any) -> list[Any] | None:
    """Return the ``event-bulk-create`` items of a bulk event body, or None if malformed."""
    try:
        items = body["data"]["attributes"]["events-bulk-create"]["data"]
    except (KeyError, TypeError):
        return None
    return items if isinstance(items, list) else None


def item_events(item: Any) -> list[Any]:
    """Return the events of one ``event-bulk-create`` item, or an empty list if malformed."""
    try:
        events = item["attributes"]["events"]["data"]
    except (KeyError, TypeError):
        return []
    return events if isinstance(events, list) else []


def check_event_bulk_body(body: Any, now: datetime | None = None) -> list[ApiErrorDetail]:
    """Check a bulk event body and return its errors; an empty list means valid."""
    now = now or datetime.now(UTC)
    items = event_bulk_items(body)
    if not items:
        return [invalid("events-bulk-create must contain at least one item", EVENTS_POINTER)]
    total = sum(len(item_events(item)) for item in items)
    if total > settings.MAX_EVENTS_PER_BULK_REQUEST:
        return [invalid(f"at most 1,000 events per request, got {total}", EVENTS_POINTER)]

    errors: list[ApiErrorDetail] = []
    seen: set[tuple[str, str, str]] = set()
    for i, item in enumerate(items):
        item_pointer = f"{EVENTS_POINTER}/{i}"
        profile = (((item or {}).get("attributes") or {}).get("profile") or {}).get("data") or {}
        attributes_pointer = f"{item_pointer}/attributes/profile/data/attributes"
        profile_errors = check_profile_attributes(profile.get("attributes"), attributes_pointer)
        errors.extend(profile_errors)
        events = item_events(item)
        if not events:
            errors.append(invalid("an item needs at least one event", f"{item_pointer}/attributes"))
        identity = profile_identity(profile.get("attributes") or {})
        for j, event in enumerate(events):
            pointer = f"{item_pointer}/attributes/events/data/{j}/attributes"
            attributes = (event or {}).get("attributes")
            errors.extend(check_event_attributes(attributes, pointer, now))
            key = _event_key(identity, attributes)
            if key is None:
                continue
            if key in seen:
                errors.append(
                    invalid(
                        "an event with this unique_id is already in the request",
                        f"{pointer}/unique_id",
                    )
                )
            seen.add(key)
    return errors


def _event_key(identity: str, attributes: Any) -> tuple[str, str, str] | None:
    if not isinstance(attributes, dict) or attributes.get("unique_id") is None:
        return None
    metric = ((attributes.get("metric") or {}).get("data") or {}).get("attributes") or {}
    return identity, str(metric.get("name")), str(attributes["unique_id"])


def profile_import_items(body: Any) -> list[Any] | None:
    """Return the profiles of a bulk import body, or None if malformed."""
    try:
        profiles = body["data"]["attributes"]["profiles"]["data"]
    except (KeyError, TypeError):
        return None
    return profiles if isinstance(profiles, list) else None


def check_profile_import_body(
    body: Any,
) -> tuple[list[ApiErrorDetail], dict[int, list[ApiErrorDetail]]]:
    """Check a bulk profile import body.

    Returns:
        Errors that reject the whole request, and per-profile errors by index, which
        Klaviyo reports as import errors of the job.
    """
    profiles = profile_import_items(body)
    if not profiles:
        return [invalid("profiles must contain at least one profile", PROFILES_POINTER)], {}
    if len(profiles) > settings.MAX_PROFILES_PER_IMPORT_JOB:
        detail = f"at most 10,000 profiles per job, got {len(profiles)}"
        return [invalid(detail, PROFILES_POINTER)], {}

    per_profile: dict[int, list[ApiErrorDetail]] = {}
    for i, profile in enumerate(profiles):
        pointer = f"{PROFILES_POINTER}/{i}/attributes"
        attributes = (profile or {}).get("attributes")
        errors = check_profile_attributes(attributes, pointer)
        if not errors and body_size(profile) > settings.MAX_PROFILE_BYTES:
            errors = [invalid("a profile may be at most 100 KB", pointer)]
        if errors:
            per_profile[i] = errors
    return [], per_profile
