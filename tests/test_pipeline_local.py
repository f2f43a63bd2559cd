"""The REES46 example materialized through Dagster and the real SDK against the local server."""

import json
from collections import Counter
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from klaviyo_pipeline.config import load_config
from klaviyo_pipeline.definitions import build_definitions
from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer

PARTITION = "2019-10-01"


@pytest.fixture
def server():
    with LocalKlaviyoServer(port=0) as running:
        yield running


@pytest.fixture
def config(tmp_path):
    example = load_config()
    sync = example.sync.model_copy(update={"state_database": str(tmp_path / "state.duckdb")})
    return example.model_copy(update={"sync": sync})


def _materialize(config, instance):
    definitions = build_definitions(config)
    return materialize(
        list(definitions.assets),
        partition_key=PARTITION,
        resources=dict(definitions.resources),
        instance=instance,
    )


def _sync_metadata(result, asset_name):
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset_name:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"{asset_name} was not materialized")


@pytest.fixture
def local_env(server, monkeypatch):
    monkeypatch.setenv("KLAVIYO_BASE_URL", server.base_url)
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_local_test_key")
    return server


def test_example_partition_syncs_every_row(config, local_env):
    result = _materialize(config, DagsterInstance.ephemeral())
    metadata = _sync_metadata(result, "klaviyo_event_sync")
    stored = local_env.events()

    assert result.success
    assert metadata["rows_read"] == 1000
    assert metadata["rows_sent"] == 1000
    assert metadata["metrics"]["Viewed Product"] == {"sent": 987}
    assert metadata["metrics"]["Added to Cart"] == {"sent": 3}
    assert metadata["metrics"]["Placed Order"] == {"sent": 10}
    assert len(stored) == metadata["rows_sent"]
    assert Counter(event["metric"] for event in stored) == {
        "Viewed Product": 987,
        "Added to Cart": 3,
        "Placed Order": 10,
    }
    assert all(event["backfill"] is True for event in stored)


def test_placed_order_carries_value_and_currency(config, local_env):
    _materialize(config, DagsterInstance.ephemeral())
    orders = [event for event in local_env.events() if event["metric"] == "Placed Order"]

    assert len(orders) == 10
    assert all(isinstance(order["value"], float) for order in orders)
    assert {order["value_currency"] for order in orders} == {"USD"}


def test_rerun_sends_nothing_twice(config, local_env):
    instance = DagsterInstance.ephemeral()
    _materialize(config, instance)
    second = _materialize(config, instance)
    metadata = _sync_metadata(second, "klaviyo_event_sync")
    keys = [
        (json.dumps(e["profile"], sort_keys=True), e["metric"], e["unique_id"])
        for e in local_env.events()
    ]

    assert second.success
    assert metadata["rows_sent"] == 1000
    assert metadata["reasons"].get("sent: already_sent") == 1000
    assert len(keys) == 1000
    assert len(set(keys)) == 1000


def test_dry_run_without_api_key(config, monkeypatch, server):
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    monkeypatch.setenv("KLAVIYO_BASE_URL", server.base_url)
    result = _materialize(config, DagsterInstance.ephemeral())
    metadata = _sync_metadata(result, "klaviyo_event_sync")

    assert metadata["dry_run"] is True
    assert metadata["rows_sent"] == 0
    assert metadata["rows_skipped"] == 1000
    assert server.events() == []


def test_sync_log_has_one_row_per_record(config, local_env):
    import duckdb

    _materialize(config, DagsterInstance.ephemeral())
    with duckdb.connect(str(Path(config.sync.state_database)), read_only=True) as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM sync_log WHERE stream = 'event' GROUP BY status"
        ).fetchall()
    assert dict(rows) == {"sent": 1000}
