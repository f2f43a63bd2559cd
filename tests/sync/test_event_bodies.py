"""Tests of bulk event bodies: shape, grouping by profile, count and byte limits."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from openapi_client.models.events_bulk_create_job import EventsBulkCreateJob

from klaviyo_pipeline import settings
from klaviyo_pipeline.sync import event_bodies
from klaviyo_pipeline.sync.event_bodies import (
    EMPTY_BODY_BYTES,
    EventBody,
    EventPayloads,
    _body_from_lists,
    _may_have_edge_space,
    _planned_one_by_one,
    build_event_body,
    build_event_payloads,
    map_event_pointer,
    order_by_profile,
    parse_json_object,
    plan_event_batches,
    profile_resource,
)
from tests.sync.records import event_frame, event_row, events


def document(body: EventBody) -> dict:
    """Parse an encoded body; json.loads refuses NaN and Infinity here."""
    return json.loads(body.body, parse_constant=_reject_constant)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_body_shape_groups_by_profile():
    frame = event_frame(
        [
            event_row(1, email="a@example.com", unique_id="u1", value=19.5, value_currency="USD"),
            event_row(2, email="b@example.com", unique_id="u2"),
            event_row(3, email="a@example.com", unique_id="u3", profile_key="email:a@example.com"),
        ]
    )
    payloads = build_event_payloads(frame, backfill=True)
    positions = order_by_profile([0, 1, 2], payloads.groups)
    body = build_event_body(positions, payloads)

    assert body.items == [[0, 2], [1]]
    sent = document(body)
    items = sent["data"]["attributes"]["events-bulk-create"]["data"]
    assert sent["data"]["type"] == "event-bulk-create-job"
    assert items[0]["type"] == "event-bulk-create"
    assert items[0]["attributes"]["backfill"] is True
    assert items[0]["attributes"]["profile"]["data"] == {
        "type": "profile",
        "attributes": {"email": "a@example.com"},
    }
    first_event = items[0]["attributes"]["events"]["data"][0]["attributes"]
    assert first_event["unique_id"] == "u1"
    assert first_event["value"] == 19.5
    assert first_event["value_currency"] == "USD"
    assert first_event["backfill"] is True
    assert first_event["metric"] == {
        "data": {"type": "metric", "attributes": {"name": "Placed Order"}}
    }
    assert first_event["properties"] == {"OrderId": "1"}


def test_body_omits_absent_fields():
    frame = event_frame([event_row(1, email="a@example.com")])
    payloads = build_event_payloads(frame, backfill=False)
    encoded = build_event_body([0], payloads)
    body = document(encoded)

    assert b"null" not in encoded.body
    assert b"NaN" not in encoded.body
    event = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    assert "value" not in event["events"]["data"][0]["attributes"]
    assert "value_currency" not in event["events"]["data"][0]["attributes"]
    assert event["profile"]["data"]["attributes"] == {"email": "a@example.com"}


def test_profile_properties_go_into_profile():
    frame = event_frame([event_row(1, profile_properties={"tier": "gold"})])
    body = document(build_event_body([0], build_event_payloads(frame, backfill=False)))
    profile = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["profile"]

    assert profile["data"]["attributes"]["properties"] == {"tier": "gold"}


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T12:00:00.123+02:00", "2024-05-01T12:00:00.123000+02:00"),
        ("2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00+00:00"),
    ],
)
def test_time_in_sdk_form(given, sent):
    frame = event_frame([event_row(1, time=given)])
    body = document(build_event_body([0], build_event_payloads(frame, backfill=False)))
    event = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["events"]

    assert event["data"][0]["attributes"]["time"] == sent


def test_time_without_offset_is_payload_error():
    frame = event_frame([event_row(1, time="2024-05-01T12:00:00")])
    payloads = build_event_payloads(frame, backfill=False)

    assert [error.position for error in payloads.errors] == [0]
    assert payloads.errors[0].reason == "time_invalid"


@pytest.mark.parametrize(
    "given",
    [
        "2024-13-01T12:00:00Z",
        "2024-05-01T25:00:00Z",
        "2024-02-30T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "2024-05-01 noon",
    ],
)
def test_unparsable_time_is_payload_error(given):
    frame = event_frame([event_row(1, time=given)])
    payloads = build_event_payloads(frame, backfill=False)

    assert [error.reason for error in payloads.errors] == ["time_invalid"]


@pytest.mark.parametrize(
    "text", ["[1, 2]", "not json", '"{}"', '{"a": NaN}', '{"a":1},"value":99,"b":{}']
)
def test_non_object_properties_rejected(text):
    frame = event_frame([event_row(1), event_row(2)])
    frame.loc[0, "properties"] = text
    payloads = build_event_payloads(frame, backfill=False)

    assert [(error.position, error.reason) for error in payloads.errors] == [(0, "mapping_failed")]
    assert payloads.events[0] is None
    assert payloads.events[1] is not None


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        (' {"a": 1}\n', '{"a": 1}'),
        ('\u00a0{"a": 1}\u2003', '{"a": 1}'),
        ('{"big": 123456789012345678901234567890}', '{"big": 123456789012345678901234567890}'),
        ('{"a": "\\u0000"}', '{"a": "\\u0000"}'),
    ],
)
def test_object_properties_sent_as_checked(text, sent):
    frame = event_frame([event_row(1), event_row(2)])
    frame.loc[0, "properties"] = text
    payloads = build_event_payloads(frame, backfill=False)

    assert payloads.errors == []
    opening = b'{"type":"event","attributes":{"properties":'
    assert payloads.events[0].startswith(opening + sent.encode())
    assert json.loads(payloads.events[0])["attributes"]["properties"] == json.loads(sent)


def test_valid_properties_checked_by_simdjson(monkeypatch):
    def fail(_):
        raise AssertionError("orjson parsed properties that simdjson had accepted")

    monkeypatch.setattr(event_bodies.orjson, "loads", fail)
    frame = event_frame([event_row(i, unique_id=f"u{i}") for i in range(3)])
    payloads = build_event_payloads(frame, backfill=False)

    assert payloads.errors == []
    assert all(event is not None for event in payloads.events)


@pytest.mark.parametrize(
    ("texts", "edge_space"),
    [
        (["{}", '{"a":1}'], False),
        (["{}", ""], False),
        ([None, "{}"], False),
        ([" {}"], True),
        (["{}\t"], True),
        (["\u00a0{}"], True),
        (["{}", '{"a":"é"}é'], True),
        ([], False),
    ],
)
def test_may_have_edge_space(texts, edge_space):
    assert _may_have_edge_space(pa.array(texts, pa.string())) is edge_space
    sliced = pa.array(["  ", *texts, "  "], pa.string()).slice(1, len(texts))
    assert _may_have_edge_space(sliced) is edge_space


def test_bad_profile_properties_reject_group():
    rows = [
        event_row(i, email="a@example.com", profile_key="k", unique_id=f"u{i}") for i in range(2)
    ]
    rows.append(event_row(2, email="b@example.com"))
    frame = event_frame(rows)
    frame["profile_properties"] = frame["profile_properties"].astype(object)
    frame.loc[[0, 1], "profile_properties"] = '{"tier": NaN}'
    payloads = build_event_payloads(frame, backfill=False)

    assert [(error.position, error.reason) for error in payloads.errors] == [
        (0, "mapping_failed"),
        (1, "mapping_failed"),
    ]
    assert payloads.events[2] is not None


def test_strings_are_encoded_as_json():
    awkward = 'quote " backslash \\ newline \n tab \t nul \u0000 é ✓ 😀 \u2028'
    frame = event_frame(
        [
            event_row(
                1,
                email="a@example.com",
                metric=f"Metric {awkward}",
                unique_id=f"id {awkward}",
                value=0.1,
                value_currency=awkward,
                properties={"Name": awkward},
                profile_properties={"Note": awkward},
            )
        ]
    )
    body = document(build_event_body([0], build_event_payloads(frame, backfill=False)))
    item = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    event = item["events"]["data"][0]["attributes"]

    assert event["metric"]["data"]["attributes"]["name"] == f"Metric {awkward}"
    assert event["unique_id"] == f"id {awkward}"
    assert event["value"] == 0.1
    assert event["value_currency"] == awkward
    assert event["properties"] == {"Name": awkward}
    assert item["profile"]["data"]["attributes"]["properties"] == {"Note": awkward}


def test_planned_size_is_body_length():
    rows = []
    for i in range(40):
        rows.append(
            event_row(
                i,
                email=f"user{i % 7}@example.com",
                profile_key=f"email:user{i % 7}@example.com",
                properties={"Name": "Socke é ✓", "Items": [{"SKU": i, "Price": i * 1.5}]},
                value=float(i) + 0.25,
                value_currency="EUR",
                time="2024-05-01T12:00:00.5Z",
            )
        )
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    positions = order_by_profile(list(range(40)), payloads.groups)
    limit = len(build_event_body(positions, payloads).body)
    batches, too_large = plan_event_batches(positions, payloads, 1000, limit)
    body = build_event_body(batches[0], payloads)

    assert too_large == []
    assert len(batches) == 1
    EventsBulkCreateJob.model_validate(document(body))
    assert plan_event_batches(positions, payloads, 1000, limit - 1)[0] != batches


def test_count_limit_splits_batches():
    frame = events(2500)
    payloads = build_event_payloads(frame, backfill=False)
    positions = order_by_profile(list(range(2500)), payloads.groups)
    batches, _ = plan_event_batches(positions, payloads, 1000, settings.MAX_PAYLOAD_BYTES)

    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    assert sorted(p for batch in batches for p in batch) == list(range(2500))


def test_byte_limit_splits_batches():
    # 60 events of about 90 KB each: about 5.4 MB in total, so two requests.
    big = "x" * 90_000
    rows = [event_row(i, properties={"Html": big}) for i in range(60)]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    positions = order_by_profile(list(range(60)), payloads.groups)
    batches, too_large = plan_event_batches(positions, payloads, 1000, settings.MAX_PAYLOAD_BYTES)

    assert too_large == []
    assert len(batches) == 2
    for batch in batches:
        assert len(build_event_body(batch, payloads).body) <= settings.MAX_PAYLOAD_BYTES
    first = build_event_body(batches[0], payloads).body
    assert len(first) + 90_200 > settings.MAX_PAYLOAD_BYTES


def test_byte_limit_is_exact_at_boundary():
    rows = [event_row(i, properties={"Html": "y" * (1000 + i)}) for i in range(30)]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    positions = order_by_profile(list(range(30)), payloads.groups)
    whole = build_event_body(positions, payloads).body
    limit = len(whole) - 1
    batches, _ = plan_event_batches(positions, payloads, 1000, limit)

    assert len(batches) == 2
    for batch in batches:
        assert len(build_event_body(batch, payloads).body) <= limit
    batches_at_size, _ = plan_event_batches(positions, payloads, 1000, limit + 1)
    assert len(batches_at_size) == 1


def test_one_profile_split_across_batches():
    rows = [
        event_row(i, email="a@example.com", profile_key="k", unique_id=f"u{i}") for i in range(5)
    ]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    batches, _ = plan_event_batches(list(range(5)), payloads, 2, settings.MAX_PAYLOAD_BYTES)

    assert batches == [[0, 1], [2, 3], [4]]
    items = build_event_body(batches[0], payloads).items
    assert items == [[0, 1]]


def test_oversized_event_is_reported():
    rows = [event_row(0), event_row(1, properties={"Html": "z" * 200_000})]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    batches, too_large = plan_event_batches([0, 1], payloads, 1000, 100_000)

    assert too_large == [1]
    assert batches == [[0]]


def test_different_profile_properties_separate_items():
    rows = [
        event_row(1, email="a@example.com", profile_key="k", unique_id="1"),
        event_row(
            2,
            email="a@example.com",
            profile_key="k",
            unique_id="2",
            profile_properties={"tier": "gold"},
        ),
    ]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    body = build_event_body([0, 1], payloads)

    assert body.items == [[0], [1]]


POINTER_CASES = [
    # One event of the second item.
    (
        "/data/attributes/events-bulk-create/data/1/attributes/events/data/0/attributes/time",
        [3],
        True,
    ),
    # The second event of the first item.
    (
        "/data/attributes/events-bulk-create/data/0/attributes/events/data/1/attributes/unique_id",
        [1],
        True,
    ),
    # The profile of the first item: all its events are invalid.
    (
        "/data/attributes/events-bulk-create/data/0/attributes/profile/data/attributes/email",
        [0, 1, 2],
        True,
    ),
    # The second item has one event, so the item pointer names it.
    ("/data/attributes/events-bulk-create/data/1", [3], True),
    # The first item has three events: the item pointer is inexact.
    ("/data/attributes/events-bulk-create/data/0", [0, 1, 2], False),
    ("/data/attributes/events-bulk-create/data/0/attributes/events", [0, 1, 2], False),
]


@pytest.mark.parametrize(("pointer", "positions", "exact"), POINTER_CASES)
def test_event_pointer_mapping(pointer, positions, exact):
    rows = [
        event_row(i, email="a@example.com", profile_key="k", unique_id=f"u{i}") for i in range(3)
    ]
    rows.append(event_row(3, email="b@example.com"))
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    body = build_event_body([0, 1, 2, 3], payloads)
    target = map_event_pointer(pointer, body)

    assert target is not None
    assert target.positions == positions
    assert target.exact is exact


@pytest.mark.parametrize(
    "pointer",
    [
        None,
        "",
        "/data",
        "/data/attributes",
        "/data/attributes/events-bulk-create/data/9",
        "/data/attributes/events-bulk-create/data/1/attributes/events/data/5",
        "/data/attributes/events-bulk-create/data/x",
        "data/attributes/events-bulk-create/data/0",
    ],
)
def test_unmappable_event_pointers(pointer):
    rows = [event_row(0), event_row(1)]
    payloads = build_event_payloads(event_frame(rows), backfill=False)
    body = build_event_body([0, 1], payloads)

    assert map_event_pointer(pointer, body) is None


def test_non_text_cells_use_str():
    frame = event_frame([event_row(1, unique_id="x")])
    frame["unique_id"] = pd.Series([1.0], dtype=object)
    frame["metric"] = pd.Series([True], dtype=object)
    body = document(build_event_body([0], build_event_payloads(frame, backfill=False)))
    event = body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]
    attributes = event["events"]["data"][0]["attributes"]

    assert attributes["unique_id"] == "1.0"
    assert attributes["metric"]["data"]["attributes"]["name"] == "True"


def test_negative_zero_value_is_kept():
    frame = event_frame([event_row(1, value=0.0), event_row(2, value=-0.0)])
    payloads = build_event_payloads(frame, backfill=False)

    assert b'"value":0.0' in payloads.events[0]
    assert b'"value":-0.0' in payloads.events[1]


def test_profile_openings_match_per_record():
    awkward = 'quote " backslash \\ newline \n nul \u0000 é 😀'
    rows = [
        event_row(1, email="a@example.com"),
        event_row(2, email="", phone_number="+15555550123", external_id=awkward),
        event_row(3, email=awkward, external_id="7"),
        event_row(4, email="d@example.com", profile_properties={"tier": "gold"}),
        event_row(5, phone_number="+15555550124", external_id=""),
    ]
    frame = event_frame(rows)
    for backfill, flag in ((True, b"true"), (False, b"false")):
        payloads = build_event_payloads(frame, backfill=backfill)
        for position, row in enumerate(rows):
            properties = parse_json_object(row["profile_properties"])
            profile = profile_resource(row, properties)
            expected = (
                b'{"type":"event-bulk-create","attributes":{"backfill":'
                + flag
                + b',"profile":{"data":'
                + json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode()
                + b'},"events":{"data":['
            )
            assert payloads.items[payloads.groups[position]] == expected


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 60)), max_size=40),
    max_events=st.integers(1, 8),
    max_bytes=st.integers(EMPTY_BODY_BYTES, EMPTY_BODY_BYTES + 400),
)
def test_batch_plan_matches_one_by_one(events, max_events, max_bytes):
    payloads = EventPayloads(backfill=False)
    payloads.groups = [f"profile {group}" for group, _ in events]
    payloads.event_bytes = [size for _, size in events]
    payloads.item_bytes = {f"profile {group}": 20 + 7 * group for group in range(5)}
    positions = order_by_profile(list(range(len(events))), payloads.groups)

    planned = plan_event_batches(positions, payloads, max_events, max_bytes)
    assert planned == _planned_one_by_one(positions, payloads, max_events, max_bytes)


def test_body_merges_apart_profile_events():
    frame = event_frame(
        [
            event_row(1, email="a@example.com", profile_key="email:a@example.com"),
            event_row(2, email="b@example.com"),
            event_row(3, email="a@example.com", profile_key="email:a@example.com"),
        ]
    )
    payloads = build_event_payloads(frame, backfill=False)
    body = build_event_body([0, 1, 2], payloads)
    items = document(body)["data"]["attributes"]["events-bulk-create"]["data"]

    assert body.items == [[0, 2], [1]]
    assert len(items) == 2
    assert len(items[0]["attributes"]["events"]["data"]) == 2


@pytest.mark.parametrize(
    "positions", [[0, 1, 2, 3, 4], [0, 2, 1, 3], [4, 0, 3, 2, 1], [2], [1, 3], [3, 4, 0]]
)
def test_body_from_arrow_matches_lists(positions):
    rows = [
        event_row(1, email="a@example.com", profile_key="email:a@example.com"),
        event_row(2, email="b@example.com", properties={"quote": 'say "hi" \\ é'}),
        event_row(3, email="a@example.com", profile_key="email:a@example.com"),
        event_row(4, phone_number="+15555550123", profile_properties={"tier": "gold"}),
        event_row(5, email="b@example.com", value=2.5, value_currency="EUR"),
    ]
    payloads = build_event_payloads(event_frame(rows), backfill=True)
    body = build_event_body(positions, payloads)

    assert body == _body_from_lists(positions, payloads)
    assert sorted(body.positions) == sorted(positions)
    assert document(body)["data"]["type"] == "event-bulk-create-job"


def test_events_list_matches_encoded():
    frame = event_frame([event_row(1), event_row(2), event_row(3)])
    frame.loc[1, "properties"] = "[1, 2]"
    payloads = build_event_payloads(frame, backfill=False)

    assert payloads.events == payloads.encoded.to_pylist()
    assert payloads.events[1] is None
    assert [len(event) for event in payloads.events if event] == [
        size for size in payloads.event_bytes if size
    ]
    payloads.events = [b"{}", None, b"{}"]
    assert payloads.encoded.to_pylist() == [b"{}", None, b"{}"]
    assert payloads.events == [b"{}", None, b"{}"]
