"""Partition window: the half-open time range of one daily partition, and its SQL bounds."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY_KEY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _parse_day_key(key: str) -> date:
    if not _DAY_KEY.fullmatch(key):
        raise ValueError(f"invalid partition key {key!r}: expected a day as YYYY-MM-DD")
    try:
        return date.fromisoformat(key)
    except ValueError as error:
        raise ValueError(f"invalid partition key {key!r}: {error}") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"invalid timezone {name!r}: expected an IANA timezone such as 'UTC' or 'Europe/Berlin'"
        ) from error


def _to_epoch(moment: datetime, unit: str) -> int:
    microseconds = (moment - _EPOCH) // timedelta(microseconds=1)
    return microseconds * _UNITS_PER_SECOND[unit] // 1_000_000


@dataclass(frozen=True)
class PartitionWindow:
    """Time range of one partition: `start` inclusive, `end` exclusive, both timezone-aware."""

    key: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            raise ValueError(f"partition {self.key}: start and end must be timezone-aware")
        if self.start >= self.end:
            raise ValueError(
                f"partition {self.key}: start {self.start} is not before end {self.end}"
            )

    @classmethod
    def for_day(cls, key: str, timezone: str = "UTC") -> "PartitionWindow":
        """Build the window from midnight of day `key` to the next midnight in `timezone`.

        The next midnight is computed on the calendar, so a day with a DST change lasts 23 or
        25 hours.

        Raises:
            ValueError: if `key` is not a YYYY-MM-DD day or `timezone` is not an IANA name.
        """
        day = _parse_day_key(key)
        zone = _zone(timezone)
        start = datetime(day.year, day.month, day.day, tzinfo=zone)
        following = day + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=zone)
        return cls(key=key, start=start, end=end)

    @property
    def timezone(self) -> tzinfo:
        """Timezone of the partition's day boundaries."""
        zone = self.start.tzinfo
        assert zone is not None  # enforced by __post_init__
        return zone

    def naive_bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """Return start and end as wall-clock times without offset in `timezone`.

        NOTE: a wall time repeated by a DST fall-back matches a bound in both occurrences, so a
        bound inside the repeated hour can include rows from the hour before or after it.
        """
        zone = _zone(timezone)
        start = self.start.astimezone(zone).replace(tzinfo=None)
        end = self.end.astimezone(zone).replace(tzinfo=None)
        return start, end

    def epoch_bounds(self, unit: str) -> tuple[int, int]:
        """Return start and end as integer epoch offsets in `unit` (s, ms, us or ns)."""
        return _to_epoch(self.start, unit), _to_epoch(self.end, unit)

    def days(self, timezone: tzinfo) -> tuple[date, date]:
        """Return the first and last calendar day in `timezone` that the window overlaps."""
        first = self.start.astimezone(timezone).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(timezone).date()
        return first, last

    def utc_days_with_margin(self) -> tuple[date, date]:
        """Return the UTC days of the window widened by one day on each side.

        UTC offsets range from -12:00 to +14:00, so a local ISO date written anywhere for a
        moment in the window falls inside this range.
        """
        first, last = self.days(UTC)
        return first - timedelta(days=1), last + timedelta(days=1)
