"""Assertions shared by the sync tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from klaviyo_pipeline.klaviyo import validation
from klaviyo_pipeline.outcomes import TERMINAL_STATES
from klaviyo_pipeline.sync_log import SyncLog


def assert_reconciled(
    sync_log: SyncLog, partition: str, stream: str, run_id: str, records: pd.DataFrame
) -> pd.DataFrame:
    """Assert that the run logged every record exactly once with a terminal state."""
    rows = sync_log.run_outcomes(partition, stream, run_id)
    assert sorted(rows["record_id"]) == sorted(records["record_id"])
    assert rows["record_id"].is_unique
    assert set(rows["status"]) <= set(TERMINAL_STATES)
    assert rows["reason"].notna().all()
    return rows


def event_keys(bodies: list[dict[str, Any]]) -> Counter:
    """Count (profile, metric, unique_id) keys over request bodies."""
    keys: Counter = Counter()
    for body in bodies:
        for item in validation.event_bulk_items(body) or []:
            identity = validation.profile_identity(
                item["attributes"]["profile"]["data"]["attributes"]
            )
            for event in validation.item_events(item):
                attributes = event["attributes"]
                metric = attributes["metric"]["data"]["attributes"]["name"]
                keys[(identity, metric, attributes["unique_id"])] += 1
    return keys


def events_per_body(body: dict[str, Any]) -> int:
    """Count the events of one bulk body."""
    return sum(
        len(validation.item_events(item)) for item in validation.event_bulk_items(body) or []
    )
