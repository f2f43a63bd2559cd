"""Baseline: the REES46 mapping written plainly, one row at a time with `DataFrame.iterrows`.

It implements the mapping of `examples/rees46/config.yaml` by hand, without project code,
and builds the same bulk request bodies as the pipeline:

- `product view` -> Viewed Product, `product add` -> Added to Cart, `order complete` ->
  Placed Order, with the rule's properties and, for carts and orders, `data.price` as the
  value in USD;
- `user.id` as the profile's `external_id`, the row's `id` as `unique_id`, the event time
  in UTC to the second;
- NULL cells are left out of the properties, rows outside the day or without a user are
  skipped, and a repeated (profile, metric, unique_id) is sent once;
- the events of a profile follow each other in order of first appearance, at most 1,000
  events go in one body, and consecutive events of one profile share one item.

The input is what `read_source_events` returns for the REES46 config, the same frame the
pipeline's mapping starts from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from benchmarks.clock import StageClock

MAX_EVENTS_PER_BODY = 1_000
MAX_BODY_BYTES = 5 * 1024 * 1024
CURRENCY = "USD"

SHARED_PROPERTIES = (("Brand", "data.brand"), ("Categories", "data.category"))
RULES: dict[str, tuple[str, tuple[tuple[str, str], ...], bool]] = {
    "product view": (
        "Viewed Product",
        (
            ("ProductID", "data.id"),
            *SHARED_PROPERTIES,
            ("CategoryID", "data.category_id"),
            ("Price", "data.price"),
            ("Session", "user.session"),
        ),
        False,
    ),
    "product add": (
        "Added to Cart",
        (
            ("AddedItemProductID", "data.id"),
            ("AddedItemBrand", "data.brand"),
            ("AddedItemCategories", "data.category"),
            ("AddedItemPrice", "data.price"),
            ("Session", "user.session"),
        ),
        True,
    ),
    "order complete": (
        "Placed Order",
        (
            ("ProductID", "data.id"),
            *SHARED_PROPERTIES,
            ("Price", "data.price"),
            ("Session", "user.session"),
        ),
        True,
    ),
}


@dataclass
class BaselineRun:
    """Bodies and their JSON texts from one baseline run, with its timings."""

    rows: int
    events: int
    bodies: list[dict[str, Any]]
    texts: list[str]
    clock: StageClock


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return value


def _event_time(value: Any) -> datetime | None:
    if _missing(value) or value is pd.NaT:
        return None
    moment = pd.Timestamp(value)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return moment.tz_convert("UTC").to_pydatetime().replace(microsecond=0)


def map_row(row: pd.Series, backfill: bool) -> tuple[str, dict[str, Any]] | None:
    """Return (external_id, event resource) for one source row, or None to skip the row."""
    rule = RULES.get(" ".join(str(row["name"]).split()).lower())
    if rule is None:
        return None
    metric, property_columns, has_value = rule
    user_id = row["user.id"]
    if _missing(user_id):
        return None

    properties = {}
    for key, column in property_columns:
        value = row[column]
        if not _missing(value):
            properties[key] = _json_value(value)
    moment = _event_time(row["timestamp"])
    if moment is None:
        return None
    attributes: dict[str, Any] = {
        "properties": properties,
        "time": moment.isoformat(),
        "unique_id": str(row["id"]),
        "backfill": backfill,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
    }
    if has_value and not _missing(row["data.price"]):
        attributes["value"] = float(row["data.price"])
        attributes["value_currency"] = CURRENCY
    return str(int(user_id)), {"type": "event", "attributes": attributes}


def _bodies(profiles: dict[str, list[dict[str, Any]]], backfill: bool) -> Iterator[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    count = 0
    for external_id, events in profiles.items():
        start = 0
        while start < len(events):
            room = MAX_EVENTS_PER_BODY - count
            chunk = events[start : start + room]
            items.append(
                {
                    "type": "event-bulk-create",
                    "attributes": {
                        "backfill": backfill,
                        "profile": {
                            "data": {"type": "profile", "attributes": {"external_id": external_id}}
                        },
                        "events": {"data": chunk},
                    },
                }
            )
            count += len(chunk)
            start += len(chunk)
            if count == MAX_EVENTS_PER_BODY:
                yield _envelope(items)
                items, count = [], 0
    if items:
        yield _envelope(items)


def _envelope(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": items}},
        }
    }


def run_baseline(
    source: pd.DataFrame, window: tuple[datetime, datetime], *, backfill: bool = True
) -> BaselineRun:
    """Map `source` row by row into bulk bodies and serialize them with `json.dumps`.

    Raises:
        ValueError: A body is larger than Klaviyo's 5 MB limit; this baseline does not
            split bodies by size.
    """
    clock = StageClock()
    start, end = window
    profiles: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str, str]] = set()
    with clock.stage("map"):
        for _, row in source.iterrows():
            mapped = map_row(row, backfill)
            if mapped is None:
                continue
            external_id, event = mapped
            attributes = event["attributes"]
            if not start <= datetime.fromisoformat(attributes["time"]) < end:
                continue
            key = (
                external_id,
                attributes["metric"]["data"]["attributes"]["name"],
                attributes["unique_id"],
            )
            if key in seen:
                continue
            seen.add(key)
            profiles.setdefault(external_id, []).append(event)
    with clock.stage("bodies"):
        bodies = list(_bodies(profiles, backfill))
    with clock.stage("serialize"):
        texts = [json.dumps(body) for body in bodies]
    for number, text in enumerate(texts):
        if len(text) > MAX_BODY_BYTES:
            raise ValueError(f"body {number} has {len(text):,} bytes, over the 5 MB limit")
    return BaselineRun(
        rows=len(source),
        events=sum(len(events) for events in profiles.values()),
        bodies=bodies,
        texts=texts,
        clock=clock,
    )


def event_tuples(bodies: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Return (external_id, metric, unique_id, properties, value, currency, time) per event."""
    events = []
    for body in bodies:
        for item in body["data"]["attributes"]["events-bulk-create"]["data"]:
            profile = item["attributes"]["profile"]["data"]["attributes"]
            for event in item["attributes"]["events"]["data"]:
                attributes = event["attributes"]
                events.append(
                    (
                        profile.get("external_id"),
                        attributes["metric"]["data"]["attributes"]["name"],
                        attributes["unique_id"],
                        json.dumps(attributes["properties"], sort_keys=True),
                        attributes.get("value"),
                        attributes.get("value_currency"),
                        attributes["time"],
                    )
                )
    return events
