"""PartitionWindow: day bounds in UTC and other timezones, and their SQL forms."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from klaviyo_pipeline.sources import PartitionWindow

BERLIN = ZoneInfo("Europe/Berlin")


def test_for_day_utc_bounds() -> None:
    window = PartitionWindow.for_day("2019-10-01")

    assert window.start == datetime(2019, 10, 1, tzinfo=UTC)
    assert window.end == datetime(2019, 10, 2, tzinfo=UTC)
    assert window.key == "2019-10-01"


def test_for_day_berlin_bounds() -> None:
    window = PartitionWindow.for_day("2019-10-01", "Europe/Berlin")

    assert window.start == datetime(2019, 9, 30, 22, tzinfo=UTC)
    assert window.end == datetime(2019, 10, 1, 22, tzinfo=UTC)
    assert window.start.tzinfo == BERLIN


def test_for_day_dst_day_lengths() -> None:
    # Berlin leaves summer time on 2019-10-27 and enters it on 2019-03-31.
    autumn = PartitionWindow.for_day("2019-10-27", "Europe/Berlin")
    spring = PartitionWindow.for_day("2019-03-31", "Europe/Berlin")

    # Python subtracts datetimes of one tzinfo as wall times, so compare them in UTC.
    assert autumn.end.astimezone(UTC) - autumn.start.astimezone(UTC) == timedelta(hours=25)
    assert spring.end.astimezone(UTC) - spring.start.astimezone(UTC) == timedelta(hours=23)


@pytest.mark.parametrize("key", ["20191001", "2019-13-01", "2019-10-1", "yesterday"])
def test_for_day_invalid_key(key: str) -> None:
    with pytest.raises(ValueError, match="invalid partition key"):
        PartitionWindow.for_day(key)


def test_for_day_invalid_timezone() -> None:
    with pytest.raises(ValueError, match="invalid timezone 'Mars/Olympus'"):
        PartitionWindow.for_day("2019-10-01", "Mars/Olympus")


def test_window_rejects_naive_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PartitionWindow("2019-10-01", datetime(2019, 10, 1), datetime(2019, 10, 2))


def test_window_rejects_empty_range() -> None:
    moment = datetime(2019, 10, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="is not before end"):
        PartitionWindow("2019-10-01", moment, moment)


def test_naive_bounds_in_other_zone() -> None:
    window = PartitionWindow.for_day("2019-10-01")

    start, end = window.naive_bounds("America/New_York")

    assert start == datetime(2019, 9, 30, 20)
    assert end == datetime(2019, 10, 1, 20)
    assert start.tzinfo is None


@pytest.mark.parametrize(
    ("unit", "start", "end"),
    [
        ("s", 1_569_888_000, 1_569_974_400),
        ("ms", 1_569_888_000_000, 1_569_974_400_000),
        ("us", 1_569_888_000_000_000, 1_569_974_400_000_000),
        ("ns", 1_569_888_000_000_000_000, 1_569_974_400_000_000_000),
    ],
)
def test_epoch_bounds_per_unit(unit: str, start: int, end: int) -> None:
    window = PartitionWindow.for_day("2019-10-01")

    assert window.epoch_bounds(unit) == (start, end)


def test_days_across_zones() -> None:
    window = PartitionWindow.for_day("2019-10-01", "Europe/Berlin")

    assert window.days(BERLIN) == (date(2019, 10, 1), date(2019, 10, 1))
    assert window.days(UTC) == (date(2019, 9, 30), date(2019, 10, 1))
    assert window.utc_days_with_margin() == (date(2019, 9, 29), date(2019, 10, 2))
