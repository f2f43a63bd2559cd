"""Outcome of every record of one sync run, and its rows for the sync log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from klaviyo_pipeline import arrow_json
from klaviyo_pipeline.klaviyo.dry_run import DRY_RUN
from klaviyo_pipeline.klaviyo.errors import mask_emails_in_text
from klaviyo_pipeline.masking import mask_identity
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.sync_log import hash_key

OUTCOME_COLUMNS = (
    "record_id",
    "row_id",
    "metric",
    "status",
    "reason",
    "klaviyo_code",
    "klaviyo_detail",
    "attempts",
)


def _texts(column: pd.Series) -> list[str | None]:
    """Return the cells as text, None for missing ones."""
    return arrow_json.strings(column).to_pylist()


def _per_distinct(function: Any, *columns: list[Any]) -> list[Any]:
    """Apply `function` to each distinct tuple of the columns once, in row order."""
    rows = list(zip(*columns, strict=True))
    codes, uniques = pd.factorize(pd.Series(rows, dtype=object), use_na_sentinel=False)
    results = [function(*row) for row in uniques.tolist()]
    return [results[code] for code in codes.tolist()]


class Ledger:
    """Status, reason, Klaviyo error and attempts per record position.

    Every record starts as ``failed`` / ``not_attempted``, which is also what the sync
    log contains for a record whose batch is in flight.

    Args:
        records: The partition's records, in the order of their positions.
        stream: ``event`` or ``profile``.
        partition: Partition key.
        run_id: Id of this run.
        dry_run: Record accepted and rejected rows as ``skipped`` / ``dry_run``.
    """

    def __init__(
        self, records: pd.DataFrame, stream: str, partition: str, run_id: str, dry_run: bool
    ) -> None:
        size = len(records)
        self.stream = stream
        self.dry_run = dry_run
        self.status = np.full(size, Status.FAILED.value, dtype=object)
        self.reason = np.full(size, Reason.NOT_ATTEMPTED.value, dtype=object)
        self.code = np.full(size, None, dtype=object)
        self.detail = np.full(size, None, dtype=object)
        self.attempts = np.zeros(size, dtype=np.int64)
        self.decided = np.zeros(size, dtype=bool)
        self.identity = _identity_columns(records, stream, partition, run_id)
        self.record_keys = self.identity["record_key"].to_numpy()

    def __len__(self) -> int:
        return len(self.status)

    def mark(
        self,
        positions: Iterable[int],
        status: str,
        reason: str,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Set the outcome of records and mark them decided for this run."""
        index = np.fromiter(positions, dtype=np.int64)
        self.status[index] = str(status)
        self.reason[index] = str(reason)
        self.code[index] = code
        self.detail[index] = mask_emails_in_text(detail)
        self.decided[index] = True

    def mark_accepted(self, positions: Iterable[int]) -> None:
        """Record rows Klaviyo accepted; in a dry run, rows that would have been sent."""
        if self.dry_run:
            self.mark(positions, Status.SKIPPED, DRY_RUN)
        else:
            self.mark(positions, Status.SENT, Reason.ACCEPTED)

    def mark_rejected(
        self, positions: Iterable[int], reason: str, code: str | None, detail: str | None
    ) -> None:
        """Record rows Klaviyo rejected; a dry run keeps the would-be error on a skipped row."""
        if self.dry_run:
            self.mark(positions, Status.SKIPPED, DRY_RUN, code, detail)
        else:
            self.mark(positions, Status.REJECTED, reason, code, detail)

    def mark_failed(self, positions: Iterable[int], reason: str, detail: str | None = None) -> None:
        """Record rows that failed in a way the next run retries."""
        self.mark(positions, Status.FAILED, reason, None, detail)

    def add_attempts(self, positions: Iterable[int], attempts: int) -> None:
        """Add HTTP attempts to the records that the attempts carried."""
        index = np.fromiter(positions, dtype=np.int64)
        self.attempts[index] += attempts

    def undecided(self) -> list[int]:
        """Return the positions not yet decided in this run."""
        return np.flatnonzero(~self.decided).tolist()

    def log_rows(self, positions: Iterable[int] | None = None) -> pd.DataFrame:
        """Return sync log rows for the positions, or for all records."""
        index = np.arange(len(self)) if positions is None else np.fromiter(positions, np.int64)
        frame = self.identity.iloc[index].reset_index(drop=True)
        frame["status"] = self.status[index]
        frame["reason"] = self.reason[index]
        frame["klaviyo_code"] = self.code[index]
        frame["klaviyo_detail"] = self.detail[index]
        frame["attempts"] = self.attempts[index].astype("int32")
        return frame

    def outcomes(self) -> pd.DataFrame:
        """Return one row per record: ids, metric, status, reason, Klaviyo error, attempts."""
        frame = self.log_rows()
        return frame[list(OUTCOME_COLUMNS)]


def _identity_columns(
    records: pd.DataFrame, stream: str, partition: str, run_id: str
) -> pd.DataFrame:
    """Return the columns that every sync log row of a record repeats.

    Identities and profile key hashes repeat across a profile's records, so each distinct
    value is masked or hashed once.
    """
    size = len(records)
    profile_keys = _texts(records["profile_key"])
    is_event = stream == "event"
    unique_ids = _texts(records["unique_id"]) if is_event else [None] * size
    metrics = _texts(records["metric"]) if is_event else [None] * size
    identities = _per_distinct(
        mask_identity,
        _texts(records["email"]),
        _texts(records["phone_number"]),
        _texts(records["external_id"]),
    )
    if is_event:
        record_keys = [
            hash_key(key, metric, unique_id)
            for key, metric, unique_id in zip(profile_keys, metrics, unique_ids, strict=True)
        ]
    else:
        record_keys = _per_distinct(hash_key, profile_keys)
    return pd.DataFrame(
        {
            "partition": partition,
            "stream": stream,
            "record_id": _texts(records["record_id"]),
            "run_id": run_id,
            "row_id": pd.array(records["row_id"].to_numpy(), dtype="Int64"),
            "record_key": record_keys,
            "unique_id": unique_ids,
            "metric": metrics,
            "identity": identities,
            "profile_key_hash": _per_distinct(hash_key, profile_keys),
            "content_hash": _texts(records["content_hash"]),
        }
    )
