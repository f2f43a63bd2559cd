"""Reading a table or query from a DuckDB database file, opened read-only."""

from pathlib import Path

import duckdb
import pytest

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources import PartitionWindow, SourceError, count_partition, read_partition
from tests.sources.conftest import read_all

DAY = PartitionWindow.for_day("2019-10-01")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """Create a DuckDB file with a TIMESTAMPTZ table and a schema-qualified naive table."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(
            "CREATE TABLE events (ts TIMESTAMPTZ, event_id BIGINT, category_id BIGINT, name TEXT)"
        )
        connection.execute(
            """
            INSERT INTO events VALUES
              ('2019-09-30 23:59:59.999999+00', 1, 2103807459595387724, 'before'),
              ('2019-10-01 00:00:00+00', 2, 2103807459595387724, 'first'),
              ('2019-10-01 23:59:59.999999+00', 3, NULL, 'last'),
              ('2019-10-02 00:00:00+00', 4, 1, 'after')
            """
        )
        connection.execute("CREATE SCHEMA shop")
        connection.execute(
            "CREATE TABLE shop.orders (created TIMESTAMP, order_id TEXT, total DOUBLE)"
        )
        connection.execute(
            """
            INSERT INTO shop.orders VALUES
              ('2019-10-01 01:59:59', 'A-1', 10.0),
              ('2019-10-01 02:00:00', 'A-2', 20.0),
              ('2019-10-02 01:59:59', 'A-3', 30.0),
              ('2019-10-02 02:00:00', 'A-4', 40.0)
            """
        )
    return path


def database_source(path: Path, **fields: object) -> SourceConfig:
    return SourceConfig(kind="duckdb", database=str(path), **fields)  # type: ignore[arg-type]


def test_table_window_bounds(warehouse: Path) -> None:
    source = database_source(warehouse, table="events", time_column="ts")

    frame = read_all(source, DAY)

    assert frame["event_id"].tolist() == [2, 3]
    assert frame["category_id"].tolist()[0] == 2103807459595387724
    assert str(frame["category_id"].dtype) == "Int64"
    assert count_partition(source, DAY) == 2


def test_relative_database_path(warehouse: Path) -> None:
    source = database_source(Path("warehouse.duckdb"), table="events", time_column="ts")

    assert len(read_all(source, DAY, base_dir=warehouse.parent)) == 2


def test_schema_table_naive_timestamps(warehouse: Path) -> None:
    # Rows are written in Berlin wall time: 2019-10-01 02:00 there is midnight UTC.
    source = database_source(
        warehouse, table="shop.orders", time_column="created", timezone="Europe/Berlin"
    )

    frame = read_all(source, DAY)

    assert frame["order_id"].tolist() == ["A-2", "A-3"]


def test_select_with_source_placeholder(warehouse: Path) -> None:
    select = 'SELECT ts AS timestamp, event_id AS "data.id", upper(name) AS name FROM {source}'
    source = database_source(warehouse, table="events", select=select)

    frame = read_all(source, DAY)

    assert frame.columns.tolist() == ["timestamp", "data.id", "name"]
    assert frame["name"].tolist() == ["FIRST", "LAST"]


def test_select_without_table(warehouse: Path) -> None:
    select = """
        SELECT o.created AS timestamp, o.order_id, e.name
        FROM shop.orders AS o LEFT JOIN events AS e ON e.event_id = 2
    """
    source = database_source(warehouse, select=select, timezone="UTC")

    frame = read_all(source, DAY)

    assert frame["order_id"].tolist() == ["A-1", "A-2"]
    assert set(frame["name"]) == {"first"}


def test_placeholder_needs_table(warehouse: Path) -> None:
    source = database_source(warehouse, select="SELECT * FROM {source}")

    with pytest.raises(ConfigError, match=r"source\.table: missing"):
        read_all(source, DAY)


def test_connection_is_read_only(warehouse: Path) -> None:
    source = database_source(
        warehouse, select="DELETE FROM events RETURNING ts AS timestamp", timezone="UTC"
    )

    with pytest.raises(SourceError, match=r"source\.select: .*read-only"):
        read_all(source, DAY)

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert connection.sql("SELECT count(*) FROM events").fetchall() == [(4,)]


def test_missing_database_fails(tmp_path: Path) -> None:
    source = database_source(tmp_path / "missing.duckdb", table="events")

    with pytest.raises(FileNotFoundError, match=r"source\.database: .*missing\.duckdb"):
        read_all(source, DAY)


def test_missing_table_names_key(warehouse: Path) -> None:
    source = database_source(warehouse, table="no_such_table")

    with pytest.raises(SourceError, match=r"^source\.table: .*no_such_table"):
        read_all(source, DAY)


def test_table_chunks_of_one_row(warehouse: Path) -> None:
    source = database_source(warehouse, table="events", time_column="ts", chunk_rows=1)

    chunks = list(read_partition(source, DAY))

    assert [chunk["event_id"].tolist() for chunk in chunks] == [[2], [3]]
