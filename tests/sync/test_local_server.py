"""Integration tests: the sync through the real SDK against the local Klaviyo server.

Each test ends with zero lost and zero duplicated events in the server's store and a sync
log in which every record of the run has exactly one terminal state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo import RateLimiter, SdkKlaviyoClient
from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from klaviyo_pipeline.sync import sync_events, sync_profiles
from klaviyo_pipeline.sync_log import SyncLog
from tests.sync.helpers import assert_reconciled
from tests.sync.records import PARTITION, event_frame, event_row, events, profile_frame, profile_row

# Rate-limit windows pass this many times faster than real time: 60 s lasts 2 s.
TIME_SCALE = 30.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with LocalKlaviyoServer(
        port=0, time_scale=TIME_SCALE, rate_limits=True, job_steps=2
    ) as running:
        yield running


@pytest.fixture
def config() -> SyncConfig:
    return SyncConfig(
        max_in_flight=1,
        max_attempts=8,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.1,
        read_timeout_seconds=5.0,
        job_poll_interval_seconds=0.01,
    )


def make_client(server: LocalKlaviyoServer, config: SyncConfig, limiter=None, **options):
    return SdkKlaviyoClient(
        options.pop("api_key", "pk_test_local"),
        server.base_url,
        connect_timeout_seconds=config.connect_timeout_seconds,
        read_timeout_seconds=config.read_timeout_seconds,
        rate_limiter=limiter or RateLimiter(config.rate_limits, time_scale=TIME_SCALE),
        **options,
    )


def run_events(records, client, config, sync_log, run_id="run-1", partition=PARTITION):
    return sync_events(
        records, client, config, sync_log, partition=partition, run_id=run_id, backfill=False
    )


def assert_store_matches(server: LocalKlaviyoServer, expected_ids: set[str]) -> None:
    """Assert the server stored each expected unique_id once and nothing else."""
    stored = Counter(event["unique_id"] for event in server.events())
    assert set(stored) == expected_ids
    assert max(stored.values(), default=1) == 1


def sent_ids(report) -> set[str]:
    sent = report.outcomes[report.outcomes["status"] == "sent"]
    return {f"order-{record_id}" for record_id in sent["record_id"]}


def test_sync_through_sdk(server, config, sync_log):
    records = events(1500)
    report = run_events(records, make_client(server, config), config, sync_log)

    assert report.count("sent", "accepted") == 1500
    assert report.requests == 2
    assert_store_matches(server, {f"order-{i}" for i in range(1500)})
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


@pytest.mark.parametrize("status", [503, 502, 429])
def test_fifth_of_requests_fail(server, config, sync_log, status):
    server.set_faults({"fraction": 0.2, "status": status, "seed": 7})
    records = events(200)
    limited = config.model_copy(update={"event_batch_size": 20})
    report = run_events(records, make_client(server, config), limited, sync_log)

    assert report.count("sent") == 200
    assert report.count("failed") == 0
    assert report.retries > 0
    if status == 429:
        assert report.throttles == report.retries
    assert_store_matches(server, {f"order-{i}" for i in range(200)})
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


@pytest.mark.parametrize("in_flight", [2, 4])
def test_concurrent_sends_under_faults(server, config, sync_log, in_flight):
    server.set_faults({"fraction": 0.2, "status": 503, "seed": 11})
    records = events(300)
    parallel = config.model_copy(update={"event_batch_size": 20, "max_in_flight": in_flight})
    report = run_events(records, make_client(server, config), parallel, sync_log)

    assert report.count("sent") == 300
    assert report.count("failed") == 0
    assert report.retries > 0
    assert_store_matches(server, {f"order-{i}" for i in range(300)})
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


@pytest.mark.parametrize("mode", ["before_body", "after_body", "after_apply"])
def test_dropped_connections(server, config, sync_log, mode):
    server.set_faults({"fraction": 0.3, "drop": mode, "seed": 3})
    records = events(300)
    limited = config.model_copy(update={"event_batch_size": 20})
    report = run_events(records, make_client(server, config), limited, sync_log)

    assert report.count("sent") == 300
    assert report.retries > 0
    assert_store_matches(server, {f"order-{i}" for i in range(300)})
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


def test_slow_response_times_out(server, config, sync_log):
    server.set_faults({"next": 1, "delay_seconds": 1.5})
    quick = config.model_copy(update={"read_timeout_seconds": 0.3})
    records = events(50)
    report = run_events(records, make_client(server, quick), quick, sync_log)

    assert report.count("sent") == 50
    assert report.retries == 1
    time.sleep(1.5)
    assert_store_matches(server, {f"order-{i}" for i in range(50)})


def test_invalid_row_in_full_batch(server, config, sync_log):
    rows = [event_row(i) for i in range(1000)]
    rows[613] = event_row(613, metric="M" * 200)
    records = event_frame(rows)
    report = run_events(records, make_client(server, config), config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["613"]
    assert rejected["klaviyo_code"].tolist() == ["invalid"]
    assert "128" in rejected["klaviyo_detail"].iat[0]
    assert report.count("sent") == 999
    assert report.requests == 2
    assert_store_matches(server, {f"order-{i}" for i in range(1000)} - {"order-613"})
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


def test_import_job_failed_rows(server, config, sync_log):
    rows = [profile_row(0), profile_row(1, email="not-an-email"), profile_row(2)]
    records = profile_frame(rows)
    report = sync_profiles(
        records, make_client(server, config), config, sync_log, partition=PARTITION, run_id="run-1"
    )

    assert report.count("sent", "accepted") == 2
    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["p1"]
    assert rejected["reason"].tolist() == ["import_error"]
    assert "email" in rejected["klaviyo_detail"].iat[0]
    emails = sorted(profile["email"] for profile in server.profiles())
    assert emails == ["user0@example.com", "user2@example.com"]
    assert_reconciled(sync_log, PARTITION, "profile", "run-1", records)


def test_import_job_under_faults(server, config, sync_log):
    server.set_faults({"fraction": 0.25, "status": 503, "seed": 11})
    records = profile_frame([profile_row(i) for i in range(50)])
    limited = config.model_copy(update={"profile_batch_size": 10})
    report = sync_profiles(
        records, make_client(server, config), limited, sync_log, partition=PARTITION, run_id="run-1"
    )

    assert report.count("sent") == 50
    assert report.jobs == 5
    assert len(server.profiles()) == 50


def test_killed_process_resumes(server, tmp_path):
    state_db = tmp_path / "state.duckdb"
    count, batch_size = 1_000, 25
    command = [
        sys.executable,
        "-m",
        "tests.sync.sync_child",
        server.base_url,
        str(state_db),
        str(count),
        str(batch_size),
        str(TIME_SCALE),
        "run-1",
    ]
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    child = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while len(server.requests()) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    stored_before = len(server.events())
    assert 0 < stored_before < count

    sync_log = SyncLog(state_db)
    config = SyncConfig(event_batch_size=batch_size, backoff_base_seconds=0.01)
    records = events(count)
    report = run_events(records, make_client(server, config), config, sync_log, run_id="run-2")

    assert report.count("sent") == count
    assert report.count("sent", "already_sent") > 0
    assert_store_matches(server, {f"order-{i}" for i in range(count)})
    assert_reconciled(sync_log, PARTITION, "event", "run-2", records)


def test_three_partitions_in_threads(config, tmp_path):
    # 165 small requests exceed the 150 of one steady window (2 s at this time scale), so
    # when the three threads together send faster than 75 requests/s, the shared limiter
    # slows them down.
    time_scale = TIME_SCALE
    sync_log = SyncLog(tmp_path / "state.duckdb")
    limited = config.model_copy(update={"event_batch_size": 5})
    limiter = RateLimiter(limited.rate_limits, time_scale=time_scale)
    partitions = ["2024-05-01", "2024-05-02", "2024-05-03"]
    frames = {
        partition: events(275, start=index * 100_000).assign(partition=partition)
        for index, partition in enumerate(partitions)
    }
    reports: dict[str, object] = {}
    errors: list[BaseException] = []

    def sync_partition(partition: str) -> None:
        try:
            client = make_client(server, limited, limiter=limiter)
            reports[partition] = run_events(
                frames[partition], client, limited, sync_log, partition=partition
            )
        except BaseException as error:  # collected and checked in the main thread
            errors.append(error)

    threads = [threading.Thread(target=sync_partition, args=(p,)) for p in partitions]
    with LocalKlaviyoServer(port=0, time_scale=time_scale) as server:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stored = server.events()

    assert errors == []
    requests = sum(report.requests for report in reports.values())
    throttles = sum(report.throttles for report in reports.values())
    # 165 requests: more than the 150 of one steady window.
    assert requests >= 165
    # The limiter paces all three syncs together, so at most a few requests meet a 429.
    assert throttles <= requests * 0.05
    for partition in partitions:
        assert reports[partition].count("sent") == 275
        assert_reconciled(sync_log, partition, "event", "run-1", frames[partition])
    expected = set()
    for frame in frames.values():
        expected |= {f"order-{row_id}" for row_id in frame["row_id"]}
    counts = Counter(event["unique_id"] for event in stored)
    assert set(counts) == expected
    assert max(counts.values()) == 1
