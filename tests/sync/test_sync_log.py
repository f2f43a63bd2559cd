"""Tests of the DuckDB sync log."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest

from klaviyo_pipeline.sync_log import INPUT_COLUMNS, SyncLog, hash_key

PARTITION = "2024-05-01"


def rows(
    run_id: str, statuses: list[str], *, content: str = "c", stream: str = "event"
) -> pd.DataFrame:
    count = len(statuses)
    return pd.DataFrame(
        {
            "partition": PARTITION,
            "stream": stream,
            "record_id": [f"r{i}" for i in range(count)],
            "run_id": run_id,
            "row_id": list(range(count)),
            "record_key": [hash_key("k", i) for i in range(count)],
            "unique_id": [f"u{i}" for i in range(count)],
            "metric": "Placed Order",
            "identity": "email=u***@example.com",
            "profile_key_hash": [hash_key("k", i) for i in range(count)],
            "content_hash": content,
            "status": statuses,
            "reason": ["accepted" if s == "sent" else "not_attempted" for s in statuses],
            "klaviyo_code": None,
            "klaviyo_detail": None,
            "attempts": 1,
        }
    )


def test_record_replaces_within_run(sync_log):
    sync_log.record(rows("run-1", ["failed", "failed"]))
    sync_log.record(rows("run-1", ["sent", "sent"]).iloc[:1])
    logged = sync_log.run_outcomes(PARTITION, "event", "run-1")

    assert len(logged) == 2
    assert logged["status"].tolist() == ["sent", "failed"]


def test_one_row_per_record_and_run(sync_log):
    sync_log.record(rows("run-1", ["failed", "sent"]))
    sync_log.record(rows("run-2", ["sent", "sent"]))
    latest = sync_log.latest_outcomes(PARTITION, "event")

    assert len(latest) == 2
    assert latest["run_id"].tolist() == ["run-2", "run-2"]
    assert len(sync_log.run_outcomes(PARTITION, "event", "run-1")) == 2


def test_sent_records_latest_only(sync_log):
    sync_log.record(rows("run-1", ["sent", "sent", "failed"]))
    sync_log.record(rows("run-2", ["sent", "failed", "failed"]))
    sent = sync_log.sent_records(PARTITION, "event")

    assert sorted(sent["unique_id"]) == ["u0"]


def test_prior_outcomes_sent_hashes(sync_log):
    sync_log.record(rows("run-1", ["sent"], content="first"))
    sync_log.record(rows("run-2", ["sent"], content="second"))
    sync_log.record(rows("run-3", ["failed"], content="third"))
    (prior,) = sync_log.prior_outcomes(PARTITION, "event").itertuples()

    assert prior.first_sent_hash == "first"
    assert prior.last_sent_hash == "second"
    assert prior.status == "failed"
    assert prior.content_hash == "third"


def test_streams_and_partitions_apart(sync_log):
    sync_log.record(rows("run-1", ["sent"]))
    sync_log.record(rows("run-1", ["failed"], stream="profile"))

    assert sync_log.latest_outcomes(PARTITION, "profile")["status"].tolist() == ["failed"]
    assert len(sync_log.latest_outcomes(PARTITION)) == 2
    assert sync_log.latest_outcomes("2024-05-02").empty


def test_missing_columns_raise(sync_log):
    with pytest.raises(ValueError, match="status"):
        sync_log.record(rows("run-1", ["sent"]).drop(columns=["status"]))


def test_input_columns_complete():
    assert set(rows("run-1", ["sent"]).columns) == set(INPUT_COLUMNS)


def test_waits_for_other_process_lock(tmp_path):
    path = tmp_path / "state.duckdb"
    SyncLog(path).record(rows("run-0", ["sent"]))
    holder = textwrap.dedent(
        f"""
        import sys, time, duckdb
        connection = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep(1.0)
        connection.close()
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        SyncLog(path, lock_timeout_seconds=30).record(rows("run-1", ["sent"]))
    finally:
        process.wait(timeout=30)

    latest = SyncLog(path).latest_outcomes(PARTITION)
    assert latest["run_id"].tolist() == ["run-1"]


def test_lock_timeout_raises(tmp_path):
    path = tmp_path / "state.duckdb"
    SyncLog(path).record(rows("run-0", ["sent"]))
    holder = textwrap.dedent(
        f"""
        import time, duckdb
        connection = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep(3.0)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match=r"(?i)lock"):
            SyncLog(path, lock_timeout_seconds=0.2).record(rows("run-1", ["sent"]))
    finally:
        process.kill()
        process.wait(timeout=30)


def test_threads_write_concurrently(tmp_path):
    errors: list[BaseException] = []

    def write(partition: str) -> None:
        sync_log = SyncLog(tmp_path / "state.duckdb")
        try:
            for run in range(10):
                frame = rows(f"run-{run}", ["sent"] * 20).assign(partition=partition)
                sync_log.record(frame)
                sync_log.prior_outcomes(partition, "event")
        except BaseException as error:  # collected and checked in the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(f"p{index}",)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for index in range(3):
        assert len(SyncLog(tmp_path / "state.duckdb").latest_outcomes(f"p{index}")) == 20
