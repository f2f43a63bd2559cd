"""Read a partition from PostgreSQL through a server-side cursor, with the window bound."""

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from klaviyo_pipeline.config import ConfigError, SourceConfig, resolve_env
from klaviyo_pipeline.sources.frames import array_to_series
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

# Placeholders are built with NUL marks, which PostgreSQL never accepts in query text, so that
# every "%" of the configured SQL can be escaped before the marks become psycopg placeholders.
_MARK = "\x00"
_MARKED_PLACEHOLDER = re.compile(f"{_MARK}([a-z_]+){_MARK}")

_TIME_KINDS = {
    "timestamptz": TimeKind.TIMESTAMPTZ,
    "timestamp": TimeKind.TIMESTAMP,
    "date": TimeKind.DATE,
    "text": TimeKind.TEXT,
    "varchar": TimeKind.TEXT,
    "bpchar": TimeKind.TEXT,
    **{name: TimeKind.EPOCH for name in ("int2", "int4", "int8", "numeric", "float4", "float8")},
}

POSTGRES_DIALECT = Dialect(
    name="PostgreSQL",
    placeholder=lambda name: f"{_MARK}{name}{_MARK}",
    starts_with_iso_date=lambda column: f"{column} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'",
    time_kinds=_TIME_KINDS,
)

# Arrow types for the PostgreSQL types that have an exact one. Other columns stay the Python
# objects that psycopg returns, such as Decimal for numeric, dict for json and UUID for uuid.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}

_CURSOR_NAME = "klaviyo_pipeline_partition"


def redact_dsn(dsn: str) -> str:
    """Return the connection string with its password replaced by ``***``, for logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(invalid connection string)"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)


def read_postgres_partition(
    source: SourceConfig, window: PartitionWindow, logger: logging.Logger
) -> Iterator[pd.DataFrame]:
    """Yield the rows of `window` in DataFrames of at most `source.chunk_rows` rows."""
    dsn = _resolve_dsn(source)
    with _connect(dsn) as connection:
        plan = plan_postgres_query(connection, source, window)
        where = f", table {source.table}" if source.table else ""
        logger.info("Reading partition %s from PostgreSQL %s%s", window.key, redact_dsn(dsn), where)
        if not plan.window_filter.exact:
            logger.info(
                "Column %r cannot be filtered to the exact window in SQL; the normalizer "
                "drops the rows outside partition %s",
                source.time_column,
                window.key,
            )
        yield from _stream(connection, source, plan)


def count_postgres_partition(source: SourceConfig, window: PartitionWindow) -> int:
    """Count the rows that `read_postgres_partition` reads, without fetching them."""
    with _connect(_resolve_dsn(source)) as connection:
        plan = plan_postgres_query(connection, source, window)
        try:
            row = connection.execute(to_psycopg(plan.count), plan.params).fetchone()
        except psycopg.Error as error:
            raise SourceError(f"{config_key(source)}: counting rows failed: {error}") from error
        return int(row[0]) if row else 0


def to_psycopg(query: str) -> str:
    """Escape every "%" of `query` and turn its marked placeholders into ``%(name)s``."""
    return _MARKED_PLACEHOLDER.sub(r"%(\1)s", query.replace("%", "%%"))


def _resolve_dsn(source: SourceConfig) -> str:
    assert source.dsn is not None  # SourceConfig requires dsn for kind 'postgres'
    dsn = resolve_env(source.dsn)
    if dsn is None:
        raise ConfigError(
            f"source.dsn: environment variable {source.dsn[1:]} is not set; set it to the "
            "PostgreSQL connection string"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ConfigError(
            "source.dsn: invalid PostgreSQL connection string (not shown because it may contain "
            "a password); expected a URL such as 'postgresql://user@host:5432/db' or "
            "'host=... dbname=...'"
        ) from None
    return dsn


@contextmanager
def _connect(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    try:
        connection = psycopg.connect(dsn)
    except psycopg.Error as error:
        raise SourceError(
            f"source.dsn: connecting to PostgreSQL {redact_dsn(dsn)} failed: {error}"
        ) from error
    try:
        connection.read_only = True
        # Session time zone UTC, so timestamptz values arrive as UTC datetimes.
        connection.execute("SET TIME ZONE 'UTC'")
        yield connection
    finally:
        connection.close()


def _relation(source: SourceConfig) -> str:
    if source.table:
        return quote_qualified_name(source.table)
    if source.select and SOURCE_PLACEHOLDER in source.select:
        raise ConfigError(
            "source.table: missing; source.select uses {source}, which is replaced by source.table"
        )
    return ""


def plan_postgres_query(
    connection: psycopg.Connection[Any], source: SourceConfig, window: PartitionWindow
) -> QueryPlan:
    """Plan the partition's queries; their SQL text is ready for `to_psycopg`.

    Raises:
        ConfigError: as `plan_partition_query` does.
        SourceError: if PostgreSQL fails to describe the rows.
    """

    def describe(query: str) -> list[Column]:
        with connection.cursor() as cursor:
            cursor.execute(to_psycopg(f"SELECT * FROM (\n{query}\n) AS source_rows LIMIT 0"), {})
            return [
                Column(column.name, _type_name(connection, column.type_code))
                for column in cursor.description or []
            ]

    try:
        return plan_partition_query(
            source,
            window,
            _relation(source),
            POSTGRES_DIALECT,
            describe,
            lambda column: quote_identifier(column.name),
            lambda column: f"{column}::text",
        )
    except psycopg.Error as error:
        raise SourceError(f"{config_key(source)}: {error}") from error


def _type_name(connection: psycopg.Connection[Any], oid: int) -> str:
    info = connection.adapters.types.get(oid)
    return info.name if info is not None else f"oid {oid}"


def _stream(
    connection: psycopg.Connection[Any], source: SourceConfig, plan: QueryPlan
) -> Iterator[pd.DataFrame]:
    arrow_types = [_ARROW_TYPES.get(column.type_name) for column in plan.columns]
    try:
        with connection.cursor(name=_CURSOR_NAME) as cursor:
            cursor.itersize = source.chunk_rows
            cursor.execute(to_psycopg(plan.select), plan.params)
            while rows := cursor.fetchmany(source.chunk_rows):
                yield _rows_to_frame(rows, plan.columns, arrow_types)
    except psycopg.Error as error:
        raise SourceError(f"{config_key(source)}: reading rows failed: {error}") from error


def _rows_to_frame(
    rows: Sequence[Sequence[Any]], columns: list[Column], arrow_types: list[pa.DataType | None]
) -> pd.DataFrame:
    values_by_column = list(zip(*rows, strict=True))
    data: dict[str, pd.Series] = {}
    for index, column in enumerate(columns):
        values = list(values_by_column[index])
        arrow_type = arrow_types[index]
        if arrow_type is None:
            data[column.name] = pd.Series(values, dtype=object)
        else:
            data[column.name] = array_to_series(pa.array(values, type=arrow_type), column.name)
    return pd.DataFrame(data)
