"""Tests of the Dagster definitions, the instance file and the partition freshness checks."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    AssetPartitionStatus,
    AssetSelection,
    DagsterInstance,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    Definitions,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.test_utils import freeze_time

from klaviyo_pipeline import checks as freshness
from klaviyo_pipeline.assets import build_assets
from klaviyo_pipeline.config import (
    CONFIG_ENV_VAR,
    EXAMPLE_CONFIG,
    ConfigError,
    PipelineConfig,
    load_config,
    parse_config,
)
from klaviyo_pipeline.definitions import (
    API_KEY_ENV_VAR,
    BASE_URL_ENV_VAR,
    JOB_NAME,
    build_definitions,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGSTER_CLI = Path(sys.executable).parent / "dagster"
SYNC_ASSETS = ["klaviyo_event_sync", "klaviyo_profile_sync"]
ALL_ASSETS = {
    "source_events",
    "normalized_events",
    "klaviyo_event_records",
    "klaviyo_profile_records",
    "rejected_rows",
    *SYNC_ASSETS,
}
OCTOBER_2019 = [f"2019-10-{day:02d}" for day in range(1, 32)]
INVALID_CONFIG = """\
partitions: {start: 2019-10-01, timezone: Mars/Olympus}
source: {kind: files, path: events.csv}
destination: {settings: {apiKey: $KLAVIYO_API_KEY}}
sync: {event_batch_size: 5000}
"""


@pytest.fixture(autouse=True)
def _no_klaviyo_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test a dry run on the bundled example, whatever the shell exports."""
    for name in (CONFIG_ENV_VAR, API_KEY_ENV_VAR, BASE_URL_ENV_VAR):
        monkeypatch.delenv(name, raising=False)


def example_config(tmp_path: Path, **partitions: Any) -> PipelineConfig:
    """Return the bundled example with `partitions` overrides and a sync log in `tmp_path`."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    raw["partitions"] = {**raw["partitions"], **partitions}
    raw["sync"] = {**raw.get("sync", {}), "state_database": str(tmp_path / "state.duckdb")}
    return parse_config(raw, base_dir=EXAMPLE_CONFIG.parent)


def dagster_cli_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Return an environment for the dagster CLI with a fresh DAGSTER_HOME in `tmp_path`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in (CONFIG_ENV_VAR, API_KEY_ENV_VAR, BASE_URL_ENV_VAR)
    }
    environment.update(DAGSTER_HOME=str(home), **extra)
    return environment


def run_dagster_cli(arguments: Sequence[str], environment: dict[str, str]) -> tuple[int, str]:
    """Run the dagster CLI in the repository root; return the exit code and the output."""
    completed = subprocess.run(
        [str(DAGSTER_CLI), *arguments],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


# Definitions, job, partitions and schedule


def test_definitions_module_loads() -> None:
    from klaviyo_pipeline import definitions

    asset_keys = {key.to_user_string() for key in definitions.defs.resolve_all_asset_keys()}
    check_keys = {
        (key.asset_key.to_user_string(), key.name)
        for key in definitions.defs.resolve_asset_graph().asset_check_keys
    }

    assert asset_keys == ALL_ASSETS
    assert ("klaviyo_event_sync", "rows_reconciled") in check_keys
    assert ("klaviyo_event_sync", "rejected_share") in check_keys
    assert ("klaviyo_profile_sync", "profiles_reconciled") in check_keys


def test_workspace_validates_with_cli(tmp_path: Path) -> None:
    code, output = run_dagster_cli(
        ["definitions", "validate", "-w", "workspace.yaml"], dagster_cli_environment(tmp_path)
    )

    assert code == 0, output
    assert "All code locations passed validation" in output, output


def test_job_selects_every_asset(tmp_path: Path) -> None:
    job = build_definitions(example_config(tmp_path)).resolve_job_def(JOB_NAME)
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}

    assert selected == ALL_ASSETS


def test_partitions_start_at_config_start(tmp_path: Path) -> None:
    job = build_definitions(example_config(tmp_path)).resolve_job_def(JOB_NAME)
    partitions_def = job.partitions_def

    assert isinstance(partitions_def, DailyPartitionsDefinition)
    assert partitions_def.get_first_partition_key() == "2019-10-01"
    assert partitions_def.get_last_partition_key() == "2019-10-31"
    assert partitions_def.timezone == "UTC"


def test_partitions_use_config_timezone(tmp_path: Path) -> None:
    config = example_config(tmp_path, timezone="America/New_York", end=None)
    partitions_def = build_definitions(config).resolve_job_def(JOB_NAME).partitions_def
    assert isinstance(partitions_def, DailyPartitionsDefinition)
    first_window = partitions_def.time_window_for_partition_key("2019-10-01")

    assert partitions_def.timezone == "America/New_York"
    assert partitions_def.get_first_partition_key() == "2019-10-01"
    assert first_window.start == datetime(2019, 10, 1, tzinfo=ZoneInfo("America/New_York"))


def test_daily_schedule_runs_previous_day(tmp_path: Path) -> None:
    config = example_config(tmp_path, timezone="Europe/Berlin")
    schedules = list(build_definitions(config).schedules or [])
    assert len(schedules) == 1
    schedule = schedules[0]

    assert schedule.job_name == JOB_NAME
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"


# Invalid config


def test_invalid_config_names_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(INVALID_CONFIG, encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert "partitions.timezone" in str(raised.value)
    assert "Mars/Olympus" in str(raised.value)
    assert "sync.event_batch_size" in str(raised.value)


def test_invalid_config_fails_cli_validation(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(INVALID_CONFIG, encoding="utf-8")
    environment = dagster_cli_environment(tmp_path, **{CONFIG_ENV_VAR: str(path)})

    code, output = run_dagster_cli(["definitions", "validate", "-w", "workspace.yaml"], environment)

    assert code != 0, output
    assert "partitions.timezone" in output, output
    assert "sync.event_batch_size" in output, output


# Instance file


def test_instance_file_queues_runs_and_limits_pool(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        concurrency = instance.get_concurrency_config()
        instance.event_log_storage.initialize_concurrency_limit_to_default("klaviyo_api")
        pool = instance.event_log_storage.get_concurrency_info("klaviyo_api")

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert concurrency.run_queue_config is not None
        assert concurrency.run_queue_config.max_concurrent_runs == 4
        assert concurrency.pool_config.pool_granularity is not None
        assert concurrency.pool_config.pool_granularity.value == "op"
        assert pool.slot_count == 1
        assert not instance.nux_enabled


# Freshness checks


def with_freshness_checks(config: PipelineConfig) -> Definitions:
    """Return the Definitions of `config` with the freshness checks and their sensor added."""
    base = build_definitions(config)
    assets = list(base.assets or [])
    checks, sensors = freshness.build_freshness_checks(assets, config)
    return Definitions(
        assets=assets,
        asset_checks=checks,
        sensors=sensors,
        jobs=base.jobs,
        schedules=base.schedules,
        resources=base.resources,
    )


def report_materialized(instance: DagsterInstance, asset: str, partitions: Sequence[str]) -> None:
    for partition in partitions:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


def evaluate_freshness_checks(
    config: PipelineConfig, instance: DagsterInstance
) -> dict[tuple[str, str], AssetCheckEvaluation]:
    """Run only the freshness checks; return the evaluations by (asset, check name)."""
    base = build_definitions(config)
    assets = list(base.assets or [])
    checks, _ = freshness.build_freshness_checks(assets, config)
    result = materialize(
        [*assets, *checks],
        selection=AssetSelection.checks(*checks),
        instance=instance,
        resources=dict(base.resources or {}),
    )
    assert result.success
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def test_freshness_checks_cover_sync_assets(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    checks, sensors = freshness.build_freshness_checks(build_assets(config), config)
    check_keys = {
        (spec.key.asset_key.to_user_string(), spec.key.name)
        for definition in checks
        for spec in definition.check_specs
    }

    assert check_keys == {
        (asset, name)
        for asset in SYNC_ASSETS
        for name in ("freshness_check", "partitions_complete")
    }
    assert [sensor.name for sensor in sensors] == [freshness.SENSOR_NAME]
    assert sensors[0].default_status == DefaultSensorStatus.RUNNING


def test_freshness_checks_reject_non_sync_assets(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    upstream = [asset for asset in build_assets(config) if "_sync" not in str(asset.keys)]

    with pytest.raises(ValueError, match="no sync asset"):
        freshness.build_freshness_checks(upstream, config)


def test_checks_flag_missing_last_partition(tmp_path: Path, instance: DagsterInstance) -> None:
    config = example_config(tmp_path)
    report_materialized(instance, "klaviyo_event_sync", OCTOBER_2019[:-1])

    evaluations = evaluate_freshness_checks(config, instance)
    latest = evaluations[("klaviyo_event_sync", "freshness_check")]
    complete = evaluations[("klaviyo_event_sync", "partitions_complete")]

    assert not latest.passed
    assert "2019-10-31" in (latest.description or "")
    assert not complete.passed
    assert complete.metadata["missing"].value == ["2019-10-31"]
    assert complete.metadata["missing_count"].value == 1


def test_checks_flag_gap_before_last_partition(tmp_path: Path, instance: DagsterInstance) -> None:
    config = example_config(tmp_path)
    report_materialized(instance, "klaviyo_event_sync", ["2019-10-01", *OCTOBER_2019[2:]])

    evaluations = evaluate_freshness_checks(config, instance)
    latest = evaluations[("klaviyo_event_sync", "freshness_check")]
    complete = evaluations[("klaviyo_event_sync", "partitions_complete")]

    assert latest.passed
    assert not complete.passed
    assert complete.metadata["missing"].value == ["2019-10-02"]
    assert "2019-10-02" in (complete.description or "")


def test_checks_flag_never_synced_asset(tmp_path: Path, instance: DagsterInstance) -> None:
    config = example_config(tmp_path)
    report_materialized(instance, "klaviyo_event_sync", OCTOBER_2019)

    evaluations = evaluate_freshness_checks(config, instance)
    complete = evaluations[("klaviyo_profile_sync", "partitions_complete")]

    assert not evaluations[("klaviyo_profile_sync", "freshness_check")].passed
    assert not complete.passed
    assert complete.metadata["missing_count"].value == 31
    assert complete.metadata["missing"].value == OCTOBER_2019[: freshness.MAX_LISTED_PARTITIONS]


def test_checks_pass_when_all_partitions_exist(tmp_path: Path, instance: DagsterInstance) -> None:
    config = example_config(tmp_path)
    for asset in SYNC_ASSETS:
        report_materialized(instance, asset, OCTOBER_2019)

    evaluations = evaluate_freshness_checks(config, instance)

    assert len(evaluations) == 4
    for key, evaluation in evaluations.items():
        assert evaluation.passed, key
        assert freshness.FRESH_UNTIL_METADATA_KEY in evaluation.metadata, key


@pytest.mark.parametrize(
    ("local_time", "expected_partition"),
    [
        (datetime(2019, 10, 5, 2, 59), "2019-10-03"),
        (datetime(2019, 10, 5, 3, 1), "2019-10-04"),
    ],
)
def test_deadline_uses_partition_timezone(
    tmp_path: Path, instance: DagsterInstance, local_time: datetime, expected_partition: str
) -> None:
    zone = ZoneInfo("America/New_York")
    config = example_config(tmp_path, timezone="America/New_York", end=None)
    report_materialized(instance, "klaviyo_event_sync", OCTOBER_2019[:3])

    with freeze_time(local_time.replace(tzinfo=zone)):
        evaluations = evaluate_freshness_checks(config, instance)
    latest = evaluations[("klaviyo_event_sync", "freshness_check")]
    complete = evaluations[("klaviyo_event_sync", "partitions_complete")]
    expected_missing = [] if expected_partition == "2019-10-03" else ["2019-10-04"]

    assert expected_partition in (latest.description or "")
    assert latest.passed == (expected_partition == "2019-10-03")
    assert complete.metadata["last_partition_due"].value == expected_partition
    assert complete.metadata["missing_count"].value == len(expected_missing)
    assert complete.passed == (not expected_missing)


def test_partitions_complete_lists_failed_partitions() -> None:
    statuses = {
        "2019-10-01": AssetPartitionStatus.MATERIALIZED,
        "2019-10-02": AssetPartitionStatus.FAILED,
        "2019-10-03": AssetPartitionStatus.IN_PROGRESS,
    }
    deadline = datetime(2019, 10, 4, 3, tzinfo=ZoneInfo("UTC"))

    result = freshness.partitions_complete_result(
        AssetKey("klaviyo_event_sync"), list(statuses), statuses, deadline, deadline
    )

    assert not result.passed
    assert result.metadata["failed"].value == ["2019-10-02"]
    assert result.metadata["missing_count"].value == 0
    assert "latest run failed" in (result.description or "")


def test_sensor_requests_checks_never_run(tmp_path: Path, instance: DagsterInstance) -> None:
    definitions = with_freshness_checks(example_config(tmp_path))
    sensor = definitions.resolve_sensor_def(freshness.SENSOR_NAME)

    data = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=definitions))
    requested = {key for request in data.run_requests or [] for key in request.asset_check_keys}

    assert requested == {
        AssetCheckKey(AssetKey(asset), name)
        for asset in SYNC_ASSETS
        for name in ("freshness_check", "partitions_complete")
    }


def test_daily_run_evaluates_freshness_checks(tmp_path: Path, instance: DagsterInstance) -> None:
    definitions = with_freshness_checks(example_config(tmp_path))
    job = definitions.resolve_job_def(JOB_NAME)

    result = job.execute_in_process(instance=instance, partition_key="2019-10-01")
    evaluations = {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }
    complete = evaluations[("klaviyo_event_sync", "partitions_complete")]

    assert result.success
    assert not evaluations[("klaviyo_event_sync", "freshness_check")].passed
    assert complete.metadata["missing_count"].value == 30
    assert complete.metadata["missing"].value[0] == "2019-10-02"
