"""Events through the real SDK: acceptance, stored records, validation errors, de-duplication."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import BadRequestException

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import (
    BULK_EVENTS_POINTER,
    EVENT_TIME,
    bulk_body,
    create_event_body,
    event_attributes,
    first_error,
    numbered_bulk_body,
    raw_request,
)

FIRST_EVENT = f"{BULK_EVENTS_POINTER}/0/attributes/events/data/0/attributes"


def send_bulk_expecting_400(client: KlaviyoAPI, body: dict[str, Any]) -> dict[str, Any]:
    """Send a bulk body that must be rejected and return its first error object."""
    with pytest.raises(BadRequestException) as raised:
        client.Events.bulk_create_events(body)
    assert raised.value.status == 400
    return first_error(raised.value)


def test_create_event_returns_none_and_stores(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    body = create_event_body(
        profile={"email": "ann@example.com", "external_id": "cust-1"},
        value=19.98,
        value_currency="USD",
        properties={"OrderId": "1001", "Items": [{"SKU": "S1", "Quantity": 2}]},
    )

    assert client.Events.create_event(body) is None

    events = server.events()
    assert len(events) == 1
    event = events[0]
    assert event["metric"] == "Placed Order"
    assert event["profile"] == {
        "email": "ann@example.com",
        "phone_number": None,
        "external_id": "cust-1",
    }
    assert event["properties"] == {"OrderId": "1001", "Items": [{"SKU": "S1", "Quantity": 2}]}
    assert event["time"] == EVENT_TIME
    assert event["value"] == 19.98
    assert event["value_currency"] == "USD"
    assert event["unique_id"] == "order-1"
    assert event["backfill"] is False


def test_create_event_status_is_202_without_body(client: KlaviyoAPI) -> None:
    response = client.Events.create_event_with_http_info(create_event_body())

    assert response.status_code == 202
    assert response.raw_data == b""
    assert response.headers["Content-Length"] == "0"


def test_bulk_events_stored_per_profile(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    body = bulk_body(
        [
            (
                {"email": "ann@example.com"},
                [event_attributes(unique_id="a1"), event_attributes(unique_id="a2")],
            ),
            ({"phone_number": "+14155552671"}, [event_attributes(unique_id="b1")]),
        ]
    )

    assert client.Events.bulk_create_events(body) is None

    events = server.events()
    assert [event["unique_id"] for event in events] == ["a1", "a2", "b1"]
    assert events[0]["profile_id"] == events[1]["profile_id"]
    assert events[2]["profile"]["phone_number"] == "+14155552671"
    assert server.requests()[-1]["events"] == 3


def test_bulk_events_create_and_update_profiles(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    first = bulk_body([({"email": "ann@example.com", "first_name": "Ann"}, [event_attributes()])])
    second = bulk_body(
        [
            (
                {"email": "ANN@example.com", "last_name": "Lee", "properties": {"tier": "gold"}},
                [event_attributes(unique_id="order-2")],
            )
        ]
    )

    client.Events.bulk_create_events(first)
    client.Events.bulk_create_events(second)

    profiles = server.profiles()
    assert len(profiles) == 1
    profile = profiles[0]
    assert profile["first_name"] == "Ann"
    assert profile["last_name"] == "Lee"
    assert profile["properties"] == {"tier": "gold"}
    assert profile["last_event_date"] == EVENT_TIME


def test_same_bulk_request_twice_stores_once(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    body = numbered_bulk_body(50)

    client.Events.bulk_create_events(body)
    client.Events.bulk_create_events(body)

    assert len(server.events()) == 50
    second_request = server.requests()[-1]
    assert second_request["status"] == 202
    assert second_request["stored"] == 0
    assert second_request["duplicates"] == 50


def test_duplicate_unique_id_first_wins(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body(properties={"version": 1}))
    client.Events.create_event(create_event_body(properties={"version": 2}))

    events = server.events()
    assert len(events) == 1
    assert events[0]["properties"] == {"version": 1}


def test_same_unique_id_other_metric_kept(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body(metric="Placed Order"))
    client.Events.create_event(create_event_body(metric="Ordered Product"))
    client.Events.create_event(create_event_body(profile={"email": "bob@example.com"}))

    assert len(server.events()) == 3


def test_without_unique_id_dedupes_by_second(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    times = [
        "2025-05-01T12:30:15.100+00:00",
        "2025-05-01T12:30:15.900+00:00",
        "2025-05-01T12:30:16+00:00",
    ]
    for time in times:
        client.Events.create_event(create_event_body(unique_id=None, time=time))

    events = server.events()
    assert [event["time"] for event in events] == [
        "2025-05-01T12:30:15+00:00",
        "2025-05-01T12:30:16+00:00",
    ]


def test_repeated_key_in_bulk_rejects_request(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    body = bulk_body(
        [
            ({"email": "ann@example.com"}, [event_attributes(unique_id="u1")]),
            ({"email": "bob@example.com"}, [event_attributes(unique_id="u1")]),
            ({"email": "ann@example.com"}, [event_attributes(unique_id="u1")]),
        ]
    )

    error = send_bulk_expecting_400(client, body)

    assert error["code"] == "invalid"
    assert error["source"]["pointer"] == (
        f"{BULK_EVENTS_POINTER}/2/attributes/events/data/0/attributes/unique_id"
    )
    assert server.events() == []
    assert server.profiles() == []


def test_repeated_time_in_bulk_rejects_request(client: KlaviyoAPI) -> None:
    body = bulk_body([({"email": "ann@example.com"}, [event_attributes(unique_id=None)] * 2)])

    error = send_bulk_expecting_400(client, body)

    assert error["source"]["pointer"] == (
        f"{BULK_EVENTS_POINTER}/0/attributes/events/data/1/attributes/time"
    )


def test_backfill_flag_is_stored(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body(unique_id="a", backfill=True))
    client.Events.bulk_create_events(numbered_bulk_body(1))

    assert [event["backfill"] for event in server.events()] == [True, False]


def test_missing_time_uses_receive_time(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    client.Events.create_event(create_event_body(time=None))
    after = datetime.now(UTC)

    stored = datetime.fromisoformat(server.events()[0]["time"])
    assert before <= stored <= after


def test_naive_time_is_read_as_utc(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body(time="2025-05-01T12:30:15"))

    assert server.events()[0]["time"] == EVENT_TIME


def test_error_body_has_json_api_fields(client: KlaviyoAPI) -> None:
    body = create_event_body(profile={"email": "not-an-email"})

    with pytest.raises(BadRequestException) as raised:
        client.Events.create_event(body)

    error = first_error(raised.value)
    assert set(error) >= {"id", "status", "code", "title", "detail", "source", "meta"}
    assert error["status"] == 400
    assert error["code"] == "invalid"
    assert error["title"] == "Invalid input."
    assert error["source"]["pointer"] == "/data/attributes/profile/data/attributes/email"
    assert error["meta"] == {}
    assert raised.value.data is not None


def too_many_properties() -> dict[str, Any]:
    return {f"p{index}": index for index in range(401)}


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"child": value}
    return value


# Each case: event attributes to change, JSON pointer below the first event's attributes.
INVALID_EVENT_CASES = [
    pytest.param({"time": "1999-12-31T23:59:59+00:00"}, "/time", id="time-before-2000"),
    pytest.param(
        {"time": (datetime.now(UTC) + timedelta(days=370)).isoformat()}, "/time", id="time-future"
    ),
    pytest.param({"unique_id": ""}, "/unique_id", id="unique-id-empty"),
    pytest.param({"unique_id": "u" * 256}, "/unique_id", id="unique-id-256"),
    pytest.param({"metric": "M" * 128}, "/metric/data/attributes/name", id="metric-128"),
    pytest.param({"metric": ""}, "/metric/data/attributes/name", id="metric-empty"),
    pytest.param({"properties": too_many_properties()}, "/properties", id="401-properties"),
    pytest.param(
        {"properties": {"html": "x" * (100 * 1024 + 1)}}, "/properties/html", id="string-100kb"
    ),
    pytest.param(
        {"properties": {"items": list(range(4_001))}}, "/properties/items", id="array-4001"
    ),
    pytest.param(
        {"properties": {"a": nested(10)}},
        "/properties/a" + "/child" * 9,
        id="nesting-11-levels",
    ),
    pytest.param({"properties": {"big": 2**63}}, "/properties/big", id="integer-over-64-bits"),
]


@pytest.mark.parametrize(("changes", "pointer"), INVALID_EVENT_CASES)
def test_invalid_event_points_at_member(
    client: KlaviyoAPI, server: LocalKlaviyoServer, changes: dict[str, Any], pointer: str
) -> None:
    body = bulk_body(
        [
            ({"email": "ok@example.com"}, [event_attributes(unique_id="ok")]),
            ({"email": "ann@example.com"}, [event_attributes(**changes)]),
        ]
    )

    error = send_bulk_expecting_400(client, body)

    expected = f"{BULK_EVENTS_POINTER}/1/attributes/events/data/0/attributes{pointer}"
    assert error["source"]["pointer"] == expected
    assert server.events() == []


def test_limits_at_boundary_are_accepted(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    attributes = event_attributes(
        metric="M" * 127,
        unique_id="u" * 255,
        time="2000-01-01T00:00:00+00:00",
        properties={
            **{f"p{index}": index for index in range(397)},
            "html": "x" * (100 * 1024),
            "items": list(range(4_000)),
            "deep": nested(9),
        },
    )

    client.Events.bulk_create_events(bulk_body([({"email": "ann@example.com"}, [attributes])]))

    assert len(server.events()) == 1


# Each case: profile attributes, JSON pointer below the profile's attributes.
INVALID_PROFILE_CASES = [
    pytest.param({}, "", id="no-identifier"),
    pytest.param({"first_name": "Ann"}, "", id="only-name"),
    pytest.param({"email": "ann@"}, "/email", id="email-invalid"),
    pytest.param({"email": ""}, "/email", id="email-empty"),
    pytest.param({"email": "a" * 89 + "@example.com"}, "/email", id="email-101-characters"),
    pytest.param({"phone_number": "+1415555267"}, "/phone_number", id="phone-too-short"),
    pytest.param({"phone_number": "4155552671"}, "/phone_number", id="phone-without-plus"),
    pytest.param({"phone_number": "+1 415 555 2671"}, "/phone_number", id="phone-with-spaces"),
]


@pytest.mark.parametrize(("profile", "pointer"), INVALID_PROFILE_CASES)
def test_invalid_event_profile_rejected(
    client: KlaviyoAPI, profile: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(BadRequestException) as raised:
        client.Events.create_event(create_event_body(profile=profile))

    expected = f"/data/attributes/profile/data/attributes{pointer}"
    assert first_error(raised.value)["source"]["pointer"] == expected


def test_email_of_100_characters_accepted(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    email = "a" * 88 + "@example.com"
    assert len(email) == 100

    client.Events.create_event(create_event_body(profile={"email": email}))

    assert server.events()[0]["profile"]["email"] == email


def test_invalid_phone_with_email_is_dropped(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    profile = {"email": "ann@example.com", "phone_number": "+1415555267"}

    client.Events.create_event(create_event_body(profile=profile))

    assert server.events()[0]["profile"]["phone_number"] is None
    assert server.profiles()[0]["phone_number"] is None
    assert server.requests()[-1]["ignored_phone_numbers"] == 1


def test_identifier_by_external_id_only(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.create_event(create_event_body(profile={"external_id": "cust-9"}))

    assert server.profiles()[0]["external_id"] == "cust-9"


def test_unknown_profile_id_rejected(client: KlaviyoAPI) -> None:
    body = create_event_body(profile={"email": "ann@example.com"})
    body["data"]["attributes"]["profile"]["data"]["id"] = "01UNKNOWNPROFILE0000000000"

    with pytest.raises(BadRequestException) as raised:
        client.Events.create_event(body)

    assert first_error(raised.value)["source"]["pointer"] == "/data/attributes/profile/data/id"


def test_bulk_over_1000_events_rejected(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    error = send_bulk_expecting_400(client, numbered_bulk_body(1_001))

    assert error["source"]["pointer"] == BULK_EVENTS_POINTER
    assert "1001" in error["detail"]
    assert server.events() == []


def test_bulk_of_1000_events_accepted(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    client.Events.bulk_create_events(numbered_bulk_body(1_000))

    assert len(server.events()) == 1_000


@pytest.mark.parametrize(
    "groups",
    [
        pytest.param([], id="no-groups"),
        pytest.param([({"email": "a@example.com"}, [])], id="no-events"),
    ],
)
def test_empty_bulk_rejected(client: KlaviyoAPI, groups: list[Any]) -> None:
    error = send_bulk_expecting_400(client, bulk_body(groups))

    assert error["source"]["pointer"] == BULK_EVENTS_POINTER


def test_nan_property_is_invalid_json(client: KlaviyoAPI, server: LocalKlaviyoServer) -> None:
    body = create_event_body(properties={"ratio": float("nan")})

    with pytest.raises(BadRequestException) as raised:
        client.Events.create_event(body)

    assert "not valid JSON" in first_error(raised.value)["detail"]
    assert server.events() == []


def test_conflicting_identifiers_keep_first_profile(
    client: KlaviyoAPI, server: LocalKlaviyoServer
) -> None:
    client.Events.create_event(create_event_body(profile={"email": "ann@example.com"}))
    client.Events.create_event(create_event_body(profile={"phone_number": "+14155552671"}))

    client.Events.create_event(
        create_event_body(
            profile={"email": "ann@example.com", "phone_number": "+14155552671"}, unique_id="x"
        )
    )

    ann, phone_only = server.profiles()
    assert server.events()[-1]["profile_id"] == ann["id"]
    assert ann["phone_number"] is None
    assert phone_only["phone_number"] == "+14155552671"


# The SDK validates types and enums before sending, so these bodies go out raw.
SCHEMA_VIOLATIONS = [
    pytest.param(
        ("metric", "data", "type"), "metrics", "/data/attributes/metric/data/type", id="enum"
    ),
    pytest.param(("value",), "19.98", "/data/attributes/value", id="value-string"),
    pytest.param(("value",), True, "/data/attributes/value", id="value-boolean"),
    pytest.param(("unique_id",), 1001, "/data/attributes/unique_id", id="unique-id-integer"),
    pytest.param(("properties",), None, "/data/attributes/properties", id="properties-null"),
    pytest.param(("time",), "May 1st", "/data/attributes/time", id="time-not-iso"),
    pytest.param(
        ("profile", "data", "attributes", "external_id"),
        12345,
        "/data/attributes/profile/data/attributes/external_id",
        id="external-id-integer",
    ),
]


@pytest.mark.parametrize(("path", "value", "pointer"), SCHEMA_VIOLATIONS)
def test_schema_violation_points_at_member(
    server: LocalKlaviyoServer, path: tuple[str, ...], value: Any, pointer: str
) -> None:
    body = create_event_body()
    target = body["data"]["attributes"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    response = raw_request(server.base_url, "POST", "/api/events", body)

    assert response.status == 400
    error = response.json()["errors"][0]
    assert error["code"] == "invalid"
    assert error["source"]["pointer"] == pointer


def test_missing_required_member_named(server: LocalKlaviyoServer) -> None:
    body = create_event_body()
    del body["data"]["attributes"]["metric"]

    response = raw_request(server.base_url, "POST", "/api/events", body)

    assert response.status == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/metric"
