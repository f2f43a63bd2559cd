"""Hard input cases decided for the whole Dagster run: the assets materialize one partition of
an NDJSON export against the local Klaviyo server, or against a proxy that returns an error."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, ExecuteInProcessResult, materialize

from klaviyo_pipeline.assets import build_assets
from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from klaviyo_pipeline.sync_log import SyncLog
from tests.cases.rows import PARTITION, case_config, warehouse_row
from tests.cases.wire import API_KEY, FixedError, RecordingProxy

USER = {"email": "user@example.com"}
MixedRun = tuple[ExecuteInProcessResult, LocalKlaviyoServer]
MIXED_ROWS = [
    {"event": "order complete", "user": USER, "data": {"id": "ORD-1", "total": 5}},
    {"event": "order complete", "user": USER, "data": {"id": "ORD-2", "total": 7}},
    # an unmapped event whose name, and so its metric, is over Klaviyo's limit
    {"event": "order " + "x" * 200, "user": USER, "data": {"id": "ORD-3", "total": 9}},
    # a profile row with a consent-like trait
    {
        "type": "identify",
        "user": {"email": "ann@example.com"},
        "traits": {"accepts_marketing": True},
    },
]


def partition_config(folder: Path, rows: list[dict[str, Any]]) -> PipelineConfig:
    """Write rows as the partition's NDJSON export and return a config that reads it."""
    path = folder / f"events-{PARTITION}.ndjson"
    path.write_text("".join(json.dumps(warehouse_row(row)) + "\n" for row in rows))
    config = case_config(sync={"state_database": str(folder / "state.duckdb")})
    source = {"kind": "files", "path": str(folder / "events-{date}.ndjson"), "timezone": "UTC"}
    return config.model_validate({**config.model_dump(), "source": source})


def run_partition(config: PipelineConfig, base_url: str) -> ExecuteInProcessResult:
    return materialize(
        build_assets(config),
        partition_key=PARTITION,
        resources={"klaviyo": KlaviyoResource(api_key=API_KEY, base_url=base_url)},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def metadata(result: ExecuteInProcessResult, asset_name: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset_name:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"{asset_name} was not materialized")


def check(result: ExecuteInProcessResult, name: str) -> Any:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedRun]:
    """Materialize a partition of valid rows, a row to reject and a consent-like profile."""
    folder = tmp_path_factory.mktemp("mixed")
    with LocalKlaviyoServer(port=0) as server:
        yield run_partition(partition_config(folder, MIXED_ROWS), server.base_url), server


def test_run_rejects_row_and_warns(mixed_run: MixedRun) -> None:
    result, server = mixed_run
    events = metadata(result, "klaviyo_event_sync")

    assert result.success
    assert events["rows_read"] == 4
    assert events["rows_sent"] == 2
    assert events["rows_rejected"] == 1
    assert events["reasons"]["rejected: metric_name_too_long"] == 1
    assert check(result, "rows_reconciled").passed
    assert not check(result, "rejected_share").passed
    assert check(result, "rejected_share").severity == AssetCheckSeverity.WARN
    assert sorted(event["unique_id"] for event in server.events()) == ["ORD-1", "ORD-2"]


def test_run_consent_profile_warned(mixed_run: MixedRun) -> None:
    result, server = mixed_run
    profiles = metadata(result, "klaviyo_profile_sync")
    notes = str(profiles.get("notes", ""))

    assert profiles["rows_sent"] == 1
    assert metadata(result, "rejected_rows")["warnings"]["consent_unchanged"] == 1
    assert "consent changed" not in notes
    (ann,) = [profile for profile in server.profiles() if profile["email"] == "ann@example.com"]
    assert ann["properties"] == {"accepts_marketing": True}


def test_run_consent_note(mixed_run: MixedRun) -> None:
    result, _ = mixed_run
    notes = str(metadata(result, "klaviyo_profile_sync").get("notes", ""))

    assert "consent unchanged: use the subscription sync" in notes


def test_run_empty_partition(tmp_path: Path) -> None:
    # The export holds only the day before, as on a holiday: the partition has no rows.
    rows = [
        {
            "event": "order complete",
            "timestamp": "2024-04-30T12:00:00Z",
            "user": USER,
            "data": {"id": "ORD-1", "total": 5},
        }
    ]
    with LocalKlaviyoServer(port=0) as server:
        result = run_partition(partition_config(tmp_path, rows), server.base_url)
        requests = server.requests()

    events = metadata(result, "klaviyo_event_sync")
    profiles = metadata(result, "klaviyo_profile_sync")
    assert result.success
    assert events["rows_read"] == 0
    assert events["rows_sent"] == 0
    assert profiles["rows_read"] == 0
    assert requests == []


def test_run_auth_error_fails_fast(tmp_path: Path) -> None:
    config = partition_config(tmp_path, MIXED_ROWS[:2])
    error = FixedError(403, "permission_denied", "You do not have permission to perform this.")
    with RecordingProxy(error=error) as proxy:
        result = run_partition(config, proxy.base_url)
        posts = proxy.bodies("/api/event-bulk-create-jobs")

    failures = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    messages = " ".join(event.event_specific_data.error.to_string() for event in failures)
    log = SyncLog(tmp_path / "state.duckdb").latest_outcomes(PARTITION, "event")
    assert not result.success
    assert "events:write" in messages
    assert len(posts) == 1
    assert "rejected" not in set(log["status"])
