"""End-to-end: the daily sync through dagster-webserver, dagster-daemon and the Dagster UI.

The module runs once per source: the bundled REES46 CSV, and the same 1,000 rows in a
PostgreSQL table. It starts the local Klaviyo server, dagster-webserver and dagster-daemon on
127.0.0.1 with a fresh DAGSTER_HOME, which holds a copy of dagster.yaml. Then, through
``/graphql``, it:

1. launches partition 2019-10-01 of ``klaviyo_daily_sync``,
2. launches a backfill of 2019-10-01..2019-10-03 while that run is queued or running,
3. after both finish, re-executes the first run.

The tests then check the runs, what the local Klaviyo server stored, the materialization
metadata, the ``klaviyo_api`` pool, and the asset page in headless Chromium.

The runs select the in-process executor through run config while the job keeps Dagster's
default multiprocess executor. That executor starts one process per step, and each step
process imports the project again; on 2 cores the scenario then took about 7 minutes per
source instead of 2 (measured once, with other test suites running on the machine).
"""

import itertools
import json
import shutil
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from klaviyo_pipeline.config import EXAMPLE_CONFIG, load_config
from klaviyo_pipeline.definitions import JOB_NAME, build_definitions
from tests.e2e.browser import ChromiumError, PageText, dump_dom, ensure_chromium, screenshot
from tests.e2e.graphql import GraphQLError
from tests.e2e.stack import REPO_ROOT, Stack, StackError, describe_logs, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
SAMPLE_CSV = EXAMPLE_CONFIG.parent / "2019-Oct-sample.csv"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
FIRST_PARTITION = "2019-10-01"
BACKFILL_PARTITIONS = ["2019-10-01", "2019-10-02", "2019-10-03"]
EXPECTED_EVENTS = {"Viewed Product": 987, "Added to Cart": 3, "Placed Order": 10}
EXPECTED_METRICS = {metric: {"sent": count} for metric, count in EXPECTED_EVENTS.items()}
SYNC_STEPS = ("klaviyo_event_sync", "klaviyo_profile_sync")
RUN_TIMEOUT_SECONDS = 600.0
PAGE_ATTEMPTS = 3


@dataclass
class Scenario:
    """The stack of one source after the three launches, and what they returned."""

    kind: str
    stack: Stack
    log_dir: Path
    artifact_dir: Path
    first_run_id: str
    backfill_id: str
    backfill_status: str
    backfill_runs: dict[str, str]
    rerun_id: str
    statuses: dict[str, str]

    def failure_context(self) -> str:
        return f"logs in {self.log_dir}:\n{describe_logs(self.log_dir)}"


def in_process_run_config(config_path: Path) -> dict[str, Any]:
    """Return run config that runs every step in the run's process.

    Empty when the job's executor already runs in process; its config has no selector.
    """
    job = build_definitions(load_config(config_path)).resolve_job_def(JOB_NAME)
    if job.executor_def.name == "multi_or_in_process_executor":
        return {"execution": {"config": {"in_process": {}}}}
    return {}


def write_config(work_dir: Path, source: dict[str, Any]) -> Path:
    """Write the REES46 example with `source` and a sync log of its own in `work_dir`."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    raw["source"] = source
    raw["sync"] = {**raw.get("sync", {}), "state_database": str(work_dir / "state.duckdb")}
    path = work_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def example_source() -> dict[str, Any]:
    """Return the example's source block with the CSV path made absolute."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return {**raw["source"], "path": str(SAMPLE_CSV)}


@pytest.fixture(scope="module")
def rees46_postgres_table() -> Iterator[str]:
    """Load the 1,000 sample rows into a table of a new schema; drop the schema after."""
    schema = f"klaviyo_e2e_{uuid.uuid4().hex[:12]}"
    table = f"{schema}.events"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(
                f"""CREATE TABLE {table} (
                    event_time timestamptz, event_type text, product_id bigint,
                    category_id bigint, category_code text, brand text,
                    price double precision, user_id bigint, user_session text)"""
            )
            copy_sql = f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
            with connection.cursor().copy(copy_sql) as copy:
                copy.write(SAMPLE_CSV.read_bytes())
            rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert rows is not None
        assert rows[0] == 1000
        yield table
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        return ensure_chromium()
    except ChromiumError as error:
        pytest.fail(f"headless Chromium is needed for the UI test: {error}")


def run_scenario(stack: Stack, config_path: Path) -> dict[str, Any]:
    """Launch the partition run, the backfill and the re-execution, and wait for each."""
    graphql = stack.graphql
    run_config = in_process_run_config(config_path)
    first_run_id = graphql.launch_partition_run(FIRST_PARTITION, run_config)
    backfill_id = graphql.launch_backfill(BACKFILL_PARTITIONS, run_config)

    statuses = graphql.wait_for_runs([first_run_id], RUN_TIMEOUT_SECONDS, stack.check_alive)
    backfill_status = graphql.wait_for_backfill(backfill_id, RUN_TIMEOUT_SECONDS, stack.check_alive)
    backfill_runs = {
        run["runId"]: {tag["key"]: tag["value"] for tag in run["tags"]}.get("dagster/partition")
        for run in graphql.runs(backfill_id=backfill_id)
    }
    statuses.update(
        graphql.wait_for_runs(list(backfill_runs), RUN_TIMEOUT_SECONDS, stack.check_alive)
    )

    # Launched after the backfill, so that its materialization is the latest of the asset.
    rerun_id = graphql.reexecute(first_run_id)
    statuses.update(graphql.wait_for_runs([rerun_id], RUN_TIMEOUT_SECONDS, stack.check_alive))
    return {
        "first_run_id": first_run_id,
        "backfill_id": backfill_id,
        "backfill_status": backfill_status,
        "backfill_runs": backfill_runs,
        "rerun_id": rerun_id,
        "statuses": statuses,
    }


@pytest.fixture(
    scope="module",
    params=["files", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def scenario(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    kind = str(request.param)
    work_dir = tmp_path_factory.mktemp(f"e2e_{kind}")
    artifact_dir = ARTIFACTS / kind
    shutil.rmtree(artifact_dir, ignore_errors=True)
    log_dir = artifact_dir / "logs"
    log_dir.mkdir(parents=True)

    if kind == "postgres":
        table = request.getfixturevalue("rees46_postgres_table")
        source = {
            "kind": "postgres",
            "dsn": POSTGRES_DSN,
            "table": table,
            "select": example_source()["select"],
        }
    else:
        source = example_source()
    config_path = write_config(work_dir, source)

    try:
        with running_stack(config_path, work_dir, log_dir) as stack:
            launched = run_scenario(stack, config_path)
            yield Scenario(
                kind=kind, stack=stack, log_dir=log_dir, artifact_dir=artifact_dir, **launched
            )
    except (GraphQLError, StackError, TimeoutError) as error:
        pytest.fail(f"{kind}: {error}\nlogs in {log_dir}:\n{describe_logs(log_dir)}")


def get_local(stack: Stack, path: str) -> Any:
    with urllib.request.urlopen(f"{stack.klaviyo_url}{path}", timeout=30) as response:
        return json.loads(response.read())


# Runs


def test_every_run_succeeds(scenario: Scenario) -> None:
    assert len(scenario.statuses) == 5
    for run_id, status in scenario.statuses.items():
        assert status == "SUCCESS", f"run {run_id} is {status}; {scenario.failure_context()}"
    assert scenario.backfill_status == "COMPLETED_SUCCESS"


def test_backfill_runs_each_partition(scenario: Scenario) -> None:
    assert sorted(scenario.backfill_runs.values()) == BACKFILL_PARTITIONS


# What Klaviyo received


def test_klaviyo_stores_each_event_once(scenario: Scenario) -> None:
    events = get_local(scenario.stack, "/_local/events")
    keys = [(event["profile_id"], event["metric"], event["unique_id"]) for event in events]

    assert len(events) == 1000
    assert Counter(event["metric"] for event in events) == EXPECTED_EVENTS
    assert all(event["unique_id"] for event in events)
    assert len(set(keys)) == len(keys)


def test_each_event_sent_once(scenario: Scenario) -> None:
    requests = get_local(scenario.stack, "/_local/requests")
    bulk = [entry for entry in requests if entry.get("route") == "bulk_create_events"]

    assert sum(entry["events"] for entry in bulk) == 1000
    assert sum(entry["duplicates"] for entry in bulk) == 0
    assert all(entry["status"] == 202 for entry in bulk)


# Materialization metadata


def test_sync_metadata_counts_rows(scenario: Scenario) -> None:
    materializations = scenario.stack.graphql.materializations(
        "klaviyo_event_sync", [FIRST_PARTITION]
    )
    backfill_first = next(
        run_id for run_id, day in scenario.backfill_runs.items() if day == FIRST_PARTITION
    )

    assert {m.run_id for m in materializations} == {
        scenario.first_run_id,
        backfill_first,
        scenario.rerun_id,
    }
    assert materializations[0].run_id == scenario.rerun_id
    for materialization in materializations:
        metadata = materialization.metadata
        assert metadata["rows_read"] == 1000, materialization
        assert metadata["rows_sent"] == 1000, materialization
        assert metadata["rows_rejected"] == 0, materialization
        assert metadata["rows_skipped"] == 0, materialization
        assert metadata["rows_deduplicated"] == 0, materialization
        assert metadata["rows_failed"] == 0, materialization
        assert metadata["dry_run"] is False, materialization
        assert metadata["metrics"] == EXPECTED_METRICS, materialization


def test_only_one_run_sends(scenario: Scenario) -> None:
    materializations = scenario.stack.graphql.materializations(
        "klaviyo_event_sync", [FIRST_PARTITION]
    )
    senders = [m for m in materializations if m.metadata["requests"] > 0]
    skippers = [m for m in materializations if m.metadata["requests"] == 0]

    assert len(senders) == 1, materializations
    assert sum(senders[0].metadata["reasons"].values()) == 1000
    assert len(skippers) == 2, materializations
    for materialization in skippers:
        reasons = materialization.metadata["reasons"]
        assert sum(reasons.values()) == 1000, reasons
        assert all("already_sent" in reason for reason in reasons), reasons


@pytest.mark.parametrize("partition", BACKFILL_PARTITIONS[1:])
def test_empty_partitions_count_zero(scenario: Scenario, partition: str) -> None:
    materializations = scenario.stack.graphql.materializations("klaviyo_event_sync", [partition])

    assert len(materializations) == 1
    assert materializations[0].metadata["rows_read"] == 0
    assert materializations[0].metadata["rows_sent"] == 0


# Concurrency pool


def test_pool_limits_klaviyo_steps(scenario: Scenario) -> None:
    pool = scenario.stack.graphql.concurrency_limit("klaviyo_api")

    assert pool["limit"] == 1
    assert pool["slotCount"] == 1
    assert pool["usingDefaultLimit"] is True


def test_pool_serializes_sync_steps(scenario: Scenario) -> None:
    intervals = []
    for run_id in scenario.statuses:
        for step in scenario.stack.graphql.step_stats(run_id):
            if step.step_key in SYNC_STEPS:
                intervals.append((step.start_time, step.end_time, run_id, step.step_key))

    assert len(intervals) == len(scenario.statuses) * len(SYNC_STEPS)
    assert all(start is not None and end is not None for start, end, _, _ in intervals)
    ordered = sorted(intervals, key=lambda interval: interval[0] or 0.0)
    for earlier, later in itertools.pairwise(ordered):
        assert (earlier[1] or 0.0) <= (later[0] or 0.0), f"{earlier} overlaps {later}"


# Dagster UI


def load_asset_page(chromium: str, url: str) -> tuple[str, PageText]:
    """Dump the page until its metadata table is rendered; return the HTML and its text."""
    html = ""
    for _ in range(PAGE_ATTEMPTS):
        html = dump_dom(chromium, url)
        page = PageText(html)
        if any(row and row[0] == "rows_read" for row in page.rows):
            return html, page
    return html, PageText(html)


def test_asset_page_shows_latest_counts(scenario: Scenario, chromium: str) -> None:
    url = f"{scenario.stack.webserver_url}/assets/klaviyo_event_sync"
    html, page = load_asset_page(chromium, url)
    (scenario.artifact_dir / "klaviyo_event_sync.html").write_text(html, encoding="utf-8")
    image = scenario.artifact_dir / "klaviyo_event_sync.png"
    screenshot(chromium, url, image)

    text = page.text
    status = text.partition("Latest materialization")[2].partition("Latest check results")[0]
    metadata = {row[0]: row[-1] for row in page.rows if len(row) >= 3}

    assert "klaviyo_event_sync" in text
    assert FIRST_PARTITION in status, status
    assert metadata.get("rows_read", "").replace(",", "") == "1000", metadata
    assert metadata.get("rows_sent", "").replace(",", "") == "1000", metadata
    assert metadata.get("rows_failed") == "0", metadata
    assert json.loads(metadata.get("metrics", "null")) == EXPECTED_METRICS, metadata
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
