"""Klaviyo's validation rules beyond the JSON Schema: identifiers, emails, phones, limits.

The functions take request parts that already passed the schema check and raise
``ApiError`` (400 ``invalid``) with a JSON pointer to the failing member. They return the
normalized inputs that the account store applies.
"""

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import phonenumbers

from klaviyo_pipeline.local_klaviyo import limits
from klaviyo_pipeline.local_klaviyo.errors import invalid, json_pointer
from klaviyo_pipeline.local_klaviyo.schema_validator import SchemaViolation

# Identifiers that find or create a profile. Email and phone_number merge profiles, the
# others only look a profile up (see profiles.py).
IDENTIFIER_FIELDS: tuple[str, ...] = ("email", "phone_number", "external_id", "anonymous_id", "_kx")

# A pragmatic subset of RFC 5322 addresses: dot-atom local part and a DNS host name with a
# top-level domain. Quoted local parts and internationalized addresses are rejected.
_EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_E164_PATTERN = re.compile(r"\+[1-9][0-9]{6,14}")

# A str of at most this many characters cannot exceed MAX_STRING_BYTES of UTF-8, because
# a code point takes at most 4 bytes. Longer strings are encoded to measure them.
_SAFE_STRING_CHARACTERS = limits.MAX_STRING_BYTES // 4

EARLIEST_EVENT_TIME = datetime(limits.MIN_EVENT_YEAR, 1, 1, tzinfo=UTC)


@dataclass
class ProfileInput:
    """Validated profile of a request: identifiers to match and fields to write.

    Attributes:
        pointer: JSON pointer of the profile resource object in the request body.
        profile_id: Klaviyo profile id from ``data.id``, if given.
        attributes: Profile attributes as sent. ``None`` clears a field, a missing key
            keeps it. An invalid ``phone_number`` that Klaviyo ignores is removed.
        patch_properties: ``meta.patch_properties`` (``append``, ``unappend``, ``unset``).
        ignored_phone_number: True when an invalid phone number was dropped because the
            profile also has a valid email address.
    """

    pointer: str
    profile_id: str | None
    attributes: dict[str, Any]
    patch_properties: dict[str, Any] = field(default_factory=dict)
    ignored_phone_number: bool = False

    def identifiers(self) -> dict[str, str]:
        """Return the identifier fields that have a non-empty value."""
        found = {}
        for name in IDENTIFIER_FIELDS:
            value = self.attributes.get(name)
            if value:
                found[name] = value
        return found


@dataclass
class EventInput:
    """Validated event of a request, ready to be stored.

    Attributes:
        pointer: JSON pointer of the event resource object in the request body.
        metric: Metric name.
        properties: Event properties.
        time: Event time in UTC, truncated to the second.
        value: Monetary value, if given.
        value_currency: ISO 4217 code as sent, if given.
        unique_id: De-duplication id, if given.
        backfill: True when the event must not trigger flows.
        profile: The profile the event belongs to.
    """

    pointer: str
    metric: str
    properties: dict[str, Any]
    time: datetime
    value: float | int | None
    value_currency: str | None
    unique_id: str | None
    backfill: bool
    profile: ProfileInput


def raise_schema_violation(violation: SchemaViolation) -> None:
    """Raise the 400 error for a schema violation, pointing at the failing member."""
    pointer = json_pointer(violation.path)
    location = pointer or "the request body"
    raise invalid(f"{location}: {violation.message}", pointer=pointer or "/")


def is_valid_email(email: str) -> bool:
    """Return whether ``email`` is a syntactically valid address of at most 100 characters."""
    return len(email) <= limits.MAX_EMAIL_LENGTH and _EMAIL_PATTERN.fullmatch(email) is not None


@functools.lru_cache(maxsize=65_536)
def is_valid_phone_number(phone_number: str) -> bool:
    """Return whether ``phone_number`` is a valid number written in E.164 form.

    Results are cached for syncs that send the same profiles again.

    NOTE: parsing and validating an uncached number with libphonenumber costs tens of
    microseconds, which is most of the validation time of a bulk body with a new phone
    number on every profile.
    """
    if _E164_PATTERN.fullmatch(phone_number) is None:
        return False
    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed)


def find_long_string(value: Any) -> SchemaViolation | None:
    """Find the first string longer than 100 KB of UTF-8 in a JSON value, keys included."""
    value_type = type(value)
    if value_type is str:
        if len(value) > _SAFE_STRING_CHARACTERS and _utf8_length(value) > limits.MAX_STRING_BYTES:
            return SchemaViolation(f"string of {_utf8_length(value)} bytes exceeds 100 KB")
        return None
    if value_type is dict:
        for key, item in value.items():
            violation = find_long_string(key) or find_long_string(item)
            if violation is not None:
                violation.reversed_path.append(key)
                return violation
        return None
    if value_type is list:
        for index, item in enumerate(value):
            violation = find_long_string(item)
            if violation is not None:
                violation.reversed_path.append(index)
                return violation
    return None


def find_event_property_violation(value: Any, object_level: int) -> SchemaViolation | None:
    """Find the first violation of Klaviyo's event property limits inside ``value``.

    Checks strings (100 KB), arrays (4,000 items), object nesting (10 levels, where the
    properties object itself is level 1) and integers (64-bit signed).

    Args:
        value: A decoded JSON value inside the event properties.
        object_level: Number of objects that enclose ``value``.
    """
    value_type = type(value)
    if value_type is str:
        if len(value) > _SAFE_STRING_CHARACTERS and _utf8_length(value) > limits.MAX_STRING_BYTES:
            return SchemaViolation(f"string of {_utf8_length(value)} bytes exceeds 100 KB")
        return None
    if value_type is dict:
        level = object_level + 1
        if level > limits.MAX_NESTING_LEVELS:
            return SchemaViolation(
                f"objects are nested {level} levels deep, but at most "
                f"{limits.MAX_NESTING_LEVELS} are allowed"
            )
        for key, item in value.items():
            if len(key) > _SAFE_STRING_CHARACTERS and _utf8_length(key) > limits.MAX_STRING_BYTES:
                return SchemaViolation("property name exceeds 100 KB", [key])
            violation = find_event_property_violation(item, level)
            if violation is not None:
                violation.reversed_path.append(key)
                return violation
        return None
    if value_type is list:
        if len(value) > limits.MAX_ARRAY_ITEMS:
            return SchemaViolation(
                f"array has {len(value)} items, but at most {limits.MAX_ARRAY_ITEMS} are allowed"
            )
        for index, item in enumerate(value):
            violation = find_event_property_violation(item, object_level)
            if violation is not None:
                violation.reversed_path.append(index)
                return violation
        return None
    if value_type is int and not limits.MIN_INT64 <= value <= limits.MAX_INT64:
        return SchemaViolation("integer does not fit in 64 bits")
    return None


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def check_event_properties(properties: dict[str, Any], pointer: str) -> None:
    """Raise 400 if event properties break Klaviyo's count, size or nesting limits."""
    if len(properties) > limits.MAX_EVENT_PROPERTIES:
        raise invalid(
            f"Event has {len(properties)} properties, but at most "
            f"{limits.MAX_EVENT_PROPERTIES} are allowed.",
            pointer=pointer,
        )
    violation = find_event_property_violation(properties, 0)
    if violation is not None:
        raise invalid(violation.message, pointer=pointer + json_pointer(violation.path))


def parse_event_time(value: str | None, pointer: str, received_at: datetime) -> datetime:
    """Parse an event ``time`` as ISO 8601 and check Klaviyo's range.

    A missing time is the receive time. A time without an offset is taken as UTC, and a
    date without a time as midnight UTC. The result is truncated to the second.
    """
    if value is None:
        return received_at.replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            f"time {value!r} is not an ISO 8601 date-time such as 2025-05-01T12:30:15+00:00.",
            pointer=pointer,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC).replace(microsecond=0)

    if parsed < EARLIEST_EVENT_TIME:
        raise invalid(
            f"time {value!r} is before the year {limits.MIN_EVENT_YEAR}.", pointer=pointer
        )
    latest = received_at + timedelta(days=limits.MAX_EVENT_DAYS_AHEAD)
    if parsed > latest:
        raise invalid(f"time {value!r} is more than one year in the future.", pointer=pointer)
    return parsed


def parse_profile(resource: dict[str, Any], pointer: str, max_bytes: int | None) -> ProfileInput:
    """Validate a profile resource object (``{"type": "profile", "attributes": ...}``).

    The profile needs at least one identifier: ``id``, email, phone_number, external_id,
    anonymous_id or _kx. An email must be valid and at most 100 characters long. A phone
    number must be valid E.164, unless the profile also has a valid email, in which case
    Klaviyo ignores the invalid phone number and so does this function. Strings may be at
    most 100 KB, and the whole profile object at most ``max_bytes``.

    Raises:
        ApiError: 400 ``invalid`` with a pointer to the failing member.
    """
    attributes_pointer = pointer + "/attributes"
    attributes = dict(resource["attributes"])
    profile_id = resource.get("id")

    if max_bytes is not None:
        size = len(orjson.dumps(resource))
        if size > max_bytes:
            raise invalid(
                f"Profile object is {size} bytes, but at most {max_bytes} bytes are allowed.",
                pointer=pointer,
            )
    violation = find_long_string(attributes)
    if violation is not None:
        raise invalid(violation.message, pointer=attributes_pointer + json_pointer(violation.path))

    email = attributes.get("email")
    has_valid_email = False
    if email is not None:
        if len(email) > limits.MAX_EMAIL_LENGTH:
            raise invalid(
                f"email is {len(email)} characters, but at most "
                f"{limits.MAX_EMAIL_LENGTH} are allowed.",
                pointer=attributes_pointer + "/email",
            )
        if not is_valid_email(email):
            raise invalid(
                "email is not a valid email address.", pointer=attributes_pointer + "/email"
            )
        has_valid_email = True

    ignored_phone_number = False
    phone_number = attributes.get("phone_number")
    if phone_number is not None and not is_valid_phone_number(phone_number):
        if not has_valid_email:
            raise invalid(
                "phone_number is not a valid phone number in E.164 format, e.g. +15005550006.",
                pointer=attributes_pointer + "/phone_number",
            )
        del attributes["phone_number"]
        ignored_phone_number = True

    profile = ProfileInput(
        pointer=pointer,
        profile_id=profile_id,
        attributes=attributes,
        patch_properties=dict((resource.get("meta") or {}).get("patch_properties") or {}),
        ignored_phone_number=ignored_phone_number,
    )
    if not profile_id and not profile.identifiers():
        raise invalid(
            "Profile needs at least one identifier: id, email, phone_number, external_id, "
            "anonymous_id or _kx.",
            pointer=attributes_pointer,
        )
    return profile


def parse_event(
    attributes: dict[str, Any],
    pointer: str,
    profile: ProfileInput,
    received_at: datetime,
    group_backfill: bool = False,
) -> EventInput:
    """Validate the attributes of one event resource object.

    Args:
        attributes: The event's ``attributes`` object.
        pointer: JSON pointer of the event resource object.
        profile: The validated profile the event belongs to.
        received_at: Time the request was received, in UTC.
        group_backfill: The ``backfill`` flag of the enclosing bulk group, which applies
            to every event in it.

    Raises:
        ApiError: 400 ``invalid`` with a pointer to the failing member.
    """
    attributes_pointer = pointer + "/attributes"
    metric = attributes["metric"]["data"]["attributes"]["name"]
    metric_pointer = attributes_pointer + "/metric/data/attributes/name"
    if not metric.strip():
        raise invalid("Metric name must not be empty.", pointer=metric_pointer)
    if len(metric) > limits.MAX_METRIC_NAME_LENGTH:
        raise invalid(
            f"Metric name is {len(metric)} characters, but it must be less than "
            f"{limits.MAX_METRIC_NAME_LENGTH + 1}.",
            pointer=metric_pointer,
        )

    unique_id = attributes.get("unique_id")
    if unique_id is not None:
        length = len(unique_id)
        if not limits.MIN_UNIQUE_ID_LENGTH <= length <= limits.MAX_UNIQUE_ID_LENGTH:
            raise invalid(
                f"unique_id is {length} characters, but it must be 1 to "
                f"{limits.MAX_UNIQUE_ID_LENGTH}.",
                pointer=attributes_pointer + "/unique_id",
            )

    properties = attributes["properties"]
    check_event_properties(properties, attributes_pointer + "/properties")
    if find_long_string(attributes.get("value_currency")) is not None:
        raise invalid(
            "value_currency exceeds 100 KB.", pointer=attributes_pointer + "/value_currency"
        )

    event_time = parse_event_time(attributes.get("time"), attributes_pointer + "/time", received_at)
    return EventInput(
        pointer=pointer,
        metric=metric,
        properties=properties,
        time=event_time,
        value=attributes.get("value"),
        value_currency=attributes.get("value_currency"),
        unique_id=unique_id,
        backfill=bool(attributes.get("backfill")) or group_backfill,
        profile=profile,
    )
