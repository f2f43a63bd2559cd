"""Bulk event request bodies: encoded payloads per record, batches by count and size.

One ``event-bulk-create`` item contains one profile and its events, so records are grouped by
profile. Every event and profile is encoded once, as compact UTF-8 JSON, and a body is the
concatenation of its parts. The client sends those bytes as they are, so the size of a body
is the length of its bytes, and the planner counts exactly what Klaviyo receives.

Times go out as ``datetime.isoformat()`` writes them, with a ``+00:00`` offset rather than
``Z``, the form that the SDK's models send.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import simdjson

from klaviyo_pipeline import arrow_json, settings
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
IDENTIFIERS = ("email", "phone_number", "external_id")
_ITEMS_PREFIX = ("data", "attributes", "events-bulk-create", "data")

BODY_OPEN = b'{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":['
BODY_CLOSE = b"]}}}}"
EMPTY_BODY_BYTES = len(BODY_OPEN) + len(BODY_CLOSE)
_ITEM_CLOSE = b"]}}}"
# Records times are written "YYYY-MM-DDTHH:MM:SSZ"; isoformat() writes them with "+00:00".
_RECORD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class PayloadError:
    """A record whose payload cannot be built: its status, reason and a description."""

    position: int
    reason: str
    detail: str
    status: str = Status.REJECTED.value


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
    """Encoded events of all records of a partition and their profile groups.

    Attributes:
        backfill: Value of ``backfill`` on every item and event.
        encoded: Encoded event resource per record position as an Arrow binary array, null
            for a payload error. `events` lists the same values as Python bytes.
        event_bytes: Length of each encoded event.
        groups: Profile group key per record position; "" for a payload error.
        items: Opening bytes of each group's item, up to its list of events.
        item_bytes: Size of an item of each group with an empty list of events.
        errors: Records whose payload could not be built.
        group_codes: Number of each position's group, counted in order of first appearance,
            and -1 for a payload error. Filled by `codes` when it does not match `groups`.
        group_names: Group of each number.
    """

    backfill: bool
    encoded: pa.Array = field(default_factory=lambda: pa.array([], pa.binary()))
    event_bytes: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    items: dict[str, bytes] = field(default_factory=dict)
    item_bytes: dict[str, int] = field(default_factory=dict)
    errors: list[PayloadError] = field(default_factory=list)
    group_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    group_names: list[str] = field(default_factory=list)
    _events: list[bytes | None] | None = field(default=None, init=False, repr=False)

    @property
    def events(self) -> list[bytes | None]:
        """Encoded event resource per record position; None for a payload error.

        The list is converted from `encoded` on first use. `build_event_body` reads
        `encoded`, so the bytes object of each event is made only when a caller reads this list.
        Assigning a new list replaces `encoded`; a change made to the returned list in place
        is not seen by `build_event_body`.
        """
        if self._events is None:
            self._events = self.encoded.to_pylist()
        return self._events

    @events.setter
    def events(self, values: list[bytes | None]) -> None:
        self.encoded = pa.array(values, pa.binary())
        self._events = None

    def codes(self) -> tuple[np.ndarray, list[str]]:
        """Return the group number of each position and the group of each number."""
        if len(self.group_codes) != len(self.groups):
            codes, uniques = pd.factorize(pd.Series(self.groups, dtype=object))
            self.group_codes = codes.astype(np.int64)
            self.group_names = uniques.tolist()
        return self.group_codes, self.group_names


def normalize_time(text: str) -> str:
    """Return an ISO 8601 time in the form that ``datetime.isoformat()`` writes.

    Raises:
        ValueError: The time does not parse or has no UTC offset.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.isoformat()


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


def _item_open(profile: dict[str, Any], backfill: bytes) -> bytes:
    return (
        b'{"type":"event-bulk-create","attributes":{"backfill":%b,"profile":{"data":%b},'
        b'"events":{"data":[' % (backfill, orjson.dumps(profile))
    )


def _blank(texts: pa.Array) -> np.ndarray:
    return arrow_json.mask(pc.or_kleene(pc.is_null(texts), pc.equal(texts, "")))


def _suspect_positions(records: pd.DataFrame, texts: dict[str, pa.Array]) -> list[int]:
    """Return the positions that `check_event_record` could refuse, found column-wise."""
    no_identifier = np.logical_and.reduce([_blank(texts[name]) for name in IDENTIFIERS])
    long_unique_id = arrow_json.mask(
        pc.greater(pc.utf8_length(texts["unique_id"]), settings.MAX_UNIQUE_ID_LENGTH)
    )
    values = pd.to_numeric(records["value"], errors="coerce").to_numpy(dtype=float)
    bad_value = records["value"].notna().to_numpy() & ~np.isfinite(values)
    suspect = (
        no_identifier
        | _blank(texts["unique_id"])
        | long_unique_id
        | _blank(texts["metric"])
        | records["time"].isna().to_numpy()
        | bad_value
    )
    return np.flatnonzero(suspect).tolist()


def _object_texts(column: pd.Series, problems: dict[int, tuple[str, str, str]]) -> pa.Array:
    """Return each cell's JSON object text; a missing cell gives ``{}``.

    The texts are copied into the body as they are, so they are checked first: a text that
    is not one JSON object could end the event's properties early and add other members.
    Texts are parsed as JSON arrays of a few thousand, which is faster than one by one. An
    array that parses into as many objects as it joined texts has no text that adds
    members, because a member (``"key": value``) is not valid inside an array. Other
    damage, such as a string left open, leaves a body that Klaviyo rejects with 400, and
    the sync isolates that record. Only when a group fails are its texts parsed one by
    one, to find the ones to reject.
    """
    texts = arrow_json.strings(column)
    if _may_have_edge_space(texts):
        texts = pc.utf8_trim_whitespace(texts)
    present = texts.drop_null()
    starts = list(range(0, len(present), _CHECK_GROUP))
    groups = pa.ListArray.from_arrays(pa.array([*starts, len(present)], pa.int32()), present)
    arrays = pc.binary_join_element_wise("[", pc.binary_join(groups, ","), "]", "")
    # A parser keeps the last document in its own buffers, so each call makes its own.
    parser = simdjson.Parser()
    if all(
        _objects(parser, text, min(_CHECK_GROUP, len(present) - start))
        for text, start in zip(arrow_json.views(arrays), starts, strict=True)
    ):
        return texts.fill_null("{}")
    for position, text in enumerate(texts.to_pylist()):
        if text is None:
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            detail = f"invalid properties JSON: {error}"
        else:
            if isinstance(value, dict):
                continue
            detail = f"invalid properties JSON: expected a JSON object, got {text[:40]!r}"
        problems.setdefault(position, (Status.REJECTED, Reason.MAPPING_FAILED, detail))
    return texts.fill_null("{}")


_CHECK_GROUP = 5_000


def _may_have_edge_space(texts: pa.Array) -> bool:
    """Return False if no string starts or ends with a byte of whitespace, checked in NumPy.

    A byte of 0x80 or above may belong to a Unicode space, so it counts as whitespace here.
    """
    data = texts.buffers()[2]
    if data is None:
        return False
    bounds = arrow_json.value_bounds(texts)
    starts, ends = bounds[:-1], bounds[1:]
    filled = starts < ends
    raw = np.frombuffer(data, np.uint8)
    edges = np.concatenate([raw[starts[filled]], raw[ends[filled] - 1]])
    return bool(((edges <= 0x20) | (edges >= 0x80)).any())


def _objects(parser: simdjson.Parser, array: memoryview, count: int) -> bool:
    """Return whether a JSON array of `count` texts joined with commas is that many JSON
    objects.

    simdjson validates the whole array without building Python objects. Like orjson, it
    rejects NaN, Infinity, trailing commas, invalid UTF-8 and lone surrogate escapes
    (checked with pysimdjson 7.0.2). It also rejects integers beyond 64 bits, which orjson
    accepts, so an array that simdjson rejects is parsed again with orjson.
    """
    try:
        document = parser.parse(array)
    except (ValueError, RuntimeError):
        document = None
    if document is not None:
        valid = len(document) == count and all(
            isinstance(value, simdjson.Object) for value in document
        )
        # The parser can parse the next array only once this document is released.
        del document
        if valid:
            return True
    try:
        # orjson rejects NaN and Infinity, which are not JSON.
        parsed = orjson.loads(array)
    except orjson.JSONDecodeError:
        return False
    return len(parsed) == count and {dict}.issuperset(map(type, parsed))


def _event_times(column: pd.Series, problems: dict[int, tuple[str, str, str]]) -> pa.Array:
    """Return each event's time in isoformat() form, converted column-wise for records times."""
    texts = arrow_json.strings(column)
    # strptime rolls 2024-02-30 over into March, so a time is taken as it is only if it
    # formats back to the same text. Arrow casts a timestamp to "2019-10-01 00:00:00".
    # The cast writes ASCII and a canonical text is ASCII, so their bytes are their
    # characters. The binary kernels skip the UTF-8 handling of the utf8 ones.
    parsed = pc.strptime(texts, format=_RECORD_TIME_FORMAT, unit="s", error_is_null=True)
    formatted = pc.binary_join_element_wise(
        pc.binary_replace_slice(pc.cast(parsed, pa.string()), 10, 11, "T"), "Z", ""
    )
    canonical = arrow_json.mask(pc.equal(formatted, texts))
    raw = pc.cast(texts, pa.binary())
    # A canonical text ends in its 20th character, "Z".
    converted = pc.binary_replace_slice(raw, 19, 20, "+00:00")
    chosen = pc.if_else(pa.array(canonical), converted, raw)
    times = pc.cast(chosen, pa.string()).fill_null("")
    others = np.flatnonzero(~canonical).tolist()
    fixed: dict[int, str] = {}
    for position in others:
        if position in problems:
            continue
        try:
            fixed[position] = normalize_time(str(column.iat[position]))
        except ValueError as error:
            problems[position] = (Status.REJECTED, Reason.TIME_INVALID, str(error))
    return arrow_json.replace(times, fixed)


def _value_texts(column: pd.Series, prefix: str) -> pa.Array:
    """Return `prefix` and the JSON number of each finite value, others as null.

    Each distinct value is encoded once.
    """
    values = pd.to_numeric(column, errors="coerce").astype(float)
    texts, _ = arrow_json.encoded_per_value(values, _finite_text, prefix)
    return texts


def _finite_text(value: float) -> str | None:
    return orjson.dumps(value).decode() if math.isfinite(value) else None


_TEXT_COLUMNS = (*IDENTIFIERS, "unique_id", "metric", "profile_key", "profile_properties")


def build_event_payloads(records: pd.DataFrame, backfill: bool) -> EventPayloads:
    """Encode the event of every record and the item opening of every profile group.

    Arrow assembles the events column-wise. Only the records that need a check, a string
    escape or a time conversion are handled one by one.
    """
    payloads = EventPayloads(backfill=backfill)
    texts = {name: arrow_json.strings(records[name]) for name in _TEXT_COLUMNS}
    problems: dict[int, tuple[str, str, str]] = {}
    columns = list(EVENT_COLUMNS)
    for position in _suspect_positions(records, texts):
        record = {name: records[name].iat[position] for name in columns}
        problem = check_event_record(record)
        if problem is not None:
            problems[position] = problem
    properties = _object_texts(records["properties"], problems)
    groups, codes, names = _group_keys(texts)
    items, item_problems = _items(records, texts, groups, codes, problems, backfill)
    for position, problem in item_problems.items():
        problems.setdefault(position, problem)
    times = _event_times(records["time"], problems)

    flag = "true" if backfill else "false"
    currencies = arrow_json.strings(records["value_currency"])
    # Null parts are written as "", which leaves out the value and currency members.
    parts = [
        pa.scalar('{"type":"event","attributes":{"properties":'),
        properties,
        pa.scalar(',"time":"'),
        times,
        pa.scalar('","unique_id":"'),
        arrow_json.escaped(texts["unique_id"]),
        pa.scalar(
            f'","backfill":{flag},"metric":{{"data":{{"type":"metric","attributes":{{"name":"'
        ),
        arrow_json.escaped(texts["metric"]),
        pa.scalar('"}}}'),
        _value_texts(records["value"], ',"value":'),
        arrow_json.json_strings(currencies, ',"value_currency":'),
        pa.scalar("}}"),
    ]
    joined = pc.binary_join_element_wise(
        *parts, pa.scalar(""), null_handling="replace", null_replacement=""
    )
    sizes: list[int] = pc.binary_length(joined).to_pylist()
    for position in sorted(problems):
        status, reason, detail = problems[position]
        payloads.errors.append(PayloadError(position, str(reason), detail, str(status)))
        sizes[position] = 0
        groups[position] = ""
        codes[position] = -1
    payloads.encoded = _without(pc.cast(joined, pa.binary()), problems)
    payloads.event_bytes = sizes
    payloads.groups = groups
    payloads.group_codes = codes
    payloads.group_names = names
    payloads.items = items
    payloads.item_bytes = {
        group: len(opening) + len(_ITEM_CLOSE) for group, opening in items.items()
    }
    return payloads


def _without(encoded: pa.Array, problems: dict[int, tuple[str, str, str]]) -> pa.Array:
    """Return `encoded` with null at the positions of payload errors."""
    if not problems:
        return encoded
    sendable = np.ones(len(encoded), dtype=bool)
    sendable[list(problems)] = False
    return pc.if_else(pa.array(sendable), encoded, pa.scalar(None, pa.binary()))


def _items(
    records: pd.DataFrame,
    texts: dict[str, pa.Array],
    groups: list[str],
    codes: np.ndarray,
    problems: dict[int, tuple[str, str, str]],
    backfill: bool,
) -> tuple[dict[str, bytes], dict[int, tuple[str, str, str]]]:
    """Encode the item opening of each profile group from its first sendable record.

    `codes` numbers each record's group, equal numbers for equal groups.

    Openings of groups without profile properties are assembled column-wise. The others
    parse their properties, one group at a time.

    Returns:
        The openings by group, and the records whose profile properties are invalid.
    """
    flag = b"true" if backfill else b"false"
    sendable = np.ones(len(groups), dtype=bool)
    sendable[list(problems)] = False
    candidates = np.flatnonzero(sendable)
    _, first_index = np.unique(codes[candidates], return_index=True)
    first = np.sort(candidates[first_index])
    with_properties = arrow_json.mask(pc.is_valid(texts["profile_properties"].take(first)))
    plain = first[~with_properties]
    first_groups = [groups[position] for position in plain.tolist()]
    items = dict(zip(first_groups, _plain_openings(texts, plain, flag), strict=True))

    columns = (*IDENTIFIERS, "profile_properties")
    others = first[with_properties]
    values = zip(
        *(records[name].iloc[others].astype(object).tolist() for name in columns), strict=True
    )
    invalid: dict[int, str] = {}
    for position, row in zip(others.tolist(), values, strict=True):
        record = dict(zip(columns, row, strict=True))
        try:
            profile_properties = parse_json_object(record["profile_properties"])
        except ValueError as error:
            invalid[int(codes[position])] = f"invalid properties JSON: {error}"
            continue
        items[groups[position]] = _item_open(profile_resource(record, profile_properties), flag)
    item_problems: dict[int, tuple[str, str, str]] = {}
    if invalid:
        hit = sendable & np.isin(codes, list(invalid))
        for position in np.flatnonzero(hit).tolist():
            detail = invalid[int(codes[position])]
            item_problems[position] = (Status.REJECTED, Reason.MAPPING_FAILED, detail)
    return items, item_problems


def _plain_openings(texts: dict[str, pa.Array], positions: np.ndarray, flag: bytes) -> list[bytes]:
    """Return `_item_open` of each position's profile of identifiers only, column-wise."""
    members = []
    for name in IDENTIFIERS:
        values = texts[name].take(positions)
        # profile_resource leaves out empty identifiers as well as missing ones.
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        members.append(
            pc.binary_join_element_wise(
                pa.scalar(f',"{name}":'), arrow_json.json_strings(values), pa.scalar("")
            )
        )
    # The opening of a profile without attributes, split at its empty attributes object.
    opening = _item_open({"type": "profile", "attributes": {}}, flag)
    head, tail = opening.decode().split("{}", 1)
    joined = pc.binary_join_element_wise(
        pa.scalar(head + "{"),
        *members,
        pa.scalar("}" + tail),
        pa.scalar(""),
        null_handling="replace",
        null_replacement="",
    )
    # Each member starts with a comma, so the comma after the opening brace is removed.
    fixed = pc.replace_substring(joined, head + "{,", head + "{", max_replacements=1)
    return pc.cast(fixed, pa.binary()).to_pylist()


def _group_keys(texts: dict[str, pa.Array]) -> tuple[list[str], np.ndarray, list[str]]:
    """Return each record's profile group. Events share an item only if their profile does.

    Returns:
        The group of each record, its number in order of first appearance, and the group
        of each number.
    """
    columns = ["profile_key", "email", "phone_number", "external_id", "profile_properties"]
    parts = [texts[name].fill_null("") for name in columns]
    groups = pc.binary_join_element_wise(*parts, pa.scalar("\x1f"))
    # Arrow numbers the distinct values in the order in which they first appear.
    encoded = pc.dictionary_encode(groups)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = encoded.dictionary.to_pylist()
    return list(map(names.__getitem__, codes.tolist())), codes, names


def order_by_profile(positions: list[int], groups: list[str] | np.ndarray) -> list[int]:
    """Order positions so that each profile's events follow each other, in first-seen order.

    `groups` is the group of each record, or its number as `EventPayloads.codes` gives it.
    """
    if not positions:
        return []
    if isinstance(groups, np.ndarray):
        chosen: Any = groups[np.asarray(positions, dtype=np.int64)]
    else:
        chosen = pd.Series([groups[position] for position in positions], dtype=object)
    # factorize numbers the groups in order of first appearance, and the sort is stable.
    codes, _ = pd.factorize(chosen)
    order = np.argsort(codes, kind="stable")
    return np.asarray(positions, dtype=np.int64)[order].tolist()


def plan_event_batches(
    positions: list[int], payloads: EventPayloads, max_events: int, max_bytes: int
) -> tuple[list[list[int]], list[int]]:
    """Split positions into batches within the event count and body size limits.

    Positions must already be ordered by profile (see `order_by_profile`). A profile whose
    events do not fit the current batch continues in the next one.

    Returns:
        The batches, and the positions whose event alone exceeds `max_bytes`.
    """
    chunks = _chunks_within_limits(positions, payloads, max_events, max_bytes)
    if chunks is not None:
        return chunks, []
    return _planned_one_by_one(positions, payloads, max_events, max_bytes)


def _planned_one_by_one(
    positions: list[int], payloads: EventPayloads, max_events: int, max_bytes: int
) -> tuple[list[list[int]], list[int]]:
    """Plan the batches of `plan_event_batches` position by position."""
    batches: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    size = EMPTY_BODY_BYTES
    group: str | None = None
    for position in positions:
        event_group = payloads.groups[position]
        event_size = payloads.event_bytes[position]
        item_size = payloads.item_bytes[event_group]
        if EMPTY_BODY_BYTES + item_size + event_size > max_bytes:
            too_large.append(position)
            continue
        if event_group == group:
            added = 1 + event_size
        else:
            added = (1 if current else 0) + item_size + event_size
        if current and (len(current) >= max_events or size + added > max_bytes):
            batches.append(current)
            current, size = [], EMPTY_BODY_BYTES
            added = item_size + event_size
        current.append(position)
        size += added
        group = event_group
    if current:
        batches.append(current)
    return batches, too_large


def _chunks_within_limits(
    positions: list[int], payloads: EventPayloads, max_events: int, max_bytes: int
) -> list[list[int]] | None:
    """Return runs of `max_events` positions if each run's body is within `max_bytes`.

    These are the batches that `plan_event_batches` makes when no limit but the event
    count splits them, the usual case. Returns None when a body would be too large.
    """
    count = len(positions)
    if count == 0:
        return None
    all_codes, names = payloads.codes()
    chosen = np.asarray(positions, dtype=np.int64)
    codes = all_codes[chosen]
    if (codes < 0).any():
        return None
    # Groups whose records all have payload errors have no item.
    item_bytes = payloads.item_bytes
    sizes_by_code = np.array([item_bytes.get(name, 0) for name in names], dtype=np.int64)
    item_sizes = sizes_by_code[codes]
    event_sizes = np.fromiter(map(payloads.event_bytes.__getitem__, positions), np.int64, count)
    if (EMPTY_BODY_BYTES + item_sizes + event_sizes > max_bytes).any():
        return None
    # An item opens at each change of profile and at the start of each run.
    opens = np.ones(count, dtype=bool)
    opens[1:] = codes[1:] != codes[:-1]
    opens[::max_events] = True
    starts = np.arange(0, count, max_events)
    lengths = np.diff(np.append(starts, count))
    # Items, and the events within an item, are separated by one comma each, so a body of
    # n events has n - 1 commas.
    sizes = np.add.reduceat(event_sizes + np.where(opens, item_sizes, 0), starts)
    if (EMPTY_BODY_BYTES + sizes + lengths - 1 > max_bytes).any():
        return None
    return [positions[start : start + max_events] for start in starts.tolist()]


@dataclass(frozen=True)
class EventBody:
    """An encoded bulk event body and the record position of each item's events."""

    body: bytes
    items: list[list[int]]

    @property
    def positions(self) -> list[int]:
        """All record positions in the body, in body order."""
        return [position for item in self.items for position in item]


def build_event_body(positions: list[int], payloads: EventPayloads) -> EventBody:
    """Build the body of one batch, grouping the events of each profile into one item."""
    if not positions:
        return EventBody(BODY_OPEN + BODY_CLOSE, [])
    all_codes, names = payloads.codes()
    chosen = np.asarray(positions, dtype=np.int64)
    codes = all_codes[chosen]
    if (codes < 0).any() or len(payloads.encoded) != len(all_codes):
        return _body_from_lists(positions, payloads)
    starts = _run_starts(codes)
    if len(set(codes[starts].tolist())) != len(starts):
        # Some positions of one profile are not next to each other, so they are merged into
        # the profile's first item.
        positions = order_by_profile(positions, all_codes)
        chosen = np.asarray(positions, dtype=np.int64)
        codes = all_codes[chosen]
        starts = _run_starts(codes)
    ends = np.append(starts[1:], len(positions))

    # Each item is its opening, its events joined with commas, and _ITEM_CLOSE and a comma.
    # The items are joined in Arrow memory, and only the finished body is copied into bytes.
    events = payloads.encoded.take(pa.array(chosen))
    runs = pa.ListArray.from_arrays(pa.array(np.append(starts, len(positions)), pa.int32()), events)
    openings = [payloads.items[names[code]] for code in codes[starts].tolist()]
    joined = pc.binary_join_element_wise(
        pa.array(openings, pa.binary()),
        pc.binary_join(runs, pa.scalar(b",", pa.binary())),
        pa.scalar(_ITEM_CLOSE + b",", pa.binary()),
        pa.scalar(b"", pa.binary()),
    )
    data = joined.buffers()[2]
    bounds = arrow_json.value_bounds(joined)
    first, last = bounds[0], bounds[-1]
    # The items are contiguous in the data buffer. The comma after the last one is left out.
    body = b"".join((BODY_OPEN, memoryview(data)[first : last - 1], BODY_CLOSE))
    items = [
        positions[start:end] for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    return EventBody(body, items)


def _run_starts(codes: np.ndarray) -> np.ndarray:
    """Return the index of the first position of each run of equal group numbers."""
    return np.flatnonzero(np.append(True, codes[1:] != codes[:-1]))


def _body_from_lists(positions: list[int], payloads: EventPayloads) -> EventBody:
    """Build the body of `build_event_body` from `EventPayloads.events` and `groups`."""
    runs = _runs(positions, payloads)
    if len(runs) != len({group for group, _ in runs}):
        by_group: dict[str, list[int]] = {}
        for group, members in runs:
            by_group.setdefault(group, []).extend(members)
        runs = list(by_group.items())
    if not runs:
        return EventBody(BODY_OPEN + BODY_CLOSE, [])
    events = payloads.events
    parts = [BODY_OPEN]
    for group, members in runs:
        parts += (
            payloads.items[group],
            b",".join(map(events.__getitem__, members)),  # type: ignore[arg-type]
            _ITEM_CLOSE + b",",
        )
    parts[-1] = _ITEM_CLOSE + BODY_CLOSE
    return EventBody(b"".join(parts), [members for _, members in runs])


def _runs(positions: list[int], payloads: EventPayloads) -> list[tuple[str, list[int]]]:
    """Split positions into runs of one group each: (group, positions) in order."""
    all_codes, names = payloads.codes()
    codes = all_codes[np.asarray(positions, dtype=np.int64)]
    if len(codes) == 0 or (codes < 0).any():
        return [
            (group, list(members))
            for group, members in itertools.groupby(positions, key=payloads.groups.__getitem__)
        ]
    starts = _run_starts(codes).tolist()
    ends = [*starts[1:], len(positions)]
    return [
        (names[code], positions[start:end])
        for code, start, end in zip(codes[starts].tolist(), starts, ends, strict=True)
    ]


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
