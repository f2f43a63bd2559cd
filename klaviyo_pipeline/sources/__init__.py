"""Source readers: one partition's rows from export files, DuckDB or PostgreSQL, in chunks.

`read_partition` pushes the partition window down to the source as SQL with bound parameters.
It yields pandas DataFrames of at most `source.chunk_rows` rows, ordered by the time column and
then by every other column, so a re-run yields the same chunks. Columns are named as
`source.select` or `source.columns` names them; a dotted name such as ``user.id`` is a plain
column name. Values keep the source types: integers become nullable pandas integers (never
float64), 128-bit integers become their decimal text, and timestamps keep their time zone or
its absence. When the time column is text, the rows are a superset of the window (see
`klaviyo_pipeline.sources.timefilter`), and the normalizer filters them to the window.
"""

import logging
from collections.abc import Iterator

import pandas as pd

from klaviyo_pipeline.config import SourceConfig
from klaviyo_pipeline.sources.duckdb_reader import count_duckdb_partition, read_duckdb_partition
from klaviyo_pipeline.sources.postgres_reader import (
    count_postgres_partition,
    read_postgres_partition,
    redact_dsn,
)
from klaviyo_pipeline.sources.query import SourceError
from klaviyo_pipeline.sources.window import PartitionWindow

__all__ = [
    "PartitionWindow",
    "SourceError",
    "count_partition",
    "read_partition",
    "redact_dsn",
]

_LOGGER = logging.getLogger(__name__)


def read_partition(
    source: SourceConfig,
    window: PartitionWindow,
    *,
    base_dir: str = ".",
    logger: logging.Logger | None = None,
) -> Iterator[pd.DataFrame]:
    """Read the rows of one partition window in chunks of at most `source.chunk_rows` rows.

    Yields nothing for an empty partition, which includes a path with a date placeholder that
    matches no file. Local paths are relative to `base_dir`. `logger` defaults to this module's
    logger, and Dagster's ``context.log`` shows the messages in the run. As with any generator,
    the errors below are raised on the first ``next()``, not at the call.

    Raises:
        ConfigError: if the config cannot describe the rows, for example a missing time column or
            a TIMESTAMP column without time zone while `source.timezone` is not set.
        FileNotFoundError: if a path without a date placeholder, or the DuckDB database, is
            missing.
        SourceError: if the engine fails to list, plan or read the rows; it names the config
            key, such as ``source.select``.
    """
    log = logger or _LOGGER
    if source.kind == "postgres":
        chunks = read_postgres_partition(source, window, log)
    else:
        chunks = read_duckdb_partition(source, window, base_dir, log)

    rows = 0
    count = 0
    for chunk in chunks:
        rows += len(chunk)
        count += 1
        yield chunk
    log.info("Read %s rows in %s chunk(s) for partition %s", f"{rows:,}", count, window.key)


def count_partition(source: SourceConfig, window: PartitionWindow, *, base_dir: str = ".") -> int:
    """Count the rows that `read_partition` yields for `window`, without fetching them.

    Raises:
        The same errors as `read_partition`.
    """
    if source.kind == "postgres":
        return count_postgres_partition(source, window)
    return count_duckdb_partition(source, window, base_dir)
