"""Summary of one event or profile sync run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from klaviyo_pipeline.outcomes import TERMINAL_STATES


@dataclass
class SyncReport:
    """Counts, request totals and notes of one sync of one partition.

    Attributes:
        stream: ``event`` or ``profile``.
        partition: Partition key.
        run_id: Id of the run.
        dry_run: True if nothing was sent.
        records: Records in the input.
        status_counts: Records per terminal status (every status, zeros included).
        reason_counts: Records per status, then per reason.
        metric_status_counts: Events per metric, then per status (empty for profiles).
        requests: HTTP requests made, retries included. A dry run counts the requests
            it would have made.
        attempts: Request attempts made by the retry loop, including ones that failed
            before a response arrived.
        retries: Attempts after the first of each request.
        throttles: 429 responses.
        wait_seconds: Seconds spent waiting for the rate limiter.
        backoff_seconds: Seconds spent in retry backoff.
        jobs: Profile import jobs created.
        notes: Sentences for the run's summary, such as events that Klaviyo already had.
        outcomes: One row per record: ids, metric, status, reason, Klaviyo code and
            detail, attempts.
    """

    stream: str
    partition: str
    run_id: str
    dry_run: bool = False
    records: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    reason_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    metric_status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    attempts: int = 0
    retries: int = 0
    throttles: int = 0
    wait_seconds: float = 0.0
    backoff_seconds: float = 0.0
    jobs: int = 0
    notes: list[str] = field(default_factory=list)
    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def count(self, status: str, reason: str | None = None) -> int:
        """Return the records with a status, and with a reason if given."""
        if reason is None:
            return self.status_counts.get(str(status), 0)
        return self.reason_counts.get(str(status), {}).get(str(reason), 0)

    def describe_counts(self) -> str:
        """Return the status counts as text, such as "sent 6, rejected 1, failed 0"."""
        return ", ".join(f"{status} {count:,}" for status, count in self.status_counts.items())

    def fill_counts(self, outcomes: pd.DataFrame) -> None:
        """Set `outcomes` and every count from it."""
        self.outcomes = outcomes
        self.records = len(outcomes)
        self.status_counts = {status: 0 for status in TERMINAL_STATES}
        self.status_counts.update(outcomes["status"].value_counts().to_dict())
        self.reason_counts = _nested_counts(outcomes, "status", "reason")
        if self.stream == "event" and not outcomes.empty:
            self.metric_status_counts = _nested_counts(outcomes, "metric", "status")

    def to_metadata(self) -> dict[str, Any]:
        """Return the report as JSON-compatible values for Dagster metadata."""
        return {
            "stream": self.stream,
            "partition": self.partition,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "records": self.records,
            "status_counts": dict(self.status_counts),
            "reason_counts": {key: dict(value) for key, value in self.reason_counts.items()},
            "metric_status_counts": {
                key: dict(value) for key, value in self.metric_status_counts.items()
            },
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "throttles": self.throttles,
            "wait_seconds": round(self.wait_seconds, 3),
            "backoff_seconds": round(self.backoff_seconds, 3),
            "jobs": self.jobs,
            "notes": list(self.notes),
        }


def _nested_counts(frame: pd.DataFrame, outer: str, inner: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    grouped = frame.groupby([outer, inner], dropna=False).size()
    for (outer_value, inner_value), count in grouped.items():
        counts.setdefault(str(outer_value), {})[str(inner_value)] = int(count)
    return counts
