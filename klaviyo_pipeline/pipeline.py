"""Plain functions behind each asset: read, normalize, map. Dagster code only wires them."""

import logging
from datetime import datetime

import pandas as pd

from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.normalized_events import normalize_events
from klaviyo_pipeline.records import MappedPartition, build_records
from klaviyo_pipeline.sources import PartitionWindow, read_partition


def partition_window(config: PipelineConfig, partition_key: str) -> PartitionWindow:
    """Return the time window of a daily partition in the config's partition timezone."""
    return PartitionWindow.for_day(partition_key, config.partitions.timezone)


def read_source_events(
    config: PipelineConfig, partition_key: str, logger: logging.Logger | None = None
) -> pd.DataFrame:
    """Read every source row of one partition into one DataFrame."""
    window = partition_window(config, partition_key)
    chunks = list(read_partition(config.source, window, base_dir=config.base_dir, logger=logger))
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True)


def normalize_partition(
    config: PipelineConfig,
    partition_key: str,
    source_events: pd.DataFrame,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Normalize one partition's source rows, keeping the rows whose instant is in it."""
    window = partition_window(config, partition_key)
    return normalize_events(
        source_events,
        time_column=config.source.time_column
        if config.source.time_column in source_events.columns
        else "timestamp",
        timestamp_unit=config.source.timestamp_unit,
        source_timezone=config.source.timezone,
        window=(window.start, window.end),
        now=now,
    )


def map_partition(
    config: PipelineConfig, partition_key: str, events: pd.DataFrame
) -> MappedPartition:
    """Map normalized events into event records, profile records and settled outcomes."""
    return build_records(events, config, partition_key)
