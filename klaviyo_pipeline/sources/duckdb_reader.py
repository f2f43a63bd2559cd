"""Read a partition through DuckDB, from export files or from a DuckDB database file."""

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources.files import (
    file_relation,
    find_partition_files,
    resolve_location,
)
from klaviyo_pipeline.sources.frames import (
    decode_json_columns,
    json_decoders,
    rebatch,
    table_to_frame,
)
from klaviyo_pipeline.sources.plan import Column, QueryPlan, plan_partition_query
from klaviyo_pipeline.sources.query import (
    SOURCE_PLACEHOLDER,
    SourceError,
    config_key,
    quote_identifier,
    quote_qualified_name,
)
from klaviyo_pipeline.sources.timefilter import Dialect, TimeKind
from klaviyo_pipeline.sources.window import PartitionWindow

_TIME_KINDS = {
    "timestamp with time zone": TimeKind.TIMESTAMPTZ,
    "timestamptz": TimeKind.TIMESTAMPTZ,
    "timestamptz_ns": TimeKind.TIMESTAMPTZ,
    "timestamp": TimeKind.TIMESTAMP,
    "timestamp_s": TimeKind.TIMESTAMP,
    "timestamp_ms": TimeKind.TIMESTAMP,
    "timestamp_ns": TimeKind.TIMESTAMP,
    "date": TimeKind.DATE,
    "varchar": TimeKind.TEXT,
    **{
        name: TimeKind.EPOCH
        for name in (
            "tinyint", "smallint", "integer", "bigint", "hugeint",
            "utinyint", "usmallint", "uinteger", "ubigint", "uhugeint",
            "float", "double", "decimal",
        )
    },
}  # fmt: skip

DUCKDB_DIALECT = Dialect(
    name="DuckDB",
    placeholder=lambda name: f"${name}",
    starts_with_iso_date=lambda column: (
        f"regexp_matches({column}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')"
    ),
    time_kinds=_TIME_KINDS,
    # Observed with DuckDB 2.0.1: the CSV sniffer drops a " UTC" suffix and types the column
    # TIMESTAMP, while "Z" or "+02:00" suffixes give TIMESTAMP WITH TIME ZONE.
    naive_timestamp_hint=(
        ". DuckDB reads CSV text such as '2019-10-01 00:00:00 UTC' as TIMESTAMP without time zone"
    ),
)

# 128-bit integers reach pandas as Python Decimal objects, so they are read as their exact text.
_TEXT_TYPES = frozenset({"hugeint", "uhugeint"})


@dataclass
class _Target:
    """The relation that replaces ``{source}``, its bound parameters and a description for logs."""

    relation: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)


def read_duckdb_partition(
    source: SourceConfig, window: PartitionWindow, base_dir: str, logger: logging.Logger
) -> Iterator[pd.DataFrame]:
    """Yield the rows of `window` in DataFrames of at most `source.chunk_rows` rows."""
    with _connect(source, base_dir) as connection:
        target = _open_target(connection, source, window, base_dir, logger)
        if target is None:
            return

        plan = _plan(connection, source, window, target)
        logger.info("Reading partition %s from %s", window.key, target.description)
        if not plan.window_filter.exact:
            logger.info(
                "Column %r cannot be filtered to the exact window in SQL; the normalizer "
                "drops the rows outside partition %s",
                source.time_column,
                window.key,
            )
        yield from _stream(connection, source, plan, {**target.params, **plan.params})


def count_duckdb_partition(source: SourceConfig, window: PartitionWindow, base_dir: str) -> int:
    """Count the rows that `read_duckdb_partition` reads, without fetching them."""
    logger = logging.getLogger(__name__)
    with _connect(source, base_dir) as connection:
        target = _open_target(connection, source, window, base_dir, logger)
        if target is None:
            return 0
        plan = _plan(connection, source, window, target)
        try:
            rows = _bind(connection, plan.count, {**target.params, **plan.params}).fetchall()
        except duckdb.Error as error:
            raise SourceError(f"{config_key(source)}: counting rows failed: {error}") from error
        return int(rows[0][0])


SOURCE_MEMORY_LIMIT = "512MB"


@contextmanager
def _connect(source: SourceConfig, base_dir: str) -> Iterator[duckdb.DuckDBPyConnection]:
    # A private spill folder, so a large ORDER BY never writes next to the config or the data.
    with tempfile.TemporaryDirectory(prefix="klaviyo_pipeline_duckdb_") as spill_dir:
        # The ORDER BY over the whole partition spills to disk past this limit, so reading
        # takes memory bounded by the limit rather than by the partition.
        config = {"temp_directory": spill_dir, "memory_limit": SOURCE_MEMORY_LIMIT}
        if source.kind == "duckdb":
            connection = _connect_database(source, base_dir, config)
        else:
            connection = duckdb.connect(config=config)
        try:
            # Session time zone UTC, so TIMESTAMP WITH TIME ZONE values reach pandas in UTC.
            connection.sql("SET TimeZone = 'UTC'")
            yield connection
        finally:
            connection.close()


def _connect_database(
    source: SourceConfig, base_dir: str, config: dict[str, str]
) -> duckdb.DuckDBPyConnection:
    assert source.database is not None  # SourceConfig requires database for kind 'duckdb'
    path = resolve_location(source.database, base_dir)
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"source.database: DuckDB database not found: {path}")
    try:
        return duckdb.connect(path, read_only=True, config=config)
    except duckdb.Error as error:
        raise SourceError(f"source.database: could not open {path} read-only: {error}") from error


def _open_target(
    connection: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    window: PartitionWindow,
    base_dir: str,
    logger: logging.Logger,
) -> _Target | None:
    if source.kind == "duckdb":
        return _table_target(source)

    try:
        partition_files = find_partition_files(connection, source, window, base_dir)
    except duckdb.Error as error:
        raise SourceError(f"source.path: listing {source.path!r} failed: {error}") from error
    if not partition_files.files:
        logger.info(
            "No file matches %s for partition %s; the partition is empty",
            partition_files.pattern,
            window.key,
        )
        return None

    count = len(partition_files.files)
    file_format = partition_files.format
    return _Target(
        relation=file_relation(file_format, source.hive_partitioning),
        description=f"{count:,} {file_format} file(s) matching {partition_files.pattern}",
        params={"source_files": partition_files.files},
    )


def _table_target(source: SourceConfig) -> _Target:
    description = f"DuckDB database {source.database}"
    if source.table:
        return _Target(quote_qualified_name(source.table), f"{description}, table {source.table}")
    if source.select and SOURCE_PLACEHOLDER in source.select:
        raise ConfigError(
            "source.table: missing; source.select uses {source}, which is replaced by source.table"
        )
    return _Target("", description)


def _plan(
    connection: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    window: PartitionWindow,
    target: _Target,
) -> QueryPlan:
    def describe(query: str) -> list[Column]:
        relation = _bind(connection, query, target.params)
        return [
            Column(name, str(column_type.id))
            for name, column_type in zip(relation.columns, relation.types, strict=True)
        ]

    def select_item(column: Column) -> str:
        quoted = quote_identifier(column.name)
        if column.type_name in _TEXT_TYPES:
            return f"CAST({quoted} AS VARCHAR) AS {quoted}"
        return quoted

    try:
        return plan_partition_query(
            source, window, target.relation, DUCKDB_DIALECT, describe, select_item, str
        )
    except duckdb.Error as error:
        raise SourceError(f"{config_key(source)}: {error}") from error


def _bind(
    connection: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any]
) -> duckdb.DuckDBPyRelation:
    # DuckDB rejects values for parameters that the query does not use.
    used = {name: value for name, value in params.items() if f"${name}" in query}
    relation = connection.sql(query, params=used or None)
    if relation is None:
        raise ConfigError("source.select: the statement returns no rows; write a SELECT query")
    return relation


def _stream(
    connection: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    plan: QueryPlan,
    params: dict[str, Any],
) -> Iterator[pd.DataFrame]:
    try:
        relation = _bind(connection, plan.select, params)
        decoders = json_decoders(relation.columns, relation.types)
        reader = relation.to_arrow_reader(source.chunk_rows)
        for table in rebatch(reader, reader.schema, source.chunk_rows):
            yield decode_json_columns(table_to_frame(table), decoders)
    except (duckdb.Error, pa.ArrowException) as error:
        raise SourceError(f"{config_key(source)}: reading rows failed: {error}") from error
