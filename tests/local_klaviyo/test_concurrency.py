"""Concurrent clients: each request is applied whole, and each event is stored once."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import bulk_body, event_attributes, make_client


def test_parallel_bulk_requests_store_once() -> None:
    # Ten bodies that all share the same 50 profiles and 100 events, in different orders.
    groups = [
        (
            {"email": f"user{index}@example.com"},
            [event_attributes(unique_id=f"a-{index}"), event_attributes(unique_id=f"b-{index}")],
        )
        for index in range(50)
    ]
    bodies = [bulk_body(groups[shift:] + groups[:shift]) for shift in range(0, 50, 5)]

    with LocalKlaviyoServer(port=0, rate_limits=False) as server:

        def send(body: dict[str, Any]) -> None:
            make_client(server.base_url).Events.bulk_create_events(body, _request_timeout=30)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, bodies))

        events = server.events()
        profiles = server.profiles()
        requests = server.requests()

    assert len(events) == 100
    assert len({event["unique_id"] for event in events}) == 100
    assert len(profiles) == 50
    assert [entry["status"] for entry in requests] == [202] * 10
    assert sum(entry["stored"] for entry in requests) == 100
    assert sum(entry["duplicates"] for entry in requests) == 900
