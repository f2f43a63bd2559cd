"""Fixtures of the sync tests: a sync log in a temporary folder and a fast retry config."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo import FakeKlaviyoClient
from klaviyo_pipeline.sync_log import SyncLog


@pytest.fixture
def sync_log(tmp_path: Path) -> SyncLog:
    """Return an empty sync log in the test's temporary folder."""
    return SyncLog(tmp_path / "state.duckdb")


@pytest.fixture
def config() -> SyncConfig:
    """Return a sync config whose backoffs and polls take milliseconds, one request at a time.

    Fault plans such as "fail the next 4 requests" only name a batch when batches go out
    in order.
    """
    return SyncConfig(
        max_in_flight=1,
        max_attempts=4,
        backoff_base_seconds=0.001,
        backoff_max_seconds=0.01,
        job_poll_interval_seconds=0.001,
        job_poll_timeout_seconds=5.0,
    )


@pytest.fixture
def fake() -> FakeKlaviyoClient:
    """Return an empty in-memory Klaviyo."""
    return FakeKlaviyoClient()
