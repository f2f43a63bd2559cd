"""Outcome of every record of one sync run, and its rows for the sync log."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def _codes(texts: pa.Array) -> tuple[np.ndarray, int]:
    """Number each distinct text, null included, and return the numbers and their count."""
    encoded = pc.dictionary_encode(texts)
    null_code = len(encoded.dictionary)
    codes = encoded.indices.fill_null(null_code).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64), null_code + 1


def _per_distinct(function: Any, *columns: pa.Array) -> list[Any]:
    """Apply `function` to the values of each distinct row of the columns once, in row order.

    Each column is numbered per distinct text, and the numbers of the columns are combined
    one column at a time, so a combined number stays below the square of the row count.
    """
    size = len(columns[0])
    if size == 0:
        return []
    combined = np.zeros(size, dtype=np.int64)
    for column in columns:
        codes, count = _codes(column)
        combined, _ = pd.factorize(combined * count + codes)
    # factorize numbers in order of first appearance, so code k first appears at firsts[k].
    _, firsts = np.unique(combined, return_index=True)
    chosen = pa.array(firsts)
    values = zip(*(column.take(chosen).to_pylist() for column in columns), strict=True)
    results = np.empty(len(firsts), dtype=object)
    results[:] = [function(*row) for row in values]
    return results[combined].tolist()


def _record_keys(*columns: pa.Array) -> list[str]:
    """Return `hash_key` of the texts of each row, with "" for a missing text.

    The texts are joined column-wise, so only the SHA-256 of each row runs in Python.
    """
    parts = [column.fill_null("") for column in columns]
    joined = pc.cast(pc.binary_join_element_wise(*parts, "\x1f"), pa.binary())
    return [hashlib.sha256(text).hexdigest()[:32] for text in joined.to_pylist()]


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
    profile_keys = arrow_json.strings(records["profile_key"])
    is_event = stream == "event"
    identities = _per_distinct(
        mask_identity,
        arrow_json.strings(records["email"]),
        arrow_json.strings(records["phone_number"]),
        arrow_json.strings(records["external_id"]),
    )
    profile_key_hashes = _per_distinct(hash_key, profile_keys)
    if is_event:
        unique_ids = arrow_json.strings(records["unique_id"])
        metrics = arrow_json.strings(records["metric"])
        record_keys = _record_keys(profile_keys, metrics, unique_ids)
    else:
        record_keys = profile_key_hashes
    return pd.DataFrame(
        {
            "partition": partition,
            "stream": stream,
            "record_id": _texts(records["record_id"]),
            "run_id": run_id,
            "row_id": pd.array(records["row_id"].to_numpy(), dtype="Int64"),
            "record_key": record_keys,
            "unique_id": unique_ids.to_pylist() if is_event else [None] * size,
            "metric": metrics.to_pylist() if is_event else [None] * size,
            "identity": identities,
            "profile_key_hash": profile_key_hashes,
            "content_hash": _texts(records["content_hash"]),
        }
    )
