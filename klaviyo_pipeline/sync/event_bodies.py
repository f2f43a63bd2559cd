"""Bulk event request bodies: payloads per record, batches by count and size, pointer mapping.

One ``event-bulk-create`` item contains one profile and its events, so records are grouped by
profile. Sizes are counted as the SDK serializes a body: ``json.dumps`` with the default
separators and ``ensure_ascii=True``, so the length of the text is its size in bytes. The
SDK parses ``time`` into a datetime and writes it back with ``isoformat()``, so payloads
carry the time in that form already, and the size counted here is the size sent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

from klaviyo_pipeline import settings
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.sync.pointers import PointerTarget, parse_pointer
from klaviyo_pipeline.sync.values import is_missing, optional_text

EVENT_COLUMNS = (
    "record_id",
    "row_id",
    "metric",
    "unique_id",
    "email",
    "phone_number",
    "external_id",
    "profile_key",
    "time",
    "value",
    "value_currency",
    "properties",
    "profile_properties",
    "content_hash",
)
_ITEMS_PREFIX = ("data", "attributes", "events-bulk-create", "data")
# json.dumps writes ", " between list items.
_SEPARATOR_BYTES = 2


@dataclass(frozen=True)
class PayloadError:
    """A record whose payload cannot be built: its status, reason and a description."""

    position: int
    reason: str
    detail: str
    status: str = Status.REJECTED.value


IDENTIFIERS = ("email", "phone_number", "external_id")


def check_event_record(record: dict[str, Any]) -> tuple[str, str, str] | None:
    """Check the fields that Klaviyo requires of every event.

    The records builder already enforces these rules, so a failure here means that the
    input broke the records contract. The record is then settled here, because sending it
    would put ``"None"`` or ``"nan"`` into Klaviyo.

    Returns:
        (status, reason, detail) for an unsendable record, or None.
    """
    if not any(optional_text(record.get(name)) for name in IDENTIFIERS):
        return Status.SKIPPED, Reason.NO_IDENTIFIER, "no email, phone_number or external_id"
    unique_id = optional_text(record.get("unique_id"))
    if not unique_id:
        return Status.REJECTED, Reason.UNIQUE_ID_MISSING, "the record has no unique_id"
    if len(unique_id) > settings.MAX_UNIQUE_ID_LENGTH:
        detail = f"unique_id is {len(unique_id)} characters, over the limit of 255"
        return Status.REJECTED, Reason.UNIQUE_ID_TOO_LONG, detail
    if not optional_text(record.get("metric")):
        return Status.REJECTED, Reason.INVALID_NAME, "the record has no metric name"
    if is_missing(record.get("time")):
        return Status.REJECTED, Reason.TIME_MISSING, "the record has no time"
    value = record.get("value")
    if not is_missing(value) and not math.isfinite(float(value)):
        return Status.REJECTED, Reason.VALUE_INVALID, f"value {value!r} is not a finite number"
    return None


@dataclass
class EventPayloads:
    """Event resources of all records of a partition and their profile groups.

    Attributes:
        backfill: Value of ``backfill`` on every item and event.
        events: Event resource per record position; None for records with a payload error.
        event_bytes: Serialized size of each event resource: an upper bound until
            `exact_event_bytes` measured it.
        groups: Profile group key per record position.
        profiles: Profile resource per group key.
        item_bytes: Serialized size of an item of each group with an empty event list, an
            upper bound until `exact_item_bytes` measured it.
        errors: Records whose payload could not be built.
    """

    backfill: bool
    events: list[dict[str, Any] | None] = field(default_factory=list)
    event_bytes: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    item_bytes: dict[str, int] = field(default_factory=dict)
    errors: list[PayloadError] = field(default_factory=list)
    exact_events: set[int] = field(default_factory=set)
    exact_items: set[str] = field(default_factory=set)

    def exact_event_bytes(self, position: int) -> int:
        """Measure one event's size as the SDK serializes it, once."""
        if position not in self.exact_events:
            self.event_bytes[position] = len(json.dumps(self.events[position]))
            self.exact_events.add(position)
        return self.event_bytes[position]

    def exact_item_bytes(self, group: str) -> int:
        """Measure one profile item's size (with no events) as the SDK serializes it, once."""
        if group not in self.exact_items:
            item = item_resource(self.profiles[group], [], self.backfill)
            self.item_bytes[group] = len(json.dumps(item))
            self.exact_items.add(group)
        return self.item_bytes[group]


_NON_ASCII = bytes(range(128, 256))


def sdk_size_bound(value: Any) -> int:
    """Return an upper bound of `len(json.dumps(value))` from orjson's compact UTF-8 text.

    json.dumps adds a space after every ',' and ':' separator. It writes each non-ASCII
    character as a 6- or 12-character escape, at most 2 more bytes per UTF-8 byte. It
    writes float exponents with a sign and two digits ("1e-07" for orjson's "1e-7"), one
    more byte per "e", and escapes DEL, which orjson writes as is (5 more bytes). Counting
    every ',', ':' and 'e' byte, inside strings too, can only overestimate.
    """
    text = orjson.dumps(value)
    extra = text.count(b",") + text.count(b":") + text.count(b"e") + 5 * text.count(b"\x7f")
    if not text.isascii():
        extra += 2 * (len(text) - len(text.translate(None, _NON_ASCII)))
    return len(text) + extra


def parse_json_object(text: Any) -> dict[str, Any] | None:
    """Parse JSON object text; None and NaN give None.

    Raises:
        ValueError: The text is not a JSON object, or contains NaN or Infinity.
    """
    if is_missing(text):
        return None
    # orjson rejects NaN and Infinity, which are not JSON.
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def normalize_time(text: str) -> str:
    """Return an ISO 8601 time in the form the SDK sends it (``datetime.isoformat()``).

    Raises:
        ValueError: The time does not parse or has no UTC offset.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.isoformat()


def profile_resource(record: dict[str, Any], properties: dict[str, Any] | None) -> dict[str, Any]:
    """Build the inline profile of an event item.

    Absent and empty identifiers are left out rather than sent as null or "".
    """
    attributes = {
        name: str(record[name]) for name in IDENTIFIERS if optional_text(record.get(name))
    }
    if properties:
        attributes["properties"] = properties
    return {"type": "profile", "attributes": attributes}


def event_resource(
    record: dict[str, Any], time: str, properties: dict[str, Any], backfill: bool
) -> dict[str, Any]:
    """Build one event resource of an item."""
    attributes: dict[str, Any] = {
        "properties": properties,
        "time": time,
        "unique_id": str(record["unique_id"]),
        "backfill": backfill,
        "metric": {"data": {"type": "metric", "attributes": {"name": str(record["metric"])}}},
    }
    if not is_missing(record.get("value")):
        attributes["value"] = float(record["value"])
    if not is_missing(record.get("value_currency")):
        attributes["value_currency"] = str(record["value_currency"])
    return {"type": "event", "attributes": attributes}


def item_resource(
    profile: dict[str, Any], events: list[dict[str, Any]], backfill: bool
) -> dict[str, Any]:
    """Build one ``event-bulk-create`` item for a profile and its events."""
    return {
        "type": "event-bulk-create",
        "attributes": {
            "backfill": backfill,
            "profile": {"data": profile},
            "events": {"data": events},
        },
    }


def bulk_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the envelope of a ``POST /api/event-bulk-create-jobs`` request."""
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": items}},
        }
    }


EMPTY_BODY_BYTES = len(json.dumps(bulk_body([])))


def _blank(column: pd.Series) -> np.ndarray:
    return (column.isna() | (column.astype(object).map(str) == "")).to_numpy()


def _suspect_positions(records: pd.DataFrame) -> list[int]:
    """Return the positions that `check_event_record` could refuse, found column-wise."""
    no_identifier = np.logical_and.reduce([_blank(records[name]) for name in IDENTIFIERS])
    unique_ids = records["unique_id"]
    long_unique_id = (
        unique_ids.astype(object).map(str).str.len() > settings.MAX_UNIQUE_ID_LENGTH
    ).to_numpy()
    values = pd.to_numeric(records["value"], errors="coerce").to_numpy(dtype=float)
    bad_value = records["value"].notna().to_numpy() & ~np.isfinite(values)
    suspect = (
        no_identifier
        | _blank(unique_ids)
        | long_unique_id
        | _blank(records["metric"])
        | records["time"].isna().to_numpy()
        | bad_value
    )
    return np.flatnonzero(suspect).tolist()


def build_event_payloads(records: pd.DataFrame, backfill: bool) -> EventPayloads:
    """Build the event and profile resources of every record and measure their sizes."""
    payloads = EventPayloads(backfill=backfill)
    columns = list(EVENT_COLUMNS)
    # Column lists zipped into dicts skip the per-cell boxing of DataFrame.to_dict.
    values = zip(*(records[column].astype(object).tolist() for column in columns), strict=True)
    rows = (dict(zip(columns, row, strict=True)) for row in values)
    suspects = set(_suspect_positions(records))
    group_keys = _group_keys(records)
    for position, record in enumerate(rows):
        problem = check_event_record(record) if position in suspects else None
        if problem is not None:
            status, reason, detail = problem
            _add_error(payloads, position, reason, detail, status)
            continue
        try:
            properties = parse_json_object(record["properties"]) or {}
            profile_properties = parse_json_object(record["profile_properties"])
        except ValueError as error:
            _add_error(
                payloads, position, Reason.MAPPING_FAILED, f"invalid properties JSON: {error}"
            )
            continue
        try:
            time = normalize_time(str(record["time"]))
        except ValueError as error:
            _add_error(payloads, position, Reason.TIME_INVALID, str(error))
            continue

        event = event_resource(record, time, properties, backfill)
        group = group_keys[position]
        if group not in payloads.profiles:
            profile = profile_resource(record, profile_properties)
            payloads.profiles[group] = profile
            payloads.item_bytes[group] = sdk_size_bound(item_resource(profile, [], backfill))
        payloads.events.append(event)
        payloads.event_bytes.append(sdk_size_bound(event))
        payloads.groups.append(group)
    return payloads


def _add_error(
    payloads: EventPayloads,
    position: int,
    reason: str,
    detail: str,
    status: str = Status.REJECTED.value,
) -> None:
    payloads.errors.append(PayloadError(position, str(reason), detail, str(status)))
    payloads.events.append(None)
    payloads.event_bytes.append(0)
    payloads.groups.append("")


def _group_keys(records: pd.DataFrame) -> list[str]:
    """Return each record's profile group; events share an item only if their profile does."""
    columns = ["profile_key", "email", "phone_number", "external_id", "profile_properties"]
    texts = [
        records[name].astype(object).where(records[name].notna(), "").map(str) for name in columns
    ]
    return texts[0].str.cat(texts[1:], sep="\x1f").tolist()


def order_by_profile(positions: list[int], groups: list[str]) -> list[int]:
    """Order positions so that each profile's events follow each other, in first-seen order."""
    first_seen: dict[str, int] = {}
    for index, position in enumerate(positions):
        first_seen.setdefault(groups[position], index)
    return sorted(positions, key=lambda position: first_seen[groups[position]])


def plan_event_batches(
    positions: list[int], payloads: EventPayloads, max_events: int, max_bytes: int
) -> tuple[list[list[int]], list[int]]:
    """Split positions into batches within the event count and body size limits.

    Positions must already be ordered by profile (see `order_by_profile`). A profile whose
    events do not fit the current batch continues in the next one. Sizes are upper bounds
    until a batch comes near `max_bytes`. From then on its events are measured exactly, so
    a batch is closed only when the SDK's text would really exceed the limit.

    Returns:
        The batches, and the positions whose event alone exceeds `max_bytes`.
    """
    batches: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    size = EMPTY_BODY_BYTES
    group: str | None = None
    exact = False
    for position in positions:
        event_group = payloads.groups[position]
        if (
            EMPTY_BODY_BYTES + payloads.item_bytes[event_group] + payloads.event_bytes[position]
            > max_bytes
        ):
            alone = payloads.exact_item_bytes(event_group) + payloads.exact_event_bytes(position)
            if EMPTY_BODY_BYTES + alone > max_bytes:
                too_large.append(position)
                continue

        added = _added_bytes(payloads, position, event_group, group, bool(current), exact)
        if current and not exact and size + added > max_bytes * _NEAR_LIMIT:
            size = _exact_batch_bytes(payloads, current)
            exact = True
            added = _added_bytes(payloads, position, event_group, group, True, exact)
        if current and (len(current) >= max_events or size + added > max_bytes):
            batches.append(current)
            current, size, group, exact = [], EMPTY_BODY_BYTES, None, False
            added = _added_bytes(payloads, position, event_group, group, False, exact)

        current.append(position)
        size += added
        group = event_group
    if current:
        batches.append(current)
    return batches, too_large


# Past this share of the byte limit, a batch's sizes are measured exactly.
_NEAR_LIMIT = 0.8


def _added_bytes(
    payloads: EventPayloads,
    position: int,
    event_group: str,
    group: str | None,
    has_events: bool,
    exact: bool,
) -> int:
    """Return the bytes that appending one event adds to a batch."""
    if exact:
        event_size = payloads.exact_event_bytes(position)
        item_size = payloads.exact_item_bytes(event_group)
    else:
        event_size = payloads.event_bytes[position]
        item_size = payloads.item_bytes[event_group]
    if event_group == group:
        return _SEPARATOR_BYTES + event_size
    return (_SEPARATOR_BYTES if has_events else 0) + item_size + event_size


def _exact_batch_bytes(payloads: EventPayloads, positions: list[int]) -> int:
    """Return the exact size of a batch body, measuring each of its events."""
    size = EMPTY_BODY_BYTES
    group: str | None = None
    for index, position in enumerate(positions):
        event_group = payloads.groups[position]
        size += _added_bytes(payloads, position, event_group, group, index > 0, True)
        group = event_group
    return size


@dataclass(frozen=True)
class EventBody:
    """A built bulk event body and the record position of each item's events."""

    body: dict[str, Any]
    items: list[list[int]]

    @property
    def positions(self) -> list[int]:
        """All record positions in the body, in body order."""
        return [position for item in self.items for position in item]


def build_event_body(positions: list[int], payloads: EventPayloads) -> EventBody:
    """Build the body of one batch, grouping the events of each profile into one item."""
    by_group: dict[str, list[int]] = {}
    for position in positions:
        by_group.setdefault(payloads.groups[position], []).append(position)
    items = []
    for group, members in by_group.items():
        events = [payloads.events[position] for position in members]
        items.append(item_resource(payloads.profiles[group], events, payloads.backfill))
    return EventBody(bulk_body(items), list(by_group.values()))


def map_event_pointer(pointer: str | None, body: EventBody) -> PointerTarget | None:
    """Map an error pointer of a bulk event response to the record positions it names.

    ``.../events-bulk-create/data/{i}/attributes/events/data/{j}...`` names one event.
    ``.../data/{i}/attributes/profile...`` names the profile, so every event of item ``i``
    is invalid. A pointer to item ``i`` itself names one event only if the item has one.
    Otherwise the target is inexact, and the caller isolates the invalid event.

    Returns:
        The target, or None if the pointer names no item of this body.
    """
    parts = parse_pointer(pointer)
    if parts is None or tuple(parts[:4]) != _ITEMS_PREFIX or len(parts) < 5:
        return None
    item_index = _index(parts[4], len(body.items))
    if item_index is None:
        return None
    members = body.items[item_index]
    rest = parts[5:]
    if rest[:3] == ["attributes", "events", "data"] and len(rest) >= 4:
        event_index = _index(rest[3], len(members))
        if event_index is None:
            return None
        return PointerTarget([members[event_index]], exact=True)
    if rest[:2] == ["attributes", "profile"]:
        return PointerTarget(list(members), exact=True)
    return PointerTarget(list(members), exact=len(members) == 1)


def _index(part: str, length: int) -> int | None:
    if not part.isdigit():
        return None
    index = int(part)
    return index if index < length else None
