"""Export files of one partition: path templates, file listing, format and hive day pruning."""

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources.window import PartitionWindow

FileFormat = Literal["parquet", "csv", "ndjson", "json"]

DATE_PLACEHOLDERS = ("{date}", "{year}", "{month}", "{day}")

# Extensions after any compression suffix; DuckDB decompresses .gz and .zst itself.
_FORMATS_BY_EXTENSION: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
}
_COMPRESSION_SUFFIXES = (".gz", ".zst")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HIVE_SEGMENT = re.compile(r"([^=]+)=(.*)")


@dataclass(frozen=True)
class PartitionFiles:
    """The files to read for one partition, and the pattern they were listed from."""

    pattern: str
    files: list[str]
    format: FileFormat


def expand_path(template: str, window: PartitionWindow) -> str:
    """Replace ``{date}``, ``{year}``, ``{month}`` and ``{day}`` with the partition day."""
    year, month, day = window.key.split("-")
    values = {"{date}": window.key, "{year}": year, "{month}": month, "{day}": day}
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def names_partition(template: str) -> bool:
    """Tell whether the path template contains a date placeholder."""
    return any(placeholder in template for placeholder in DATE_PLACEHOLDERS)


def resolve_location(value: str, base_dir: str) -> str:
    """Resolve a relative local path against `base_dir`; URLs and absolute paths pass through."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(Path(base_dir) / value)


def detect_format(source: SourceConfig) -> FileFormat:
    """Return the file format from `source.format`, or else from the extension of `source.path`.

    Raises:
        ConfigError: if no format is set and the extension is not a known one.
    """
    path = source.path or ""
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    detected = _FORMATS_BY_EXTENSION.get(os.path.splitext(name)[1])

    if source.format == "ndjson":
        # A .json file contains either one array or one object per line, and DuckDB detects which.
        return "json" if detected == "json" else "ndjson"
    if source.format is not None:
        return source.format
    if detected is None:
        raise ConfigError(
            f"source.format: missing, and the extension of source.path {path!r} is not one of "
            f"{', '.join(_FORMATS_BY_EXTENSION)}; set source.format to parquet, csv or ndjson"
        )
    return detected


def list_files(connection: duckdb.DuckDBPyConnection, pattern: str) -> list[str]:
    """List the files that match a glob, sorted, with DuckDB's file systems (local, s3://, ...)."""
    rows = connection.sql("SELECT file FROM glob($pattern)", params={"pattern": pattern})
    return sorted(row[0] for row in rows.fetchall())


def find_partition_files(
    connection: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    window: PartitionWindow,
    base_dir: str,
) -> PartitionFiles:
    """List the files of the partition; an empty list means an empty partition.

    Raises:
        FileNotFoundError: if nothing matches a path without a date placeholder.
        ConfigError: if neither `source.format` nor the extension gives the format.
    """
    assert source.path is not None  # SourceConfig requires path for kind 'files'
    file_format = detect_format(source)
    pattern = resolve_location(expand_path(source.path, window), base_dir)
    files = list_files(connection, pattern)

    if not files and not names_partition(source.path):
        raise FileNotFoundError(f"source.path: no file matches {pattern}")
    if source.hive_partitioning and not names_partition(source.path):
        files = prune_hive_days(files, window, source)
    return PartitionFiles(pattern=pattern, files=files, format=file_format)


def hive_day(path: str) -> date | None:
    """Return the day named by the hive folders of `path`, such as ``dt=2019-10-01``.

    A folder whose value is a YYYY-MM-DD day names it, and so do ``year=``, ``month=`` and
    ``day=`` folders together. Returns None when the folders name no day.
    """
    values: dict[str, str] = {}
    for segment in path.replace("\\", "/").split("/")[:-1]:
        match = _HIVE_SEGMENT.fullmatch(segment)
        if match:
            values[match.group(1).lower()] = match.group(2)

    for value in values.values():
        if _ISO_DAY.fullmatch(value):
            return date.fromisoformat(value)

    parts = [values.get(key, "") for key in ("year", "month", "day")]
    if all(part.isdigit() for part in parts):
        try:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError:
            return None
    return None


def prune_hive_days(files: list[str], window: PartitionWindow, source: SourceConfig) -> list[str]:
    """Keep the files whose hive day falls in the window, and those whose folders name no day.

    Hive days are read as calendar days in `source.timezone`, or in the partition timezone
    when it is not set.
    """
    zone = ZoneInfo(source.timezone) if source.timezone else window.timezone
    first, last = window.days(zone)
    selected = []
    for path in files:
        day = hive_day(path)
        if day is None or first <= day <= last:
            selected.append(path)
    return selected


def file_relation(file_format: FileFormat, hive_partitioning: bool) -> str:
    """Return the DuckDB table function that reads the files bound to ``$source_files``.

    CSV and JSON columns get DuckDB's type detection. `union_by_name` lines up files whose
    columns differ in order or presence.

    NOTE: DuckDB detects CSV types from a sample of rows, so a later value that does not fit
    (such as a 20-digit id in a BIGINT column) fails the read. The config has no field yet to
    pass `types` or `sample_size`. DuckDB 2.0.1 reads JSON integers above 2**64 - 1 as DOUBLE,
    which loses digits.
    """
    hive = "true" if hive_partitioning else "false"
    options = f"hive_partitioning = {hive}, union_by_name = true"
    if file_format == "parquet":
        return f"read_parquet($source_files, {options})"
    if file_format == "csv":
        return f"read_csv($source_files, {options})"
    json_format = "newline_delimited" if file_format == "ndjson" else "auto"
    return f"read_json($source_files, format = '{json_format}', {options})"
