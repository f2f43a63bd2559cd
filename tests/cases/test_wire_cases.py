"""Hard input cases decided on the wire: the real SDK sends to the local server through a proxy
that records the request bytes, and each test reads the body the SDK serialized."""

import json
import re
from typing import Any

import pytest

from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.cases.rows import LINE_ITEMS, case_config, map_cases
from tests.cases.wire import RecordedRequest, RecordingProxy, sent_events, sync_cases

BULK_EVENTS = "/api/event-bulk-create-jobs"
PROFILE_IMPORT = "/api/profile-bulk-import-jobs"
USER = {"email": "user@example.com"}


def send(
    cases: list[dict[str, Any]],
    proxy: RecordingProxy,
    state_database: str,
    config: PipelineConfig | None = None,
) -> list[RecordedRequest]:
    """Map and send case rows through the proxy; return the bulk event requests it recorded."""
    config = config or case_config()
    outcome = sync_cases(map_cases(cases, config), config, proxy.base_url, state_database)
    assert outcome.status_counts["failed"] == 0
    return proxy.bodies(BULK_EVENTS)


def order(order_id: str, **fields: Any) -> dict[str, Any]:
    return {"event": "order complete", "user": USER, "data": {"id": order_id, **fields}}


def test_wire_value_top_level(proxy: RecordingProxy, state_database: str) -> None:
    requests = send([order("ORD-1007", total=99.99, currency="EUR")], proxy, state_database)

    (event,) = sent_events(requests)
    assert event["value"] == 99.99
    assert event["value_currency"] == "EUR"
    assert event["metric"]["data"]["attributes"]["name"] == "Placed Order"
    assert event["properties"] == {"OrderId": "ORD-1007"}


def test_wire_value_currency_serialized(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    requests = send([order("ORD-1008", total=15, currency="GBP")], proxy, state_database)

    assert len(requests) == 1
    assert re.search(rb'"value_currency":\s*"GBP"', requests[0].body)
    assert [event["value_currency"] for event in server.events()] == ["GBP"]


def test_wire_unique_id_golden(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    config = case_config(normalize={"prefix_unique_id_with_metric": True})
    requests = send([order("ORD-1009", total=12)], proxy, state_database, config)

    assert re.search(rb'"unique_id":\s*"placed_order:ORD-1009"', requests[0].body)
    assert requests[0].json() == {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "backfill": False,
                                "profile": {
                                    "data": {
                                        "type": "profile",
                                        "attributes": {"email": "user@example.com"},
                                    }
                                },
                                "events": {
                                    "data": [
                                        {
                                            "type": "event",
                                            "attributes": {
                                                "properties": {"OrderId": "ORD-1009"},
                                                "time": "2024-05-01T10:00:00+00:00",
                                                "unique_id": "placed_order:ORD-1009",
                                                "backfill": False,
                                                "metric": {
                                                    "data": {
                                                        "type": "metric",
                                                        "attributes": {"name": "Placed Order"},
                                                    }
                                                },
                                                "value": 12.0,
                                            },
                                        }
                                    ]
                                },
                            },
                        }
                    ]
                }
            },
        }
    }
    assert [event["unique_id"] for event in server.events()] == ["placed_order:ORD-1009"]


def test_wire_time_in_seconds(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    row = {
        **order("ORD-1001", total=49.99, currency="USD"),
        "timestamp": "2024-09-11T20:08:49.891912312Z",
    }
    requests = send([row], proxy, state_database)

    (event,) = sent_events(requests)
    assert event["time"] == "2024-09-11T20:08:49+00:00"
    assert [stored["time"] for stored in server.events()] == ["2024-09-11T20:08:49+00:00"]


def _reject_constant(text: str) -> None:
    raise AssertionError(f"the body contains the invalid JSON token {text}")


@pytest.mark.parametrize(
    "number",
    [
        # pandas' NULL in a float column
        float("nan"),
        # infinity from a division by zero upstream
        float("inf"),
    ],
)
def test_wire_no_nan_tokens(number: float, proxy: RecordingProxy, state_database: str) -> None:
    requests = send([order("ORD-1020", total=number, coupon=number)], proxy, state_database)

    body = json.loads(requests[0].body, parse_constant=_reject_constant)
    (event,) = sent_events(requests)
    assert "value" not in event
    assert "coupon" not in event["properties"]
    assert body["data"]["type"] == "event-bulk-create-job"


def test_wire_traits_in_profile_properties(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    config = case_config(normalize={"user_traits_to_profile": True})
    row = {
        "event": "order complete",
        "user": {**USER, "loyalty_tier": "gold"},
        "data": {"id": "ORD-1026", "total": 10},
    }
    requests = send([row], proxy, state_database, config)

    (event,) = sent_events(requests)
    assert event["profile"] == {"email": "user@example.com", "properties": {"loyalty_tier": "gold"}}
    assert "loyalty_tier" not in event["properties"]
    assert server.profiles()[0]["properties"] == {"loyalty_tier": "gold"}


def test_wire_null_phone_omitted(proxy: RecordingProxy, state_database: str) -> None:
    rows = [
        {
            "event": "order complete",
            "user": {**USER, "phone": None},
            "data": {"id": "ORD-1019", "total": 1},
        }
    ]
    requests = send(rows, proxy, state_database)

    (event,) = sent_events(requests)
    assert event["profile"] == {"email": "user@example.com"}


def test_wire_profile_nulls_only_unset(proxy: RecordingProxy, state_database: str) -> None:
    config = case_config(normalize={"unset_profile_fields": ["phone_number"]})
    cases = [
        {
            "type": "identify",
            "user": {**USER, "phone": None},
            "traits": {"first_name": "Ada", "zip": None},
        }
    ]
    outcome = sync_cases(
        map_cases(cases, config), config, proxy.base_url, state_database, stream="profile"
    )

    (request,) = proxy.bodies(PROFILE_IMPORT)
    (profile,) = request.json()["data"]["attributes"]["profiles"]["data"]
    assert profile["attributes"] == {
        "email": "user@example.com",
        "first_name": "Ada",
        "phone_number": None,
    }
    assert outcome.status_counts["sent"] == 1


def test_wire_phone_formatted(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    rows = [
        {
            "event": "order complete",
            "user": {**USER, "phone": "(415) 555-2671", "country": "US"},
            "data": {"id": "ORD-1004", "total": 20},
        }
    ]
    requests = send(rows, proxy, state_database)

    (event,) = sent_events(requests)
    assert event["profile"]["phone_number"] == "+14155552671"
    assert len(server.events()) == 1


def test_wire_line_items(
    proxy: RecordingProxy, state_database: str, server: LocalKlaviyoServer
) -> None:
    config = case_config(normalize={"prefix_unique_id_with_metric": True}, ecommerce=LINE_ITEMS)
    row = {
        **order("ORD-1011", total=30, currency="USD"),
        "timestamp": "2024-05-01T10:00:00Z",
        "products": [
            {"sku": "SKU-1", "price": 10, "quantity": 1},
            {"sku": "SKU-2", "price": 10, "quantity": 2},
        ],
    }
    send([row], proxy, state_database, config)

    stored = {event["unique_id"]: event for event in server.events()}
    assert sorted(stored) == [
        "ordered_product:ORD-1011:0",
        "ordered_product:ORD-1011:1",
        "placed_order:ORD-1011",
    ]
    assert stored["ordered_product:ORD-1011:1"]["value"] == 20
    assert stored["placed_order:ORD-1011"]["properties"]["Items"][1]["sku"] == "SKU-2"


def test_wire_email_normalized(proxy: RecordingProxy, state_database: str) -> None:
    rows = [
        {
            "event": "order complete",
            "user": {"email": "  User.Name+tag@Example.COM "},
            "data": {"id": "ORD-1028", "total": 10},
        }
    ]
    requests = send(rows, proxy, state_database)

    (event,) = sent_events(requests)
    assert event["profile"]["email"] == "User.Name+tag@example.com"
