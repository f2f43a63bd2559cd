"""Case rows in the walkerOS event shape, turned into warehouse rows and mapped into records.

A case row looks like a walkerOS event: `event` or `name`, `timestamp`, sections such as
`user`, `data` and `traits`, and line items in `products` or `nested`. A row with
`"type": "identify"` is a profile-only row named `user identify`.
"""

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from klaviyo_pipeline.config import PipelineConfig, parse_config
from klaviyo_pipeline.normalized_events import normalize_events
from klaviyo_pipeline.records import MappedPartition, build_records

PARTITION = "2024-05-01"
DEFAULT_TIME = "2024-05-01T10:00:00Z"
# Event times are checked against this instant: before 2000 or a year after it is out of range.
NOW = datetime(2024, 10, 1, tzinfo=UTC)
LINE_ITEM_KEYS = ("products", "nested")

DESTINATION: dict[str, Any] = {
    "settings": {
        "apiKey": "pk_test_cases_key",
        "email": "user.email",
        "externalId": "user.id",
        "phoneNumber": "user.phone",
    },
    "mapping": {
        "order": {
            "complete": {
                "name": "Placed Order",
                "data": {
                    "map": {
                        "OrderId": "data.id",
                        "coupon": "data.coupon",
                        "shipping": "data.shipping",
                        "tags": "data.tags",
                    }
                },
                "settings": {
                    "value": "data.total",
                    "currency": "data.currency",
                    "uniqueId": "data.id",
                },
            }
        },
        "user": {
            "identify": {
                "silent": True,
                "settings": {
                    "identify": {
                        "map": {
                            "firstName": "traits.first_name",
                            "location": {"map": {"zip": "traits.zip"}},
                            "properties": {
                                "map": {
                                    "plan": "traits.plan",
                                    "accepts_marketing": "traits.accepts_marketing",
                                }
                            },
                        }
                    }
                },
            }
        },
    },
}
# Retries, backoffs and job polls that take milliseconds, so syncs against the local server
# finish quickly.
FAST_SYNC: dict[str, Any] = {
    "max_attempts": 3,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "job_poll_interval_seconds": 0.01,
    "job_poll_timeout_seconds": 10.0,
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 5.0,
}
LINE_ITEMS = {
    "ordered_product": True,
    "items_path": "products",
    "line_price_path": "price",
    "line_quantity_path": "quantity",
}


def case_config(
    settings: dict[str, Any] | None = None,
    order_data: dict[str, Any] | None = None,
    **sections: Any,
) -> PipelineConfig:
    """Return the cases' pipeline config.

    Args:
        settings: Destination settings to add, such as a default `currency`.
        order_data: Property mappings to add to the `order complete` rule's `data.map`.
        sections: Config sections to add: `normalize`, `ecommerce`, `sync`. The `sync`
            options are added to FAST_SYNC.
    """
    destination = copy.deepcopy(DESTINATION)
    destination["settings"].update(settings or {})
    destination["mapping"]["order"]["complete"]["data"]["map"].update(order_data or {})
    sections["sync"] = {**FAST_SYNC, **sections.get("sync", {})}
    raw = {
        "partitions": {"start": "2019-01-01"},
        "source": {"kind": "files", "path": "unused.ndjson"},
        "destination": destination,
        **sections,
    }
    return parse_config(raw)


def warehouse_row(case: dict[str, Any]) -> dict[str, Any]:
    """Flatten a case row into a warehouse row with dotted columns (`user.email`, `data.id`)."""
    row: dict[str, Any] = {}
    for key, value in case.items():
        if key == "event":
            row["name"] = value
        elif key == "type":
            row["name"] = f"user {value}"
        elif isinstance(value, dict) and key not in LINE_ITEM_KEYS:
            for field, item in value.items():
                row[f"{key}.{field}"] = item
        else:
            row[key] = value
    row.setdefault("timestamp", DEFAULT_TIME)
    return row


def case_frame(cases: list[dict[str, Any]]) -> pd.DataFrame:
    """Return the warehouse rows of case rows as one DataFrame, one row per case row."""
    return pd.DataFrame([warehouse_row(case) for case in cases])


def map_cases(cases: list[dict[str, Any]], config: PipelineConfig | None = None) -> MappedPartition:
    """Normalize and map case rows as one partition."""
    events = normalize_events(case_frame(cases), source_timezone="UTC", now=NOW)
    return build_records(events, config or case_config(), PARTITION)


def event_record(mapped: MappedPartition, unique_id: str) -> dict[str, Any]:
    """Return the event record with `unique_id`, with its JSON columns parsed."""
    matches = mapped.events[mapped.events["unique_id"] == unique_id]
    assert len(matches) == 1, f"expected one event with unique_id {unique_id!r}, got {len(matches)}"
    record = matches.iloc[0].to_dict()
    record["properties"] = json.loads(record["properties"])
    if isinstance(record["profile_properties"], str):
        record["profile_properties"] = json.loads(record["profile_properties"])
    return record


def outcome(mapped: MappedPartition, row_id: int, stream: str = "event") -> dict[str, Any]:
    """Return the one settled outcome of an input row in `stream`."""
    outcomes = mapped.outcomes
    matches = outcomes[(outcomes["row_id"] == row_id) & (outcomes["stream"] == stream)]
    assert len(matches) == 1, f"expected one {stream} outcome of row {row_id}, got {len(matches)}"
    return matches.iloc[0].to_dict()


def profile_attributes(mapped: MappedPartition, email: str) -> dict[str, Any]:
    """Return the parsed attributes of the profile record with `email`."""
    matches = mapped.profiles[mapped.profiles["email"] == email]
    assert len(matches) == 1, f"expected one profile for {email!r}, got {len(matches)}"
    return json.loads(matches.iloc[0]["attributes"])
