"""Plain functions behind each asset: read, normalize and map one partition chunk by chunk.

Each step reads the previous step's partition table one chunk at a time and writes its own,
so memory is bounded by the source's `chunk_rows`, not by the size of the partition.
"""

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from klaviyo_pipeline.config import PipelineConfig, resolve_path
from klaviyo_pipeline.normalized_events import normalize_events
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.records import (
    EVENT_COLUMNS,
    OUTCOME_COLUMNS,
    PROFILE_COLUMNS,
    MappedPartition,
    RecordBuilder,
    build_records,
    compile_destination,
)
from klaviyo_pipeline.sources import PartitionWindow, read_partition
from klaviyo_pipeline.tables import (
    PartitionTable,
    TableWriter,
    open_table,
    read_part,
    rewrite_part,
    table_path,
)


@dataclass(frozen=True)
class MappedTables:
    """The record tables of one partition and the warnings counted while mapping it."""

    events: PartitionTable
    profiles: PartitionTable
    outcomes: PartitionTable
    rows_read: int
    warnings: dict[str, int]


def partition_window(config: PipelineConfig, partition_key: str) -> PartitionWindow:
    """Return the time window of a daily partition in the config's partition timezone."""
    return PartitionWindow.for_day(partition_key, config.partitions.timezone)


def tables_root(config: PipelineConfig) -> Path:
    """Return the folder of the partition tables, next to the state database."""
    return Path(resolve_path(config, config.sync.state_database)).parent / "tables"


def _writer(config: PipelineConfig, asset: str, partition_key: str) -> TableWriter:
    return TableWriter(table_path(tables_root(config), asset, partition_key))


def read_source_events(
    config: PipelineConfig, partition_key: str, logger: logging.Logger | None = None
) -> pd.DataFrame:
    """Read every source row of one partition into one DataFrame; for small partitions."""
    window = partition_window(config, partition_key)
    chunks = list(read_partition(config.source, window, base_dir=config.base_dir, logger=logger))
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True)


def write_source_events(
    config: PipelineConfig, partition_key: str, logger: Any = None
) -> PartitionTable:
    """Copy one partition's source rows into a partition table, chunk by chunk."""
    window = partition_window(config, partition_key)
    writer = _writer(config, "source_events", partition_key)
    try:
        for chunk in read_partition(config.source, window, base_dir=config.base_dir, logger=logger):
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def normalize_partition(
    config: PipelineConfig,
    partition_key: str,
    source_events: pd.DataFrame,
    now: datetime | None = None,
    row_offset: int = 0,
) -> pd.DataFrame:
    """Normalize source rows of one partition, keeping the rows whose instant is in it."""
    window = partition_window(config, partition_key)
    time_column = config.source.time_column
    if time_column not in source_events.columns:
        time_column = "timestamp"
    events = normalize_events(
        source_events,
        time_column=time_column,
        timestamp_unit=config.source.timestamp_unit,
        source_timezone=config.source.timezone,
        window=(window.start, window.end),
        now=now,
    )
    if row_offset and len(events):
        events["row_id"] = events["row_id"] + row_offset
    return events


def write_normalized_events(
    config: PipelineConfig, partition_key: str, source: PartitionTable, now: datetime | None = None
) -> PartitionTable:
    """Normalize a source table chunk by chunk; row ids count across the whole partition."""
    writer = _writer(config, "normalized_events", partition_key)
    rows = 0
    rejected = 0
    try:
        for chunk in source.chunks():
            events = normalize_partition(config, partition_key, chunk, now=now, row_offset=rows)
            rows += len(events)
            rejected += int(events["reject_reason"].notna().sum()) if len(events) else 0
            writer.write(events)
    except BaseException:
        writer.abort()
        raise
    return writer.close({"rows_unsendable": rejected})


def map_partition(
    config: PipelineConfig, partition_key: str, events: pd.DataFrame
) -> MappedPartition:
    """Map normalized events into event records, profile records and settled outcomes."""
    return build_records(events, config, partition_key)


def write_records(
    config: PipelineConfig, partition_key: str, events: PartitionTable
) -> MappedTables:
    """Map a normalized events table chunk by chunk into record and outcome tables.

    An event that repeats the (profile, metric, unique_id) of an earlier chunk's event is
    settled as deduplicated once every chunk is written, so the first one wins overall.
    """
    builder = RecordBuilder(
        compile_destination(config), config.normalize, config.ecommerce, partition_key
    )
    event_writer = _writer(config, "klaviyo_event_records", partition_key)
    outcome_writer = _writer(config, "rejected_rows", partition_key)
    profile_writer = _writer(config, "klaviyo_profile_records", partition_key)
    rows_read = 0
    warnings: Counter[str] = Counter()
    try:
        for chunk in events.chunks():
            mapped = builder.build(chunk)
            rows_read += mapped.rows_read
            warnings.update(mapped.warnings)
            event_writer.write(mapped.events)
            outcome_writer.write(mapped.outcomes)
            builder.outcomes.clear()
        profile_writer.write(builder.finish_profiles())
        outcome_writer.write(pd.DataFrame(builder.outcomes, columns=list(OUTCOME_COLUMNS)))
        event_table = event_writer.close()
        duplicates = _drop_cross_chunk_duplicates(event_table)
        outcome_writer.write(duplicates)
    except BaseException:
        for writer in (event_writer, outcome_writer, profile_writer):
            writer.abort()
        raise
    attrs = {"rows_read": rows_read, "warnings": dict(warnings)}
    return MappedTables(
        events=open_table(event_table.path),
        profiles=profile_writer.close(),
        outcomes=outcome_writer.close(attrs),
        rows_read=rows_read,
        warnings=dict(warnings),
    )


def _drop_cross_chunk_duplicates(table: PartitionTable) -> pd.DataFrame:
    """Remove later repeats of an event key from a multi-chunk table; return their outcomes."""
    if len(table.parts) < 2:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    pattern = str(Path(table.path) / "part-*.parquet")
    query = f"""
        SELECT record_id, row_id, metric, unique_id, filename FROM (
            SELECT record_id, row_id, metric, unique_id, filename,
                   row_number() OVER (
                       PARTITION BY profile_key, metric, unique_id ORDER BY row_id, record_id
                   ) AS rank
            FROM read_parquet('{pattern}', filename = true)
            WHERE unique_id IS NOT NULL
        ) WHERE rank > 1
    """
    with duckdb.connect() as connection:
        # The window over every event key of the partition spills to disk past this limit,
        # so the step's memory stays bounded for large partitions.
        connection.execute("SET memory_limit = '256MB'")
        connection.execute(f"SET temp_directory = '{Path(table.path).parent / '.duckdb_tmp'}'")
        repeats = connection.execute(query).df()
    if repeats.empty:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))

    for filename, group in repeats.groupby("filename"):
        chunk = read_part(Path(filename))
        rewrite_part(filename, chunk[~chunk["record_id"].isin(set(group["record_id"]))])
    return pd.DataFrame(
        {
            "row_id": repeats["row_id"].astype("int64"),
            "record_id": repeats["record_id"],
            "stream": "event",
            "status": Status.DEDUPLICATED.value,
            "reason": Reason.DUPLICATE_UNIQUE_ID.value,
            "detail": "an earlier row of this partition has the same profile, metric and unique_id",
            "metric": repeats["metric"],
            "unique_id": repeats["unique_id"],
            "identity": None,
        }
    )


__all__ = [
    "EVENT_COLUMNS",
    "PROFILE_COLUMNS",
    "MappedTables",
    "map_partition",
    "normalize_partition",
    "read_source_events",
    "write_normalized_events",
    "write_records",
    "write_source_events",
]
