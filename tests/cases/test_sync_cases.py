"""Hard input cases decided by the sync: the real SDK against the local Klaviyo server with
faults, or against the recording proxy when a status must come back that the server does not
inject. Each test asserts on the sync log's terminal states and reasons or on what Klaviyo stored.
"""

import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from klaviyo_pipeline import settings
from klaviyo_pipeline.assets import is_backfill
from klaviyo_pipeline.config import parse_config
from klaviyo_pipeline.klaviyo import (
    FakeKlaviyoClient,
    KlaviyoFatalError,
    KlaviyoResource,
    SdkKlaviyoClient,
)
from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from klaviyo_pipeline.records import MappedPartition
from klaviyo_pipeline.sync import sync_events
from klaviyo_pipeline.sync_log import SyncLog
from klaviyo_pipeline.sync_run import SyncOutcome
from tests.cases.rows import PARTITION, case_config, map_cases
from tests.cases.wire import API_KEY, FixedError, RecordingProxy, sent_events, sync_cases

BULK_EVENTS = "/api/event-bulk-create-jobs"
USER = {"email": "user@example.com"}


def order(order_id: str, email: str = "user@example.com", **data: Any) -> dict[str, Any]:
    return {
        "event": "order complete",
        "user": {"email": email},
        "data": {"id": order_id, "total": 5, **data},
    }


def identify(user: dict[str, Any], **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "user": user, "traits": traits}


def logged(
    state_database: str, run_id: str = "run-1", stream: str = "event", partition: str = PARTITION
) -> pd.DataFrame:
    """Return the sync log rows of one run, indexed by record id."""
    return SyncLog(state_database).run_outcomes(partition, stream, run_id).set_index("record_id")


def test_out_of_range_time_logged(server: LocalKlaviyoServer, state_database: str) -> None:
    rows = [{**order("ORD-1003"), "timestamp": "1970-01-01T00:00:00Z"}, order("ORD-1003B")]
    outcome = sync_cases(map_cases(rows), case_config(), server.base_url, state_database)

    log = logged(state_database)
    assert log.loc["0", "status"] == "rejected"
    assert log.loc["0", "reason"] == "time_out_of_range"
    assert log.loc["1", "status"] == "sent"
    assert outcome.status_counts["rejected"] == 1
    assert outcome.status_counts["sent"] == 1
    assert [event["unique_id"] for event in server.events()] == ["ORD-1003B"]


def test_profile_upsert_rerun_no_op(server: LocalKlaviyoServer, state_database: str) -> None:
    mapped = map_cases([identify(USER, plan="gold")])
    config = case_config()

    first = sync_cases(
        mapped, config, server.base_url, state_database, run_id="run-1", stream="profile"
    )
    second = sync_cases(
        mapped, config, server.base_url, state_database, run_id="run-2", stream="profile"
    )

    assert first.status_counts["sent"] == 1
    assert second.status_counts["sent"] == 1
    assert second.status_counts["failed"] == 0
    assert second.reason_counts == {"sent: already_sent": 1}
    assert len(server.profiles()) == 1


def test_profile_upsert_resend_updates(server: LocalKlaviyoServer, state_database: str) -> None:
    # Sending the same profile again (full_resend) is an upsert: no failure, no second profile.
    mapped = map_cases([identify(USER, plan="gold")])
    config = case_config(sync={"full_resend": True})

    sync_cases(mapped, config, server.base_url, state_database, run_id="run-1", stream="profile")
    second = sync_cases(
        mapped, config, server.base_url, state_database, run_id="run-2", stream="profile"
    )

    assert second.reason_counts == {"sent: accepted": 1}
    assert len(server.profiles()) == 1
    assert server.profiles()[0]["properties"] == {"plan": "gold"}


def test_bad_profile_email_rejected_alone(server: LocalKlaviyoServer, state_database: str) -> None:
    rows = [
        identify({"email": "user@example.com"}),
        identify({"email": "not-an-email"}),
        identify({"email": "user2@example.com"}),
    ]
    outcome = sync_cases(
        map_cases(rows), case_config(), server.base_url, state_database, stream="profile"
    )

    log = logged(state_database, stream="profile")
    assert outcome.status_counts["sent"] == 2
    assert outcome.status_counts["rejected"] == 1
    assert log.loc["p1", "reason"] == "email_invalid"
    assert sorted(profile["email"] for profile in server.profiles()) == [
        "user2@example.com",
        "user@example.com",
    ]


def _force_time(mapped: MappedPartition, time_text: str) -> MappedPartition:
    # Klaviyo's own check rejects this time; the pre-flight check would reject it first, so
    # the test sets it on the record after mapping.
    mapped.events["time"] = time_text
    return mapped


def test_invalid_event_not_retried(server: LocalKlaviyoServer, state_database: str) -> None:
    config = case_config()
    invalid = _force_time(map_cases([order("ORD-1014")]), "2099-01-01T00:00:00Z")

    first = sync_cases(invalid, config, server.base_url, state_database, run_id="run-1")
    second = sync_cases(invalid, config, server.base_url, state_database, run_id="run-2")
    requests_after_second = len(server.requests())
    changed = sync_cases(
        map_cases([order("ORD-1014", total=6)]),
        config,
        server.base_url,
        state_database,
        run_id="run-3",
    )

    log = logged(state_database)
    assert first.status_counts["rejected"] == 1
    assert log.loc["0", "attempts"] == 1
    assert "future" in log.loc["0", "klaviyo_detail"]
    assert second.status_counts["rejected"] == 1
    assert second.requests == 0
    assert requests_after_second == 1
    assert changed.status_counts["sent"] == 1
    assert len(server.events()) == 1


@pytest.mark.parametrize(
    "other_email",
    [
        # both events in one bulk item: the pointer names the event inside the item
        "user@example.com",
        # two items: the pointer names the second item's event
        "user2@example.com",
    ],
)
def test_long_metric_rejected_rest_resent(
    other_email: str, proxy: RecordingProxy, server: LocalKlaviyoServer, state_database: str
) -> None:
    mapped = map_cases([order("ORD-1015A"), order("ORD-1015B", email=other_email)])
    mapped.events.loc[mapped.events["unique_id"] == "ORD-1015B", "metric"] = "x" * 200
    outcome = sync_cases(mapped, case_config(), proxy.base_url, state_database)

    log = logged(state_database)
    requests = proxy.bodies(BULK_EVENTS)
    assert outcome.status_counts["rejected"] == 1
    assert outcome.status_counts["sent"] == 1
    assert log.loc["1", "reason"] == "klaviyo_invalid"
    assert "200 characters" in log.loc["1", "klaviyo_detail"]
    assert [event["unique_id"] for event in sent_events(requests[-1:])] == ["ORD-1015A"]
    assert [event["unique_id"] for event in server.events()] == ["ORD-1015A"]


def test_long_metric_rejected_before_sending() -> None:
    # Without a rule, the metric is the event name; an overlong one is caught before sending.
    rows = [order("ORD-1015A"), {**order("ORD-1015B"), "event": "order " + "x" * 200}]
    mapped = map_cases(rows)

    rejected = mapped.outcomes.set_index("row_id").loc[1]
    assert rejected["reason"] == "metric_name_too_long"
    assert mapped.events["unique_id"].tolist() == ["ORD-1015A"]


@pytest.mark.parametrize(
    ("length", "sent"),
    [
        # the maximum length: Klaviyo requires fewer than 128 characters
        (127, True),
        # one character over
        (128, False),
    ],
)
def test_metric_length_boundary(length: int, sent: bool) -> None:
    name = "order " + "x" * (length - len("order "))
    mapped = map_cases([{**order("ORD-1016"), "event": name}])

    assert len(mapped.events) == (1 if sent else 0)
    assert mapped.outcomes.empty == sent


def test_metric_of_127_passes_fake(tmp_path: Path) -> None:
    # The fake applies Klaviyo's rules locally, so it must accept what Klaviyo accepts.
    name = "order " + "x" * 121
    mapped = map_cases([{**order("ORD-1016"), "event": name}])
    report = sync_events(
        mapped.events,
        FakeKlaviyoClient(),
        case_config().sync,
        SyncLog(tmp_path / "state.duckdb"),
        partition=PARTITION,
        run_id="run-1",
        backfill=False,
    )

    assert report.status_counts["rejected"] == 0


def _sync_thread(
    results: dict[str, SyncOutcome], rows: int, partition: str, base_url: str, state: str
) -> threading.Thread:
    cases = [order(f"{partition}-{i}", email=f"user{i}@example.com") for i in range(rows)]
    mapped = map_cases(cases)
    # Ten events per request give the request counts of 1,000-event jobs at a hundredth of
    # the rows, so the requests come faster than Klaviyo's burst limit of 10 per second.
    config = case_config(sync={"event_batch_size": 10})

    def run() -> None:
        results[partition] = sync_cases(mapped, config, base_url, state, partition=partition)

    return threading.Thread(target=run)


def test_parallel_partitions_share_limits(server: LocalKlaviyoServer, state_database: str) -> None:
    # 12 bulk requests for one partition while another partition backfills at the same time,
    # both with one account key: the shared limiter keeps both within Klaviyo's limits.
    results: dict[str, SyncOutcome] = {}
    threads = [
        _sync_thread(results, 120, "2024-05-01", server.base_url, state_database),
        _sync_thread(results, 60, "2024-04-30", server.base_url, state_database),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    throttled = sum(1 for request in server.requests() if request["status"] == 429)
    assert results["2024-05-01"].status_counts["sent"] == 120
    assert results["2024-04-30"].status_counts["sent"] == 60
    assert results["2024-05-01"].status_counts["failed"] == 0
    assert results["2024-04-30"].status_counts["failed"] == 0
    assert results["2024-05-01"].requests == 12 + results["2024-05-01"].throttled
    assert len(server.events()) == 180
    assert sum(result.throttled for result in results.values()) == throttled
    assert all(result.wait_seconds >= 0 for result in results.values())


def _wait_for_responses(server: LocalKlaviyoServer, count: int) -> None:
    """Wait until the server has responded to `count` requests; a delayed one responds late."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        responded = [request for request in server.requests() if request["status"] is not None]
        if len(responded) >= count:
            return
        time.sleep(0.05)


def test_read_timeout_retried_once_stored(server: LocalKlaviyoServer, state_database: str) -> None:
    server.set_faults({"next": 1, "delay_seconds": 1.0, "paths": [BULK_EVENTS]})
    config = case_config(sync={"read_timeout_seconds": 0.3})
    outcome = sync_cases(map_cases([order("ORD-1017")]), config, server.base_url, state_database)
    _wait_for_responses(server, 2)

    log = logged(state_database)
    assert outcome.status_counts["sent"] == 1
    assert log.loc["0", "attempts"] == 2
    assert len(server.events()) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_transient_status_retried(
    status: int, server: LocalKlaviyoServer, state_database: str
) -> None:
    server.set_faults({"next": 2, "status": status, "paths": [BULK_EVENTS]})
    outcome = sync_cases(
        map_cases([order("ORD-1018")]), case_config(), server.base_url, state_database
    )

    assert outcome.status_counts["sent"] == 1
    assert logged(state_database).loc["0", "attempts"] == 3
    assert len(server.events()) == 1


def test_retries_bounded_then_failed(server: LocalKlaviyoServer, state_database: str) -> None:
    server.set_faults({"fraction": 1.0, "status": 502, "paths": [BULK_EVENTS]})
    outcome = sync_cases(
        map_cases([order("ORD-1018")]),
        case_config(sync={"max_attempts": 3}),
        server.base_url,
        state_database,
    )

    log = logged(state_database)
    assert outcome.status_counts["failed"] == 1
    assert log.loc["0", "reason"] == "retries_exhausted"
    assert log.loc["0", "attempts"] == 3
    assert len(server.requests()) == 3


@pytest.mark.parametrize(
    ("status", "code", "named"),
    [
        # a key without the events:write scope
        (403, "permission_denied", "events:write"),
        # a revoked or mistyped key
        (401, "not_authenticated", "KLAVIYO_API_KEY"),
    ],
)
def test_auth_error_stops_without_rejects(
    status: int, code: str, named: str, state_database: str
) -> None:
    error = FixedError(status, code, "You do not have permission to perform this action.")
    rows = [order("ORD-1019A"), order("ORD-1019B", email="user2@example.com")]
    with RecordingProxy(error=error) as proxy:
        with pytest.raises(KlaviyoFatalError) as raised:
            sync_cases(map_cases(rows), case_config(), proxy.base_url, state_database)
        requests = proxy.bodies(BULK_EVENTS)

    log = logged(state_database)
    assert named in str(raised.value)
    assert len(requests) == 1
    assert "rejected" not in set(log["status"])
    assert set(log["status"]) == {"failed"}


def test_revision_gone_names_revision(tmp_path: Path) -> None:
    mapped = map_cases([order("ORD-1021")])
    error = FixedError(410, "gone", "This API revision is no longer supported.")
    with RecordingProxy(error=error) as proxy:
        client = SdkKlaviyoClient(
            API_KEY,
            proxy.base_url,
            connect_timeout_seconds=2,
            read_timeout_seconds=5,
            rate_limiter=None,
            revision="2023-02-22",
        )
        with pytest.raises(KlaviyoFatalError) as raised:
            sync_events(
                mapped.events,
                client,
                case_config().sync,
                SyncLog(tmp_path / "s.duckdb"),
                partition=PARTITION,
                run_id="run-1",
                backfill=False,
            )
        requests = proxy.bodies(BULK_EVENTS)

    assert "2023-02-22" in str(raised.value)
    assert [request.headers.get("revision") for request in requests] == ["2023-02-22"]


def test_default_revision_recent() -> None:
    # Klaviyo stops serving old revisions with 410, so the default must stay under two years old.
    released = date.fromisoformat(settings.API_REVISION)
    assert released > datetime.now(UTC).date() - timedelta(days=2 * 365)


def test_revision_config_value() -> None:
    raw = {
        "partitions": {"start": "2024-01-01"},
        "source": {"kind": "files", "path": "unused.ndjson"},
        "destination": {"settings": {"apiKey": "pk_test_cases_key"}},
        "sync": {"api_revision": "2025-07-15"},
    }
    config = parse_config(raw)
    client = KlaviyoResource(api_key=API_KEY, base_url="http://127.0.0.1:9").get_client(config.sync)

    assert client.revision == "2025-07-15"


def test_import_job_failure_reported(server: LocalKlaviyoServer, state_database: str) -> None:
    config = case_config()
    seed = [identify({"email": "ann@example.com"}), identify({"phone": "+14155552671"})]
    sync_cases(
        map_cases(seed),
        config,
        server.base_url,
        state_database,
        partition="2024-04-30",
        stream="profile",
    )
    # The first row names two existing profiles, so the job reports it as failed.
    rows = [
        identify({"email": "ann@example.com", "phone": "+14155552671"}),
        identify({"email": "bob@example.com"}),
        identify({"email": "cy@example.com"}),
    ]
    outcome = sync_cases(map_cases(rows), config, server.base_url, state_database, stream="profile")

    log = logged(state_database, stream="profile")
    paths = [request["path"] for request in server.requests() if request["method"] == "GET"]
    assert outcome.status_counts["sent"] == 2
    assert outcome.status_counts["rejected"] == 1
    assert log.loc["p0", "klaviyo_code"] == "duplicate_profile"
    assert log.loc["p0", "reason"] == "import_error"
    assert any(path.rstrip("/").endswith("import-errors") for path in paths)
    assert any(path.rstrip("/").split("/")[-2] == "profile-bulk-import-jobs" for path in paths)


def test_rerun_changed_order_noted(
    proxy: RecordingProxy, server: LocalKlaviyoServer, state_database: str
) -> None:
    partition = "2023-01-15"
    config = case_config()
    backfill = is_backfill(config, partition)
    row = {**order("ORD-1038", total=10), "timestamp": "2023-01-15T12:00:00Z"}
    sync_cases(
        map_cases([row]),
        config,
        proxy.base_url,
        state_database,
        partition=partition,
        backfill=backfill,
    )
    first_requests = len(proxy.bodies(BULK_EVENTS))
    changed = {**row, "data": {"id": "ORD-1038", "total": 12}}
    second = sync_cases(
        map_cases([changed]),
        config,
        proxy.base_url,
        state_database,
        partition=partition,
        run_id="run-2",
        backfill=backfill,
    )

    (event,) = sent_events(proxy.bodies(BULK_EVENTS))
    assert backfill
    assert event["backfill"] is True
    assert second.reason_counts == {"sent: already_sent": 1}
    assert any("keeps the first version" in note for note in second.notes)
    assert len(proxy.bodies(BULK_EVENTS)) == first_requests
    assert [stored["value"] for stored in server.events()] == [10]


def test_missing_identity_counted(server: LocalKlaviyoServer, state_database: str) -> None:
    rows = [
        {
            "event": "order complete",
            "user": {"email": None, "phone": None, "id": None},
            "data": {"id": "ORD-1039", "total": 10},
        },
        order("ORD-1040"),
    ]
    outcome = sync_cases(map_cases(rows), case_config(), server.base_url, state_database)

    assert outcome.rows_read == 2
    assert outcome.reason_counts["skipped: no_identifier"] == 1
    assert outcome.status_counts["sent"] == 1
    assert logged(state_database).loc["0", "reason"] == "no_identifier"


@pytest.mark.parametrize("stream", ["event", "profile"])
def test_empty_partition_sends_nothing(
    stream: str, proxy: RecordingProxy, state_database: str
) -> None:
    outcome = sync_cases(
        map_cases([]), case_config(), proxy.base_url, state_database, stream=stream
    )

    assert proxy.requests == []
    assert outcome.rows_read == 0
    assert outcome.status_counts["sent"] == 0
    assert outcome.requests == 0
