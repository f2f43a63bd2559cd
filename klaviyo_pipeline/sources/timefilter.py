"""SQL predicate that pushes a partition window down to the source's time column.

How exact the predicate is depends on the column type:

- TIMESTAMP WITH TIME ZONE: compared with the timezone-aware window bounds. Exact.
- TIMESTAMP (no time zone): compared with the window bounds as wall times in
  ``source.timezone``. Exact, and a configuration error when ``source.timezone`` is not set.
- DATE: the calendar days the window overlaps in ``source.timezone`` (or, when unset, the
  partition timezone). Exact when both timezones are the same.
- Integer or floating-point epoch in ``source.timestamp_unit``: compared with the window bounds
  converted to that unit. Exact.
- Text: rows whose text starts with an ISO date (YYYY-MM-DD) within one day of the window's UTC
  days, plus every non-NULL row that does not start with an ISO date. The offsets inside the
  text are not parsed here, so this is a superset and the normalizer filters to the window.

Rows whose time is NULL fall in no window and are never read.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources.window import PartitionWindow


class TimeKind(StrEnum):
    """How the time column stores a moment, which decides the window predicate."""

    TIMESTAMPTZ = "timestamptz"
    TIMESTAMP = "timestamp"
    DATE = "date"
    TEXT = "text"
    EPOCH = "epoch"


@dataclass(frozen=True)
class Dialect:
    """The SQL details that differ between DuckDB and PostgreSQL."""

    name: str
    placeholder: Callable[[str], str]
    starts_with_iso_date: Callable[[str], str]
    time_kinds: Mapping[str, TimeKind]
    naive_timestamp_hint: str = ""


@dataclass(frozen=True)
class WindowFilter:
    """A predicate on the time column with its bound parameter values."""

    predicate: str
    params: dict[str, Any]
    exact: bool


def classify_time_column(
    source: SourceConfig, type_name: str, dialect: Dialect, origin: str
) -> TimeKind:
    """Return the kind of the time column from its SQL type name.

    Raises:
        ConfigError: if the type cannot store a time, or if it is a TIMESTAMP without time zone and
            `source.timezone` is not set.
    """
    kind = dialect.time_kinds.get(type_name.lower())
    if kind is None:
        raise ConfigError(
            f"source.time_column: column {source.time_column!r} in {origin} has type "
            f"{type_name.upper()}; expected a timestamp, a date, ISO 8601 text or an epoch number"
        )
    if kind is TimeKind.TIMESTAMP and source.timezone is None:
        raise ConfigError(
            f"source.timezone: missing; column {source.time_column!r} in {origin} is a "
            f"{dialect.name} {type_name.upper()} without time zone, so set source.timezone to "
            f"the IANA timezone its values are written in, for example 'UTC'"
            f"{dialect.naive_timestamp_hint}"
        )
    return kind


def build_window_filter(
    kind: TimeKind,
    column: str,
    window: PartitionWindow,
    source: SourceConfig,
    dialect: Dialect,
) -> WindowFilter:
    """Build the predicate that keeps the rows of `window`; `column` is the quoted column."""
    start, end = dialect.placeholder("window_start"), dialect.placeholder("window_end")
    half_open = f"{column} >= {start} AND {column} < {end}"

    if kind is TimeKind.TIMESTAMPTZ:
        params = {"window_start": window.start, "window_end": window.end}
        return WindowFilter(half_open, params, exact=True)

    if kind is TimeKind.TIMESTAMP:
        assert source.timezone is not None  # checked by classify_time_column
        naive_start, naive_end = window.naive_bounds(source.timezone)
        params = {"window_start": naive_start, "window_end": naive_end}
        return WindowFilter(half_open, params, exact=True)

    if kind is TimeKind.EPOCH:
        epoch_start, epoch_end = window.epoch_bounds(source.timestamp_unit)
        params = {"window_start": epoch_start, "window_end": epoch_end}
        return WindowFilter(half_open, params, exact=True)

    if kind is TimeKind.DATE:
        return _date_filter(column, window, source, dialect)

    return _text_filter(column, window, dialect)


def _date_filter(
    column: str, window: PartitionWindow, source: SourceConfig, dialect: Dialect
) -> WindowFilter:
    zone = ZoneInfo(source.timezone) if source.timezone else window.timezone
    first, last = window.days(zone)
    first_day, last_day = dialect.placeholder("first_day"), dialect.placeholder("last_day")
    predicate = f"{column} >= {first_day} AND {column} <= {last_day}"
    exact = _is_midnight(window.start, zone) and _is_midnight(window.end, zone)
    return WindowFilter(predicate, {"first_day": first, "last_day": last}, exact=exact)


def _is_midnight(moment: datetime, zone: tzinfo) -> bool:
    return moment.astimezone(zone).time() == time(0)


def _text_filter(column: str, window: PartitionWindow, dialect: Dialect) -> WindowFilter:
    first, last = window.utc_days_with_margin()
    first_day, last_day = dialect.placeholder("first_day"), dialect.placeholder("last_day")
    date_part = f"substr({column}, 1, 10)"
    predicate = (
        f"{column} IS NOT NULL AND (NOT ({dialect.starts_with_iso_date(column)}) "
        f"OR ({date_part} >= {first_day} AND {date_part} <= {last_day}))"
    )
    params = {"first_day": first.isoformat(), "last_day": last.isoformat()}
    return WindowFilter(predicate, params, exact=False)
