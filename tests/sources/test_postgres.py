"""Reading a partition from the PostgreSQL server on 127.0.0.1:5432, and DSN handling."""

import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
import pytest

from klaviyo_pipeline.config import ConfigError, SourceConfig
from klaviyo_pipeline.sources import (
    PartitionWindow,
    SourceError,
    count_partition,
    read_partition,
    redact_dsn,
)
from klaviyo_pipeline.sources.postgres_reader import plan_postgres_query, to_psycopg
from tests.sources.conftest import read_all, utc

HOST, PORT = "127.0.0.1", 5432
DAY = PartitionWindow.for_day("2019-10-01")


def server_listens() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Database:
    """A private schema on the test server and the DSN that reaches it."""

    dsn: str
    schema: str
    application_name: str

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}"


@pytest.fixture
def database() -> Iterator[Database]:
    """Create a schema with a unique name, and drop it after the test."""
    if not server_listens():
        pytest.skip(f"no PostgreSQL server listens on {HOST}:{PORT}")
    suffix = uuid.uuid4().hex[:12]
    application_name = f"klaviyo_sources_test_{suffix}"
    dsn = f"postgresql://postgres@{HOST}:{PORT}/test?application_name={application_name}"
    schema = f"klaviyo_sources_test_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Database(dsn, schema, application_name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_sql(
    database: Database, statement: str, rows: list[tuple[object, ...]] | None = None
) -> None:
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        if rows is None:
            connection.execute(statement)
        else:
            connection.cursor().executemany(statement, rows)


def postgres_source(database: Database, **fields: object) -> SourceConfig:
    fields.setdefault("dsn", database.dsn)
    return SourceConfig(kind="postgres", **fields)  # type: ignore[arg-type]


@pytest.fixture
def events(database: Database) -> str:
    """Create an events table with timestamptz times around the 2019-10-01 UTC day."""
    table = database.table("events")
    run_sql(
        database,
        f"CREATE TABLE {table} (ts timestamptz, event_id int8, user_id int8, price numeric(10, 2))",
    )
    run_sql(
        database,
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
        [
            (utc(2019, 9, 30, 21, 59, 59, 999_999), 1, 2103807459595387724, Decimal("1.10")),
            (utc(2019, 9, 30, 22), 2, None, Decimal("2.20")),
            (utc(2019, 9, 30, 23, 59, 59, 999_999), 3, 3, None),
            (utc(2019, 10, 1), 4, 9_223_372_036_854_775_807, Decimal("4.40")),
            (utc(2019, 10, 1, 21, 59, 59, 999_999), 5, 5, Decimal("5.50")),
            (utc(2019, 10, 1, 23, 59, 59, 999_999), 6, 6, Decimal("6.60")),
            (utc(2019, 10, 2), 7, 7, Decimal("7.70")),
        ],
    )
    return table


@pytest.mark.postgres
def test_timestamptz_utc_window_bounds(database: Database, events: str) -> None:
    source = postgres_source(database, table=events, time_column="ts")

    frame = read_all(source, DAY)

    assert frame["event_id"].tolist() == [4, 5, 6]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert count_partition(source, DAY) == 3


@pytest.mark.postgres
def test_timestamptz_berlin_window_bounds(database: Database, events: str) -> None:
    window = PartitionWindow.for_day("2019-10-01", "Europe/Berlin")
    source = postgres_source(database, table=events, time_column="ts")

    frame = read_all(source, window)

    assert frame["event_id"].tolist() == [2, 3, 4, 5]


@pytest.mark.postgres
def test_bigint_ids_exact_with_nulls(database: Database, events: str) -> None:
    window = PartitionWindow.for_day("2019-10-01", "Europe/Berlin")
    source = postgres_source(database, table=events, time_column="ts")

    frame = read_all(source, window)

    assert str(frame["user_id"].dtype) == "Int64"
    assert frame["user_id"].isna().tolist() == [True, False, False, False]
    assert frame["user_id"].iloc[2] == 9_223_372_036_854_775_807
    assert frame["price"].tolist()[:2] == [Decimal("2.20"), None]


@pytest.mark.postgres
def test_naive_timestamps_use_source_timezone(database: Database) -> None:
    table = database.table("orders")
    run_sql(database, f"CREATE TABLE {table} (created timestamp, order_id text)")
    run_sql(
        database,
        f"INSERT INTO {table} VALUES (%s, %s)",
        [
            (datetime(2019, 9, 30, 19, 59, 59), "A-0"),
            (datetime(2019, 9, 30, 20), "A-1"),
            (datetime(2019, 10, 1, 19, 59, 59), "A-2"),
            (datetime(2019, 10, 1, 20), "A-3"),
        ],
    )
    source = postgres_source(
        database, table=table, time_column="created", timezone="America/New_York"
    )

    frame = read_all(source, DAY)

    assert frame["order_id"].tolist() == ["A-1", "A-2"]
    assert str(frame["created"].dtype) == "datetime64[us]"


@pytest.mark.postgres
def test_naive_timestamps_need_timezone(database: Database) -> None:
    table = database.table("orders")
    run_sql(database, f"CREATE TABLE {table} (created timestamp, order_id text)")
    source = postgres_source(database, table=table, time_column="created")

    with pytest.raises(ConfigError, match=r"source\.timezone: missing.*PostgreSQL TIMESTAMP"):
        read_all(source, DAY)


@pytest.mark.postgres
def test_chunks_of_seven_over_fifty_rows(database: Database) -> None:
    table = database.table("many")
    run_sql(database, f"CREATE TABLE {table} (timestamp timestamptz, n int4)")
    rows = [(utc(2019, 10, 1, 0, minute), 49 - minute) for minute in reversed(range(50))]
    run_sql(database, f"INSERT INTO {table} VALUES (%s, %s)", rows)
    source = postgres_source(database, table=table, chunk_rows=7)

    chunks = list(read_partition(source, DAY))

    assert [len(chunk) for chunk in chunks] == [7, 7, 7, 7, 7, 7, 7, 1]
    numbers = [n for chunk in chunks for n in chunk["n"]]
    assert numbers == list(reversed(range(50)))


@pytest.mark.postgres
def test_reads_through_server_cursor(database: Database) -> None:
    table = database.table("many")
    run_sql(database, f"CREATE TABLE {table} (timestamp timestamptz, n int4)")
    rows = [(utc(2019, 10, 1, 0, minute), minute) for minute in range(20)]
    run_sql(database, f"INSERT INTO {table} VALUES (%s, %s)", rows)
    chunks = read_partition(postgres_source(database, table=table, chunk_rows=5), DAY)

    first = next(chunks)
    with psycopg.connect(database.dsn) as observer:
        queries = observer.execute(
            "SELECT query FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            [database.application_name],
        ).fetchall()
    chunks.close()

    assert len(first) == 5
    assert len(queries) == 1
    assert queries[0][0].startswith("FETCH FORWARD 5 FROM")


@pytest.mark.postgres
def test_quotes_cannot_break_query(database: Database) -> None:
    # A table name and values full of SQL and psycopg syntax must come back unchanged.
    table_name = 'o\'brien "events" %s'
    table = f"{database.schema}.{table_name}"
    quoted = f'"{database.schema}"."' + table_name.replace('"', '""') + '"'
    run_sql(database, f"CREATE TABLE {quoted} (timestamp timestamptz, note text)")
    notes = ["it's", "'); DROP TABLE x; --", "%s", "%(window_start)s", '"quoted"']
    run_sql(
        database,
        # psycopg reads "%s" in the table name as a placeholder unless it is written "%%s".
        f"INSERT INTO {quoted.replace('%', '%%')} VALUES (%s, %s)",
        [(utc(2019, 10, 1, 1), note) for note in notes],
    )
    select = (
        "SELECT timestamp, note, 'it''s 100%' AS literal FROM {source}"
        " WHERE note NOT LIKE '%%nothing%'"
    )
    source = postgres_source(database, table=table, select=select)

    frame = read_all(source, DAY)

    assert sorted(frame["note"]) == sorted(notes)
    assert set(frame["literal"]) == {"it's 100%"}


@pytest.mark.postgres
def test_window_values_are_bound(database: Database, events: str) -> None:
    source = postgres_source(database, table=events, time_column="ts")

    with psycopg.connect(database.dsn) as connection:
        plan = plan_postgres_query(connection, source, DAY)

    query = to_psycopg(plan.select)
    assert '"ts" >= %(window_start)s AND' in query
    assert '"ts" < %(window_end)s' in query
    assert "2019" not in query
    assert plan.params == {"window_start": DAY.start, "window_end": DAY.end}


@pytest.mark.postgres
def test_select_without_placeholder(database: Database, events: str) -> None:
    select = f'SELECT ts AS timestamp, event_id AS "data.id" FROM {events} WHERE event_id > 4'
    source = postgres_source(database, select=select)

    frame = read_all(source, DAY)

    assert frame["data.id"].tolist() == [5, 6]


@pytest.mark.postgres
def test_columns_map_renames(database: Database, events: str) -> None:
    source = postgres_source(
        database, table=events, columns={"timestamp": "ts", "user.id": "user_id"}
    )

    frame = read_all(source, DAY)

    assert frame.columns.tolist() == ["timestamp", "event_id", "user.id", "price"]


@pytest.mark.postgres
def test_text_and_epoch_times(database: Database) -> None:
    table = database.table("mixed")
    run_sql(database, f"CREATE TABLE {table} (iso text, epoch_ms int8, n int4)")
    start_ms = 1_569_888_000_000
    run_sql(
        database,
        f"INSERT INTO {table} VALUES (%s, %s, %s)",
        [
            ("2019-10-01T12:00:00Z", start_ms - 1, 0),
            ("2019-09-30T23:00:00-02:00", start_ms, 1),
            ("2019-10-07T00:00:00Z", start_ms + 86_399_999, 2),
            ("garbage", start_ms + 86_400_000, 3),
            (None, None, 4),
        ],
    )

    text_frame = read_all(postgres_source(database, table=table, time_column="iso"), DAY)
    epoch_frame = read_all(postgres_source(database, table=table, time_column="epoch_ms"), DAY)

    assert sorted(text_frame["n"]) == [0, 1, 3]
    assert epoch_frame["n"].tolist() == [1, 2]


@pytest.mark.postgres
def test_select_error_names_key(database: Database, events: str) -> None:
    source = postgres_source(database, table=events, select="SELECT no_such_column FROM {source}")

    with pytest.raises(SourceError, match=r"^source\.select: .*no_such_column"):
        read_all(source, DAY)


@pytest.mark.postgres
def test_dsn_from_environment(
    database: Database, events: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAVIYO_SOURCES_TEST_DSN", database.dsn)
    source = postgres_source(
        database, dsn="$KLAVIYO_SOURCES_TEST_DSN", table=events, time_column="ts"
    )

    assert count_partition(source, DAY) == 3


@pytest.mark.postgres
def test_log_redacts_password(
    database: Database, events: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The test server trusts loopback connections, so it ignores the password.
    dsn = database.dsn.replace("postgres@", "postgres:hunter2@")
    source = postgres_source(database, dsn=dsn, table=events, time_column="ts")
    logger = logging.getLogger("tests.sources")

    with caplog.at_level(logging.INFO, logger="tests.sources"):
        list(read_partition(source, DAY, logger=logger))

    assert "Reading partition 2019-10-01 from PostgreSQL" in caplog.text
    assert "password=***" in caplog.text
    assert "hunter2" not in caplog.text


# DSN handling that needs no server.


def test_unset_dsn_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLAVIYO_SOURCES_UNSET_DSN", raising=False)
    source = SourceConfig(kind="postgres", dsn="$KLAVIYO_SOURCES_UNSET_DSN", table="events")

    with pytest.raises(
        ConfigError, match="environment variable KLAVIYO_SOURCES_UNSET_DSN is not set"
    ):
        list(read_partition(source, DAY))


def test_invalid_dsn_hides_value() -> None:
    source = SourceConfig(kind="postgres", dsn="host=x password=hunter2 nonsense", table="events")

    with pytest.raises(ConfigError, match=r"source\.dsn: invalid") as raised:
        list(read_partition(source, DAY))

    assert "hunter2" not in str(raised.value)


def test_connect_error_hides_password() -> None:
    # Assumes that nothing listens on port 1 of the loopback address, so the connection is refused.
    source = SourceConfig(
        kind="postgres",
        dsn="postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=5",
        table="events",
    )

    with pytest.raises(SourceError, match=r"source\.dsn: connecting to PostgreSQL") as raised:
        list(read_partition(source, DAY))

    assert "hunter2" not in str(raised.value)
    assert "password=***" in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://bob:s3cret@db.internal:5432/shop", "password=***"),
        ("host=db.internal user=bob password=s3cret dbname=shop", "password=***"),
        ("postgresql://bob@db.internal/shop", "user=bob"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    redacted = redact_dsn(dsn)

    assert "s3cret" not in redacted
    assert expected in redacted
    assert "host=db.internal" in redacted


def test_redact_invalid_dsn() -> None:
    assert redact_dsn("password=s3cret nonsense") == "(invalid connection string)"
