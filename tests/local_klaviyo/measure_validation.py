"""Measure how long the server takes to validate and store a 1,000-event bulk body.

Run ``.venv/bin/python -m tests.local_klaviyo.measure_validation``. It logs the wall-clock
median and minimum and the CPU median of 20 runs for three stages: the schema check alone,
the schema check plus Klaviyo's rules (what "validation" means in docs/local_klaviyo.md),
and the whole handler including the store. Each stage runs on a body without phone numbers
and on one with a distinct phone number per profile, where the phone cache is cleared
before each run, which is the slowest case. The tests do not run this, because durations
depend on the machine.
"""

import functools
import logging
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from klaviyo_pipeline.local_klaviyo import endpoints, rules
from klaviyo_pipeline.local_klaviyo.account import Account
from klaviyo_pipeline.local_klaviyo.request_schemas import validate_request_body
from tests.local_klaviyo.payloads import bulk_body, event_attributes

logger = logging.getLogger(__name__)

RUNS = 20


def build_body(with_phone_numbers: bool) -> bytes:
    """Build a bulk body of 1,000 events for 1,000 profiles, encoded as JSON."""
    groups = []
    for index in range(1_000):
        profile: dict[str, Any] = {"email": f"user{index}@example.com", "external_id": f"c{index}"}
        if with_phone_numbers:
            profile["phone_number"] = f"+1415555{index:04d}"
        properties = {
            "OrderId": str(index),
            "Items": [{"SKU": "S1", "Quantity": 2, "ProductName": "Sock"}],
            "Categories": ["Apparel", "Socks"],
        }
        event = event_attributes(unique_id=f"order-{index}", properties=properties, value=19.98)
        groups.append((profile, [event]))
    return orjson.dumps(bulk_body(groups))


def validate_only(body: dict[str, Any]) -> None:
    """Run the schema check and the rules of every profile and event, without storing."""
    validate_request_body("bulk_create_events", body)
    received_at = datetime.now(UTC)
    for group_index, item in enumerate(body["data"]["attributes"]["events-bulk-create"]["data"]):
        pointer = f"/data/attributes/events-bulk-create/data/{group_index}"
        attributes = item["attributes"]
        profile = rules.parse_profile(
            attributes["profile"]["data"], pointer + "/attributes/profile/data", 95 * 1024
        )
        for event in attributes["events"]["data"]:
            rules.parse_event(event["attributes"], pointer, profile, received_at)


def handle(body: dict[str, Any], size: int) -> None:
    """Run the whole bulk handler against a fresh account."""
    request = endpoints.ApiRequest(
        route="bulk_create_events",
        path_params={},
        query={},
        body=body,
        body_size=size,
        received_at=datetime.now(UTC),
        base_url="http://127.0.0.1:0",
        path="/api/event-bulk-create-jobs",
    )
    endpoints.bulk_create_events(Account(job_steps=0), request)


def measure(raw: bytes, stage: Callable[[dict[str, Any]], None]) -> tuple[list[float], list[float]]:
    """Run one stage RUNS times on freshly decoded bodies.

    Returns:
        Wall-clock durations and CPU times of this thread, in ms. CPU time is less
        affected by other processes on a busy machine.
    """
    wall_times = []
    cpu_times = []
    for _ in range(RUNS):
        body = orjson.loads(raw)
        rules.is_valid_phone_number.cache_clear()
        wall_started = time.perf_counter()
        cpu_started = time.thread_time()
        stage(body)
        cpu_times.append((time.thread_time() - cpu_started) * 1_000)
        wall_times.append((time.perf_counter() - wall_started) * 1_000)
    return wall_times, cpu_times


def main() -> None:
    """Log the durations of each stage with and without phone numbers."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for with_phone_numbers in (False, True):
        raw = build_body(with_phone_numbers)
        size = len(raw)
        stages: dict[str, Callable[[dict[str, Any]], None]] = {
            "schema": lambda body: validate_request_body("bulk_create_events", body),
            "schema + rules": validate_only,
            "handler with store": functools.partial(handle, size=size),
        }
        for name, stage in stages.items():
            wall_times, cpu_times = measure(raw, stage)
            logger.info(
                "%-18s phone numbers=%-5s wall median %5.1f ms, min %5.1f ms; "
                "CPU median %5.1f ms (%d runs, %d bytes)",
                name,
                with_phone_numbers,
                statistics.median(wall_times),
                min(wall_times),
                statistics.median(cpu_times),
                RUNS,
                size,
            )


if __name__ == "__main__":
    main()
