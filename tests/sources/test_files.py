"""Reading export files through DuckDB: windows, types, chunks, globs, hive folders and errors."""

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources import PartitionWindow, SourceError, count_partition, read_partition
from tests.sources.conftest import REES46_SAMPLE, REES46_SELECT, read_all, utc, write_parquet

DAY = PartitionWindow.for_day("2019-10-01")
MICROSECOND = timedelta(microseconds=1)


def files_source(path: str, **fields: object) -> SourceConfig:
    return SourceConfig(kind="files", path=path, **fields)  # type: ignore[arg-type]


def write_events(path: Path, times: list[datetime], timezone: str | None = "UTC") -> Path:
    """Write one Parquet file of events with ids 0..n-1 at `times`."""
    return write_parquet(
        path,
        {
            "id": pa.array(range(len(times)), pa.int64()),
            "timestamp": pa.array(times, pa.timestamp("us", tz=timezone)),
        },
    )


# Window boundaries: start is inclusive, end is exclusive.


def test_timestamptz_utc_window_bounds(tmp_path: Path) -> None:
    times = [
        DAY.start - MICROSECOND,  # 0: just before the day
        DAY.start,  # 1: first instant of the day
        utc(2019, 10, 1, 12),  # 2
        DAY.end - MICROSECOND,  # 3: last instant of the day
        DAY.end,  # 4: first instant of the next day
    ]
    write_events(tmp_path / "events.parquet", times)

    frame = read_all(files_source("events.parquet"), DAY, tmp_path)

    assert frame["id"].tolist() == [1, 2, 3]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"


def test_timestamptz_berlin_window_bounds(tmp_path: Path) -> None:
    window = PartitionWindow.for_day("2019-10-01", "Europe/Berlin")
    times = [
        utc(2019, 9, 30, 21, 59, 59, 999_999),  # 0: 23:59:59.999999 in Berlin on 09-30
        utc(2019, 9, 30, 22),  # 1: midnight in Berlin
        utc(2019, 10, 1, 21, 59, 59, 999_999),  # 2: last instant of 10-01 in Berlin
        utc(2019, 10, 1, 22),  # 3: midnight of 10-02 in Berlin
    ]
    write_events(tmp_path / "events.parquet", times)

    frame = read_all(files_source("events.parquet"), window, tmp_path)

    assert frame["id"].tolist() == [1, 2]


def test_naive_timestamps_use_source_timezone(tmp_path: Path) -> None:
    # The UTC day 2019-10-01 is [2019-09-30 20:00, 2019-10-01 20:00) in New York wall time.
    times = [
        datetime(2019, 9, 30, 19, 59, 59, 999_999),  # 0: out
        datetime(2019, 9, 30, 20),  # 1: in
        datetime(2019, 10, 1, 0, 30),  # 2: in
        datetime(2019, 10, 1, 19, 59, 59, 999_999),  # 3: in
        datetime(2019, 10, 1, 20),  # 4: out
    ]
    write_events(tmp_path / "events.parquet", times, timezone=None)
    source = files_source("events.parquet", timezone="America/New_York")

    frame = read_all(source, DAY, tmp_path)

    assert frame["id"].tolist() == [1, 2, 3]
    assert str(frame["timestamp"].dtype) == "datetime64[us]"


def test_naive_timestamps_need_timezone(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [datetime(2019, 10, 1)], timezone=None)

    with pytest.raises(ConfigError, match=r"source\.timezone: missing") as raised:
        read_all(files_source("events.parquet"), DAY, tmp_path)

    assert "'timestamp'" in str(raised.value)
    assert "without time zone" in str(raised.value)


def test_nanosecond_timestamps_filtered(tmp_path: Path) -> None:
    start_ns = 1_569_888_000_000_000_000
    write_parquet(
        tmp_path / "events.parquet",
        {
            "id": [0, 1, 2],
            "timestamp": pa.array(
                [start_ns - 1, start_ns, start_ns + 1], pa.timestamp("ns", "UTC")
            ),
        },
    )

    frame = read_all(files_source("events.parquet"), DAY, tmp_path)

    assert frame["id"].tolist() == [1, 2]
    assert frame["timestamp"].iloc[1].nanosecond == 1


# Chunks and order.


def test_chunks_of_seven_over_fifty_rows(tmp_path: Path) -> None:
    times = [utc(2019, 10, 1, 0, minute) for minute in range(50)]
    # Written in reverse, so the order of the output comes from the ORDER BY.
    write_events(tmp_path / "events.parquet", list(reversed(times)))
    source = files_source("events.parquet", chunk_rows=7)

    chunks = list(read_partition(source, DAY, base_dir=str(tmp_path)))

    assert [len(chunk) for chunk in chunks] == [7, 7, 7, 7, 7, 7, 7, 1]
    read_times = pd.concat(chunks)["timestamp"].tolist()
    assert read_times == sorted(read_times)
    assert len(set(read_times)) == 50


def test_rerun_gives_same_chunks(tmp_path: Path) -> None:
    # Ten rows share each timestamp, so only the tie-break on the other columns fixes the order.
    rows = [
        (utc(2019, 10, 1, hour), f"user-{(hour * 7 + n) % 10}")
        for hour in range(3)
        for n in range(10)
    ]
    write_parquet(
        tmp_path / "events.parquet",
        {
            "timestamp": pa.array([row[0] for row in rows], pa.timestamp("us", "UTC")),
            "user": [row[1] for row in rows],
        },
    )
    source = files_source("events.parquet", chunk_rows=4)

    first = list(read_partition(source, DAY, base_dir=str(tmp_path)))
    second = list(read_partition(source, DAY, base_dir=str(tmp_path)))

    assert len(first) == len(second) == 8
    for first_chunk, second_chunk in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(first_chunk, second_chunk)
    whole = pd.concat(first, ignore_index=True)
    expected = whole.sort_values(["timestamp", "user"], ignore_index=True)
    pd.testing.assert_frame_equal(whole, expected)


def test_empty_window_yields_nothing(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 1)])
    source = files_source("events.parquet")
    window = PartitionWindow.for_day("2019-10-02")

    assert list(read_partition(source, window, base_dir=str(tmp_path))) == []
    assert count_partition(source, window, base_dir=str(tmp_path)) == 0


# Types: ids stay exact.


def test_csv_big_ids_stay_exact(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "timestamp,category_id,user_id,order_ref,price\n"
        "2019-10-01 00:00:00+00,2103807459595387724,541312140,12345678901234567890,35.79\n"
        "2019-10-01 00:00:01+00,2053013552326770905,,22345678901234567891,33.20\n"
    )

    frame = read_all(files_source("events.csv"), DAY, tmp_path)

    assert frame["category_id"].tolist() == [2103807459595387724, 2053013552326770905]
    assert str(frame["category_id"].dtype) == "Int64"
    assert frame["user_id"].iloc[0] == 541312140
    assert frame["user_id"].isna().iloc[1]
    assert str(frame["user_id"].dtype) == "Int64"
    # Above the int64 maximum, DuckDB types the column HUGEINT; the reader returns its text.
    assert frame["order_ref"].tolist() == ["12345678901234567890", "22345678901234567891"]
    assert frame["price"].tolist() == [35.79, 33.2]


def test_parquet_int_ids_with_nulls(tmp_path: Path) -> None:
    write_parquet(
        tmp_path / "events.parquet",
        {
            "timestamp": pa.array(
                [utc(2019, 10, 1, 1), utc(2019, 10, 1, 2)], pa.timestamp("us", "UTC")
            ),
            "user_id": pa.array([9_223_372_036_854_775_807, None], pa.int64()),
        },
    )

    frame = read_all(files_source("events.parquet"), DAY, tmp_path)

    assert str(frame["user_id"].dtype) == "Int64"
    assert frame["user_id"].iloc[0] == 9_223_372_036_854_775_807
    assert frame["user_id"].isna().iloc[1]


def test_ndjson_ids_and_nested_fields(tmp_path: Path) -> None:
    lines = [
        {"timestamp": "2019-10-01T10:00:00Z", "user": {"id": 2103807459595387724}, "tags": ["a"]},
        {"timestamp": "2019-10-01T11:00:00Z", "user": {"id": 1}, "tags": []},
    ]
    (tmp_path / "events.ndjson").write_text("\n".join(json.dumps(line) for line in lines))

    frame = read_all(files_source("events.ndjson"), DAY, tmp_path)

    assert frame["user"].tolist() == [{"id": 2103807459595387724}, {"id": 1}]
    assert frame["tags"].iloc[0].tolist() == ["a"]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"


# REES46 sample: event_time is text such as "2019-10-01 00:00:00 UTC".


def rees46_source(**fields: object) -> SourceConfig:
    fields.setdefault("timezone", "UTC")
    return files_source(str(REES46_SAMPLE), select=REES46_SELECT, **fields)


def test_rees46_reads_all_rows_of_day() -> None:
    source = rees46_source()

    frame = read_all(source, DAY)

    assert len(frame) == 1_000
    assert count_partition(source, DAY) == 1_000
    assert frame.columns.tolist() == [
        "id", "name", "timestamp", "user.id", "data.id", "data.brand", "data.price",
    ]  # fmt: skip
    assert frame["id"].is_unique
    assert frame["name"].value_counts().to_dict() == {"view": 987, "purchase": 10, "cart": 3}
    assert frame["timestamp"].min() == pd.Timestamp("2019-10-01 00:00:00")
    assert frame["timestamp"].max() == pd.Timestamp("2019-10-01 00:17:26")


def test_rees46_ids_are_integers() -> None:
    frame = read_all(rees46_source(), DAY)

    assert str(frame["user.id"].dtype) == "Int64"
    assert str(frame["data.id"].dtype) == "Int64"
    assert frame["user.id"].iloc[0] in {541312140, 554748717}


def test_rees46_category_id_exact() -> None:
    source = files_source(str(REES46_SAMPLE), timezone="UTC", time_column="event_time")

    frame = read_all(source, DAY)

    assert str(frame["category_id"].dtype) == "Int64"
    assert 2103807459595387724 in set(frame["category_id"])


def test_rees46_next_day_is_empty() -> None:
    window = PartitionWindow.for_day("2019-10-02")

    assert list(read_partition(rees46_source(), window)) == []
    assert count_partition(rees46_source(), window) == 0


def test_rees46_partition_timezone_shifts_day() -> None:
    # The sample covers 00:00 to 00:17 UTC on 2019-10-01, which is 2019-09-30 in New York.
    new_york_day = PartitionWindow.for_day("2019-09-30", "America/New_York")
    new_york_next = PartitionWindow.for_day("2019-10-01", "America/New_York")

    assert count_partition(rees46_source(), new_york_day) == 1_000
    assert count_partition(rees46_source(), new_york_next) == 0


def test_rees46_without_timezone_fails() -> None:
    with pytest.raises(ConfigError, match=r"source\.timezone: missing") as raised:
        read_all(rees46_source(timezone=None), DAY)

    assert "2019-10-01 00:00:00 UTC" in str(raised.value)


# Paths: {date} templates, hive folders, missing files.


def write_csv_day(path: Path, day: str, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{day} 0{hour}:00:00+00,{day}-{hour}" for hour in range(count)]
    path.write_text("timestamp,event_id\n" + "\n".join(rows) + "\n")


def test_date_glob_reads_only_that_day(tmp_path: Path) -> None:
    write_csv_day(tmp_path / "exports" / "2019-10-01" / "part-0.csv", "2019-10-01", 2)
    write_csv_day(tmp_path / "exports" / "2019-10-01" / "part-1.csv", "2019-10-01", 1)
    write_csv_day(tmp_path / "exports" / "2019-10-02" / "part-0.csv", "2019-10-02", 3)
    source = files_source("exports/{date}/*.csv")

    frame = read_all(source, DAY, tmp_path)

    assert sorted(frame["event_id"]) == ["2019-10-01-0", "2019-10-01-0", "2019-10-01-1"]


def test_year_month_day_template(tmp_path: Path) -> None:
    for day in ("01", "02"):
        line = json.dumps({"timestamp": f"2019-10-{day}T05:00:00Z", "day": day})
        path = tmp_path / "2019" / "10" / f"{day}.ndjson"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line + "\n")

    frame = read_all(files_source("{year}/{month}/{day}.ndjson"), DAY, tmp_path)

    assert frame["day"].tolist() == ["01"]


def test_date_glob_without_files_is_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_csv_day(tmp_path / "exports" / "2019-10-01" / "part-0.csv", "2019-10-01", 1)
    source = files_source("exports/{date}/*.csv")
    window = PartitionWindow.for_day("2019-10-03")
    logger = logging.getLogger("tests.sources")

    with caplog.at_level(logging.INFO, logger="tests.sources"):
        chunks = list(read_partition(source, window, base_dir=str(tmp_path), logger=logger))

    assert chunks == []
    assert "exports/2019-10-03/*.csv" in caplog.text
    assert "the partition is empty" in caplog.text
    assert count_partition(source, window, base_dir=str(tmp_path)) == 0


def test_missing_fixed_file_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"source\.path: no file matches .*events\.csv"):
        read_all(files_source("events.csv"), DAY, tmp_path)


def test_fixed_glob_without_match_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"exports/\*\.parquet"):
        read_all(files_source("exports/*.parquet"), DAY, tmp_path)


def write_hive_days(root: Path) -> None:
    write_events(
        root / "dt=2019-10-01" / "part-0.parquet", [utc(2019, 10, 1, 1), utc(2019, 10, 1, 2)]
    )
    write_events(root / "dt=2019-10-02" / "part-0.parquet", [utc(2019, 10, 2, 1)])
    # Not Parquet: reading it fails, so a passing read proves that the folder was skipped.
    (root / "dt=2019-10-03").mkdir()
    (root / "dt=2019-10-03" / "part-0.parquet").write_text("not parquet")


def test_hive_reads_only_partition_folder(tmp_path: Path) -> None:
    write_hive_days(tmp_path / "events")
    source = files_source("events/dt=*/*.parquet", hive_partitioning=True)

    frame = read_all(source, DAY, tmp_path)

    assert frame["id"].tolist() == [0, 1]
    assert frame["dt"].tolist() == [date(2019, 10, 1), date(2019, 10, 1)]


def test_hive_recursive_glob(tmp_path: Path) -> None:
    write_hive_days(tmp_path / "events")
    source = files_source("events/**/*.parquet", hive_partitioning=True)

    frame = read_all(source, PartitionWindow.for_day("2019-10-02"), tmp_path)

    assert frame["timestamp"].tolist() == [pd.Timestamp("2019-10-02 01:00", tz="UTC")]


def test_hive_folder_read_when_selected(tmp_path: Path) -> None:
    write_hive_days(tmp_path / "events")
    source = files_source("events/dt=*/*.parquet", hive_partitioning=True)

    with pytest.raises(SourceError, match=r"source\.path"):
        read_all(source, PartitionWindow.for_day("2019-10-03"), tmp_path)


def test_hive_day_without_folder_is_empty(tmp_path: Path) -> None:
    write_hive_days(tmp_path / "events")
    source = files_source("events/dt=*/*.parquet", hive_partitioning=True)

    assert read_all(source, PartitionWindow.for_day("2019-10-09"), tmp_path).empty


def test_hive_days_in_source_timezone(tmp_path: Path) -> None:
    # The Berlin day 2019-10-02 starts at 2019-10-01 22:00 UTC, inside the UTC folder of 10-01.
    write_events(tmp_path / "events" / "dt=2019-10-01" / "part-0.parquet", [utc(2019, 10, 1, 23)])
    write_events(tmp_path / "events" / "dt=2019-10-02" / "part-0.parquet", [utc(2019, 10, 2, 1)])
    window = PartitionWindow.for_day("2019-10-02", "Europe/Berlin")
    utc_folders = files_source("events/dt=*/*.parquet", hive_partitioning=True, timezone="UTC")
    berlin_folders = files_source("events/dt=*/*.parquet", hive_partitioning=True)

    assert len(read_all(utc_folders, window, tmp_path)) == 2
    assert len(read_all(berlin_folders, window, tmp_path)) == 1


def test_hive_year_month_day_folders(tmp_path: Path) -> None:
    write_events(tmp_path / "year=2019" / "month=10" / "day=1" / "a.parquet", [utc(2019, 10, 1, 3)])
    (tmp_path / "year=2019" / "month=10" / "day=2").mkdir(parents=True)
    (tmp_path / "year=2019" / "month=10" / "day=2" / "a.parquet").write_text("not parquet")
    source = files_source("year=*/month=*/day=*/*.parquet", hive_partitioning=True)

    frame = read_all(source, DAY, tmp_path)

    assert frame["id"].tolist() == [0]


def test_hive_with_date_template(tmp_path: Path) -> None:
    write_hive_days(tmp_path / "events")
    source = files_source("events/dt={date}/*.parquet", hive_partitioning=True)

    frame = read_all(source, DAY, tmp_path)

    assert frame["id"].tolist() == [0, 1]


# Time columns that SQL cannot compare directly.


def test_text_times_read_superset(tmp_path: Path) -> None:
    write_parquet(
        tmp_path / "events.parquet",
        {
            "id": [0, 1, 2, 3, 4, 5],
            "timestamp": [
                "2019-10-01T12:00:00Z",  # 0: in the window
                "2019-10-01T00:30:00+02:00",  # 1: 2019-09-30 22:30 UTC, kept for the normalizer
                "2019-10-05T00:00:00Z",  # 2: days away, dropped
                "01/10/2019 12:00",  # 3: not ISO, kept for the normalizer
                None,  # 4: no time, dropped
                "2019-09-28T23:00:00Z",  # 5: more than a day before, dropped
            ],
        },
    )

    frame = read_all(files_source("events.parquet"), DAY, tmp_path)

    assert sorted(frame["id"]) == [0, 1, 3]


@pytest.mark.parametrize(
    ("unit", "scale"),
    [("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)],
)
def test_epoch_times_filtered_exactly(tmp_path: Path, unit: str, scale: int) -> None:
    start, end = 1_569_888_000 * scale, 1_569_974_400 * scale
    write_parquet(
        tmp_path / "events.parquet",
        {"id": [0, 1, 2, 3], "timestamp": pa.array([start - 1, start, end - 1, end], pa.int64())},
    )
    source = files_source("events.parquet", timestamp_unit=unit)

    frame = read_all(source, DAY, tmp_path)

    assert frame["id"].tolist() == [1, 2]


def test_float_epoch_seconds(tmp_path: Path) -> None:
    start = 1_569_888_000.0
    write_parquet(
        tmp_path / "events.parquet",
        {"id": [0, 1, 2], "timestamp": [start - 0.5, start, start + 86_399.5]},
    )
    source = files_source("events.parquet", timestamp_unit="s")

    assert read_all(source, DAY, tmp_path)["id"].tolist() == [1, 2]


def test_date_time_column(tmp_path: Path) -> None:
    write_parquet(
        tmp_path / "events.parquet",
        {"id": [0, 1, 2], "timestamp": [date(2019, 9, 30), date(2019, 10, 1), date(2019, 10, 2)]},
    )

    assert read_all(files_source("events.parquet"), DAY, tmp_path)["id"].tolist() == [1]


def test_unusable_time_type_fails(tmp_path: Path) -> None:
    write_parquet(tmp_path / "events.parquet", {"timestamp": [True]})

    with pytest.raises(ConfigError, match=r"source\.time_column: .* has type BOOLEAN"):
        read_all(files_source("events.parquet"), DAY, tmp_path)


# Config: select, columns and format.


def test_columns_map_renames(tmp_path: Path) -> None:
    write_parquet(
        tmp_path / "orders.parquet",
        {
            "created_at": pa.array([utc(2019, 10, 1, 8)], pa.timestamp("us", "UTC")),
            "customer_id": [42],
            "total": [9.5],
        },
    )
    source = files_source(
        "orders.parquet",
        columns={
            "timestamp": "created_at",
            "user.id": "customer_id",
            "data.customer": "customer_id",
        },
    )

    frame = read_all(source, DAY, tmp_path)

    assert frame.columns.tolist() == ["timestamp", "user.id", "data.customer", "total"]
    assert frame["user.id"].tolist() == [42]
    assert frame["data.customer"].tolist() == [42]


def test_columns_map_missing_column(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    source = files_source("events.parquet", columns={"user.id": "customer_id"})

    with pytest.raises(ConfigError, match=r"source\.columns\.user\.id: column 'customer_id'"):
        read_all(source, DAY, tmp_path)


def test_columns_map_name_collision(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    source = files_source("events.parquet", columns={"id": "timestamp"})

    with pytest.raises(ConfigError, match="appears more than once"):
        read_all(source, DAY, tmp_path)


def test_missing_time_column(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    source = files_source("events.parquet", time_column="event_time")

    with pytest.raises(ConfigError, match="available columns: id, timestamp"):
        read_all(source, DAY, tmp_path)


def test_select_error_names_key(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    source = files_source("events.parquet", select="SELECT no_such_column FROM {source}")

    with pytest.raises(SourceError, match=r"^source\.select: .*no_such_column"):
        read_all(source, DAY, tmp_path)


def test_select_needs_source_placeholder(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    source = files_source("events.parquet", select="SELECT now() AS timestamp")

    with pytest.raises(ConfigError, match=r"source\.select: missing \{source\}"):
        read_all(source, DAY, tmp_path)


def test_select_with_trailing_comment(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    for select in (
        "SELECT * FROM {source} -- all columns",
        "SELECT * FROM {source};\n-- all columns\n",
        "SELECT * FROM {source};;",
    ):
        source = files_source("events.parquet", select=select)
        assert read_all(source, DAY, tmp_path)["id"].tolist() == [0], select


def test_select_joins_source_twice(tmp_path: Path) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8), utc(2019, 10, 1, 9)])
    select = (
        "SELECT a.id, a.timestamp, b.id AS next_id FROM {source} AS a "
        "LEFT JOIN {source} AS b ON b.id = a.id + 1"
    )

    frame = read_all(files_source("events.parquet", select=select), DAY, tmp_path)

    assert frame["next_id"].tolist() == [1, pd.NA]


def test_format_overrides_extension(tmp_path: Path) -> None:
    (tmp_path / "events.txt").write_text("timestamp,n\n2019-10-01T01:00:00Z,1\n")

    frame = read_all(files_source("events.txt", format="csv"), DAY, tmp_path)

    assert frame["n"].tolist() == [1]


def test_unknown_extension_needs_format(tmp_path: Path) -> None:
    (tmp_path / "events.txt").write_text("timestamp,n\n2019-10-01T01:00:00Z,1\n")

    with pytest.raises(ConfigError, match=r"source\.format: missing"):
        read_all(files_source("events.txt"), DAY, tmp_path)


def test_gzipped_csv(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "events.csv.gz", "wt") as handle:
        handle.write("timestamp,n\n2019-10-01T01:00:00Z,1\n2019-10-02T01:00:00Z,2\n")

    assert read_all(files_source("events.csv.gz"), DAY, tmp_path)["n"].tolist() == [1]


def test_json_array_file(tmp_path: Path) -> None:
    rows = [
        {"timestamp": "2019-10-01T01:00:00Z", "n": 1},
        {"timestamp": "2019-10-02T01:00:00Z", "n": 2},
    ]
    (tmp_path / "events.json").write_text(json.dumps(rows))

    assert read_all(files_source("events.json"), DAY, tmp_path)["n"].tolist() == [1]


def test_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])

    frame = read_all(files_source(str(path)), DAY, "/nonexistent")

    assert frame["id"].tolist() == [0]


def test_read_logs_start_and_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_events(tmp_path / "events.parquet", [utc(2019, 10, 1, 8)])
    logger = logging.getLogger("tests.sources")

    with caplog.at_level(logging.INFO, logger="tests.sources"):
        list(
            read_partition(
                files_source("events.parquet"), DAY, base_dir=str(tmp_path), logger=logger
            )
        )

    assert "Reading partition 2019-10-01 from 1 parquet file(s)" in caplog.text
    assert "Read 1 rows in 1 chunk(s) for partition 2019-10-01" in caplog.text
