"""Sync log: one row per record and run in the DuckDB state database.

The log drives resume, retry and reporting. Each row describes one record in one run:

* partition, stream (``event`` or ``profile``), record id, row id and run id;
* unique_id, metric, masked identity and a hash of the profile key (never the raw email);
* content hash, terminal status and reason, and Klaviyo's error code and detail;
* the number of HTTP attempts and the time.

Crash safety: a sync writes every record of a run as ``failed`` / ``not_attempted``
before its first request, then overwrites the rows of each batch with their outcome as
soon as the batch ends. A run killed mid-sync leaves the records of the batch in flight
as ``failed`` / ``not_attempted``, and the next run sends them again. That cannot
duplicate an event, because Klaviyo keeps only the first event per (profile, metric,
unique_id) and the records carry deterministic unique_ids. A profile sent twice is the
same upsert twice.

Concurrency: DuckDB allows one writing process per database file, and the process keeps
the file lock while a connection is open. Every operation therefore opens its own
connection and closes it at once, and retries for up to `lock_timeout_seconds` while
another process has the lock. Within a process, operations on one file take turns under
a lock, because DuckDB 2.0 fails with "pandas_scan does not exist" when threads register
frames on connections to the same database at the same time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

_logger = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

STREAMS = ("event", "profile")

COLUMNS: dict[str, str] = {
    "partition": "VARCHAR NOT NULL",
    "stream": "VARCHAR NOT NULL",
    "record_id": "VARCHAR NOT NULL",
    "run_id": "VARCHAR NOT NULL",
    "row_id": "BIGINT",
    "record_key": "VARCHAR NOT NULL",
    "unique_id": "VARCHAR",
    "metric": "VARCHAR",
    "identity": "VARCHAR",
    "profile_key_hash": "VARCHAR",
    "content_hash": "VARCHAR",
    "status": "VARCHAR NOT NULL",
    "reason": "VARCHAR NOT NULL",
    "klaviyo_code": "VARCHAR",
    "klaviyo_detail": "VARCHAR",
    "attempts": "INTEGER NOT NULL",
    "recorded_at": "TIMESTAMPTZ NOT NULL",
}
# Columns a caller passes to `record`; `recorded_at` and `seq` are set by the log.
INPUT_COLUMNS = [name for name in COLUMNS if name != "recorded_at"]

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS sync_log ("
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    + ", seq BIGINT NOT NULL, PRIMARY KEY (partition, stream, record_id, run_id))"
)

_LOCK_MESSAGES = ("lock", "conflict", "could not set lock")
# The log needs only core SQL, so DuckDB must not load or download extensions.
_CONNECT_CONFIG = {"autoload_known_extensions": False, "autoinstall_known_extensions": False}

_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _path_locks_guard:
        return _path_locks.setdefault(key, threading.Lock())


def hash_key(*parts: Any) -> str:
    """Return a stable hex hash of the parts, for keys that must not show emails."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class SyncLog:
    """Sync log in a DuckDB file.

    Args:
        path: DuckDB database file; the folder is created if missing.
        lock_timeout_seconds: How long an operation retries while the file is locked.
    """

    def __init__(self, path: str | Path, *, lock_timeout_seconds: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_timeout_seconds = lock_timeout_seconds
        self._created = False
        self._process_lock = _lock_for(self.path)

    def __repr__(self) -> str:
        return f"SyncLog({str(self.path)!r})"

    def record(self, outcomes: pd.DataFrame) -> None:
        """Insert or replace the rows of `outcomes` in one statement.

        A row replaces the earlier row of the same (partition, stream, record_id, run_id),
        so a run keeps one row per record.

        Args:
            outcomes: Frame with the columns in `INPUT_COLUMNS`.
        """
        if outcomes.empty:
            return
        missing = [name for name in INPUT_COLUMNS if name not in outcomes.columns]
        if missing:
            raise ValueError(f"sync log rows are missing columns {missing}")
        frame = outcomes[INPUT_COLUMNS]
        self._run(lambda connection: _insert(connection, frame))

    def prior_outcomes(
        self, partition: str, stream: str, record_keys: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Return what earlier runs recorded per record key of a partition and stream.

        Rows with status ``deduplicated`` are left out. With `record_keys`, only those
        records are looked up, so a sync of one chunk reads the log rows of that chunk.

        Returns:
            One row per ``record_key`` with the latest ``status``, ``reason``,
            ``klaviyo_code``, ``klaviyo_detail`` and ``content_hash``, plus
            ``first_sent_hash`` and ``last_sent_hash``: the content hashes of the first
            and the latest rows with status ``sent`` (None if never sent).
        """
        query = """
            WITH keyed AS (
                -- A deduplicated row shares its key with the record that was kept and
                -- says nothing about what Klaviyo has.
                SELECT * FROM sync_log
                WHERE partition = ? AND stream = ? AND status <> 'deduplicated'
                {key_filter}
            ),
            latest AS (
                SELECT record_key,
                       arg_max(status, seq) AS status,
                       arg_max(reason, seq) AS reason,
                       arg_max(klaviyo_code, seq) AS klaviyo_code,
                       arg_max(klaviyo_detail, seq) AS klaviyo_detail,
                       arg_max(content_hash, seq) AS content_hash
                FROM keyed GROUP BY record_key
            ),
            sent AS (
                SELECT record_key,
                       arg_min(content_hash, seq) AS first_sent_hash,
                       arg_max(content_hash, seq) AS last_sent_hash
                FROM keyed WHERE status = 'sent' GROUP BY record_key
            )
            SELECT latest.*, sent.first_sent_hash, sent.last_sent_hash
            FROM latest LEFT JOIN sent USING (record_key)
        """
        if record_keys is None:
            return self._query(query.format(key_filter=""), [partition, stream])
        wanted = pd.DataFrame({"record_key": pd.Series(list(record_keys), dtype=object)})
        filtered = query.format(key_filter="AND record_key IN (SELECT record_key FROM wanted_keys)")

        def lookup(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            connection.register("wanted_keys", wanted)
            try:
                return connection.execute(filtered, [partition, stream]).df()
            finally:
                connection.unregister("wanted_keys")

        return self._run(lookup)

    def sent_records(self, partition: str, stream: str) -> pd.DataFrame:
        """Return the records of a partition whose latest status is ``sent``.

        Returns:
            ``record_key``, ``unique_id``, ``metric``, ``profile_key_hash`` and
            ``content_hash`` of the latest row per record key.
        """
        query = """
            SELECT record_key, unique_id, metric, profile_key_hash, content_hash FROM (
                SELECT *, row_number() OVER (PARTITION BY record_key ORDER BY seq DESC) AS rank
                FROM sync_log WHERE partition = ? AND stream = ?
            ) WHERE rank = 1 AND status = 'sent'
        """
        return self._query(query, [partition, stream])

    def latest_outcomes(self, partition: str, stream: str | None = None) -> pd.DataFrame:
        """Return the latest row per record of a partition, over all runs."""
        streams = [stream] if stream else list(STREAMS)
        query = f"""
            SELECT * EXCLUDE (rank) FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY stream, record_id ORDER BY seq DESC) AS rank
                FROM sync_log WHERE partition = ? AND stream IN ({", ".join("?" * len(streams))})
            ) WHERE rank = 1 ORDER BY stream, row_id, record_id
        """
        return self._query(query, [partition, *streams])

    def run_outcomes(self, partition: str, stream: str, run_id: str) -> pd.DataFrame:
        """Return the rows of one run for a partition and stream."""
        query = """
            SELECT * FROM sync_log WHERE partition = ? AND stream = ? AND run_id = ?
            ORDER BY row_id, record_id
        """
        return self._query(query, [partition, stream, run_id])

    def _query(self, query: str, parameters: list[Any]) -> pd.DataFrame:
        return self._run(lambda connection: connection.execute(query, parameters).df())

    def _run(self, operation: Callable[[duckdb.DuckDBPyConnection], ResultT]) -> ResultT:
        """Run `operation` on a fresh connection, retrying while the database is locked."""
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.01
        while True:
            try:
                with (
                    self._process_lock,
                    duckdb.connect(str(self.path), config=_CONNECT_CONFIG) as connection,
                ):
                    self._ensure_table(connection)
                    return operation(connection)
            except (duckdb.IOException, duckdb.TransactionException) as error:
                if not _is_lock_error(error) or time.monotonic() >= deadline:
                    raise
                _logger.debug(
                    "Sync log %s is locked, retrying in %.2f s: %s", self.path, delay, error
                )
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _ensure_table(self, connection: duckdb.DuckDBPyConnection) -> None:
        if self._created:
            return
        connection.execute("CREATE SEQUENCE IF NOT EXISTS sync_log_seq")
        connection.execute(_CREATE_TABLE)
        self._created = True


def _insert(connection: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    connection.register("outcome_rows", frame)
    try:
        connection.execute(
            "INSERT OR REPLACE INTO sync_log BY NAME "
            "SELECT *, now() AS recorded_at, nextval('sync_log_seq') AS seq FROM outcome_rows"
        )
    finally:
        connection.unregister("outcome_rows")


def _is_lock_error(error: Exception) -> bool:
    message = str(error).lower()
    return any(text in message for text in _LOCK_MESSAGES)
