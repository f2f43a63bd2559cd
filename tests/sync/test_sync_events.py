"""Tests of the event sync against the in-memory Klaviyo."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from klaviyo_pipeline.klaviyo import (
    ApiErrorDetail,
    DryRunKlaviyoClient,
    FakeKlaviyoClient,
    KlaviyoApiError,
    KlaviyoFatalError,
    KlaviyoValidationError,
)
from klaviyo_pipeline.klaviyo.validation import event_bulk_items, item_events
from klaviyo_pipeline.sync import sync_events
from tests.sync.helpers import assert_reconciled, event_keys, events_per_body
from tests.sync.records import PARTITION, event_frame, event_row, events

EVENTS = "event_bulk_create"


def run(records, client, config, sync_log, run_id="run-1", backfill=False, **options):
    return sync_events(
        records,
        client,
        config,
        sync_log,
        partition=PARTITION,
        run_id=run_id,
        backfill=backfill,
        **options,
    )


def bodies(fake: FakeKlaviyoClient) -> list[dict]:
    return [request.body for request in fake.requests_to(EVENTS)]


def unique_ids(body: dict) -> list[str]:
    return [
        event["attributes"]["unique_id"]
        for item in event_bulk_items(body) or []
        for event in item_events(item)
    ]


class RejectingFake(FakeKlaviyoClient):
    """Fake that returns 400 for a body with one of the given unique_ids, with a chosen pointer."""

    def __init__(self, bad_ids: set[str], pointer: str | None = "/data", status: int = 400):
        super().__init__()
        self.bad_ids = bad_ids
        self.pointer = pointer
        self.status = status

    def _store_events(self, encoded):
        if self.bad_ids & set(unique_ids(json.loads(encoded))):
            detail = ApiErrorDetail(code="invalid", detail="bad event", pointer=self.pointer)
            raise KlaviyoApiError(self.status, EVENTS, (detail,))
        super()._store_events(encoded)


def test_sends_all_in_batches(fake, config, sync_log):
    records = events(2500)
    report = run(records, fake, config, sync_log)

    assert report.count("sent", "accepted") == 2500
    assert report.requests == 3
    assert [events_per_body(body) for body in bodies(fake)] == [1000, 1000, 500]
    assert len(fake.events) == 2500
    rows = assert_reconciled(sync_log, PARTITION, "event", "run-1", records)
    assert set(rows["status"]) == {"sent"}
    assert rows["attempts"].eq(1).all()


def test_empty_input_sends_nothing(fake, config, sync_log):
    report = run(events(1).iloc[0:0], fake, config, sync_log)

    assert fake.requests == []
    assert report.records == 0
    assert report.requests == 0
    assert report.status_counts == {status: 0 for status in report.status_counts}
    assert sync_log.latest_outcomes(PARTITION).empty


def test_batch_size_config_applies(fake, config, sync_log):
    report = run(events(25), fake, config.model_copy(update={"event_batch_size": 10}), sync_log)

    assert report.requests == 3
    assert [events_per_body(body) for body in bodies(fake)] == [10, 10, 5]


def test_repeated_key_deduplicated(fake, config, sync_log):
    rows = [
        event_row(1, email="a@example.com", unique_id="order-1", properties={"v": 1}),
        event_row(2, email="a@example.com", unique_id="order-1", properties={"v": 2}),
        event_row(3, email="a@example.com", unique_id="order-1", metric="Refunded Order"),
    ]
    records = event_frame(rows)
    report = run(records, fake, config, sync_log)

    assert report.count("deduplicated", "duplicate_unique_id") == 1
    assert report.count("sent") == 2
    assert max(event_keys(bodies(fake)).values()) == 1
    kept = [event for event in fake.events if event["metric"] == "Placed Order"]
    assert kept[0]["attributes"]["properties"] == {"v": 1}
    outcomes = report.outcomes.set_index("record_id")
    assert outcomes.loc["2", "status"] == "deduplicated"


def test_invalid_row_rejected_rest_sent(fake, config, sync_log):
    rows = [event_row(i) for i in range(1000)]
    rows[500] = event_row(500, metric="M" * 200)
    records = event_frame(rows)
    report = run(records, fake, config, sync_log)

    assert report.count("sent") == 999
    assert report.count("rejected", "klaviyo_invalid") == 1
    assert report.requests == 2
    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["500"]
    assert rejected["klaviyo_code"].tolist() == ["invalid"]
    assert "metric name" in rejected["klaviyo_detail"].iat[0]
    assert len(fake.events) == 999
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


def test_first_error_only_still_isolates(config, sync_log):
    fake = FakeKlaviyoClient(report_all_errors=False)
    rows = [event_row(i) for i in range(20)]
    for i in (3, 9, 15):
        rows[i] = event_row(i, email=f"bad{i}")
    report = run(event_frame(rows), fake, config, sync_log)

    assert report.count("rejected") == 3
    assert report.count("sent") == 17
    assert report.requests == 4


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a":1},"value":99,"b":{}'])
def test_malformed_properties_text_is_rejected(fake, config, sync_log, text):
    records = events(10)
    records.loc[4, "properties"] = text
    report = run(records, fake, config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["4"]
    assert rejected["reason"].tolist() == ["mapping_failed"]
    assert report.count("sent") == 9
    assert len(fake.events) == 9
    assert all("value" not in event["attributes"] for event in fake.events)


def test_unmapped_error_bisects(config, sync_log):
    fake = RejectingFake({"order-37"}, pointer="/data")
    records = events(100)
    report = run(records, fake, config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["37"]
    assert report.count("sent") == 99
    # Bisection of 100 records sends about 2 * log2(100) requests, not 100.
    assert report.requests <= 16
    assert len(fake.events) == 99


def test_error_without_pointer_bisects(config, sync_log):
    fake = RejectingFake({"order-3"}, pointer=None)
    report = run(events(8), fake, config, sync_log)

    assert report.count("rejected") == 1
    assert report.count("sent") == 7


def test_item_pointer_isolates_event(config, sync_log):
    fake = RejectingFake({"u2"}, pointer="/data/attributes/events-bulk-create/data/0")
    rows = [
        event_row(i, email="a@example.com", profile_key="a", unique_id=f"u{i}") for i in range(4)
    ]
    rows.append(event_row(4, email="b@example.com"))
    report = run(event_frame(rows), fake, config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["2"]
    assert report.count("sent") == 4


def test_profile_pointer_rejects_item(fake, config, sync_log):
    rows = [
        event_row(i, email="not-an-email", profile_key="bad", unique_id=f"u{i}") for i in range(3)
    ]
    rows.append(event_row(3))
    report = run(event_frame(rows), fake, config, sync_log)

    assert report.count("rejected", "klaviyo_invalid") == 3
    assert report.count("sent") == 1
    assert report.requests == 2


def test_conflict_reason(config, sync_log):
    fake = RejectingFake({"order-1"}, pointer=None, status=409)
    report = run(events(1, start=1), fake, config, sync_log)

    assert report.count("rejected", "klaviyo_conflict") == 1


def test_413_splits_batch(fake, config, sync_log):
    fake.fail_next(1, status=413, code="payload_too_large", endpoint=EVENTS)
    report = run(events(10), fake, config, sync_log)

    assert report.count("sent") == 10
    assert report.requests == 3
    assert [events_per_body(body) for body in bodies(fake)] == [10, 5, 5]


def test_413_single_event_rejected(config, sync_log):
    fake = RejectingFake({"order-2"}, pointer=None, status=413)
    report = run(events(4), fake, config, sync_log)

    assert report.count("rejected", "klaviyo_too_large") == 1
    assert report.count("sent") == 3


def test_oversized_event_rejected_before_sending(fake, config, sync_log):
    rows = [event_row(0), event_row(1, properties={f"p{i}": "x" * 99_000 for i in range(60)})]
    report = run(event_frame(rows), fake, config, sync_log)

    assert report.count("rejected", "record_too_large") == 1
    assert report.count("sent") == 1
    assert all("order-1" not in unique_ids(body) for body in bodies(fake))


def test_retries_transient_errors(fake, config, sync_log):
    fake.fail_next(2, status=503)
    report = run(events(5), fake, config, sync_log)

    assert report.count("sent") == 5
    assert report.requests == 3
    assert report.retries == 2
    assert report.outcomes["attempts"].eq(3).all()


@pytest.mark.parametrize("kind", ["timeout", "connection", "protocol"])
def test_retries_transport_errors(fake, config, sync_log, kind):
    fake.fail_next(1, status=None, transport=kind)
    report = run(events(5), fake, config, sync_log)

    assert report.count("sent") == 5
    assert report.retries == 1


def test_retry_after_processing_no_duplicate(fake, config, sync_log):
    fake.fail_next(1, status=504, after_processing=True)
    records = events(50)
    report = run(records, fake, config, sync_log)

    assert report.count("sent") == 50
    assert report.requests == 2
    assert len(fake.events) == 50
    assert fake.duplicates_dropped == 50


def test_throttle_counted(fake, config, sync_log):
    fake.fail_next(2, status=429, retry_after=0.01)
    report = run(events(5), fake, config, sync_log)

    assert report.count("sent") == 5
    assert report.throttles == 2


def test_exhausted_batch_fails_then_resends(fake, config, sync_log):
    fake.fail_next(config.max_attempts, status=500)
    records = events(30)
    limited = config.model_copy(update={"event_batch_size": 10})
    report = run(records, fake, limited, sync_log)

    assert report.count("failed", "retries_exhausted") == 10
    assert report.count("sent") == 20
    failed = report.outcomes[report.outcomes["status"] == "failed"]
    assert failed["attempts"].eq(config.max_attempts).all()

    second = run(records, fake, limited, sync_log, run_id="run-2")
    assert second.count("sent", "accepted") == 10
    assert second.count("sent", "already_sent") == 20
    assert second.requests == 1
    assert len(fake.events) == 30


def test_stops_after_consecutive_exhausted(fake, config, sync_log):
    fake.fail_next(1000, status=503)
    limited = config.model_copy(update={"event_batch_size": 10, "max_attempts": 2})
    records = events(60)
    report = run(records, fake, limited, sync_log)

    assert report.count("failed", "retries_exhausted") == 30
    assert report.count("failed", "not_attempted") == 30
    assert report.requests == 6
    assert any("Stopped sending" in note for note in report.notes)
    assert_reconciled(sync_log, PARTITION, "event", "run-1", records)


@pytest.mark.parametrize(("status", "expected"), [(401, "KLAVIYO_API_KEY"), (403, "events:write")])
def test_auth_error_stops_run(fake, config, sync_log, status, expected):
    fake.fail_next(1000, status=status, code="not_authenticated")
    records = events(2500)
    with pytest.raises(KlaviyoFatalError, match=expected) as raised:
        run(records, fake, config, sync_log)

    assert len(fake.requests) == 1
    report = raised.value.report
    assert report.count("failed", "not_attempted") == 2500
    assert report.count("rejected") == 0
    rows = assert_reconciled(sync_log, PARTITION, "event", "run-1", records)
    assert set(rows["reason"]) == {"not_attempted"}


def test_revision_gone_names_revision(fake, config, sync_log):
    fake.fail_next(1, status=410, code="gone")
    with pytest.raises(KlaviyoFatalError, match=fake.revision):
        run(events(3), fake, config, sync_log)


def test_fatal_mid_run_keeps_sent(fake, config, sync_log):
    records = events(30)
    limited = config.model_copy(update={"event_batch_size": 10})

    class FailSecond(FakeKlaviyoClient):
        def _store_events(self, body):
            if len(self.requests) == 2:
                raise KlaviyoApiError(403, EVENTS, (ApiErrorDetail(code="permission_denied"),))
            super()._store_events(body)

    client = FailSecond()
    with pytest.raises(KlaviyoFatalError):
        run(records, client, limited, sync_log)

    rows = assert_reconciled(sync_log, PARTITION, "event", "run-1", records)
    assert (rows["status"] == "sent").sum() == 10
    assert (rows["reason"] == "not_attempted").sum() == 20
    assert len(client.requests) == 2


def test_rerun_skips_sent(fake, config, sync_log):
    records = events(40)
    run(records, fake, config, sync_log)
    report = run(records, fake, config, sync_log, run_id="run-2")

    assert report.count("sent", "already_sent") == 40
    assert report.requests == 0
    assert len(fake.requests) == 1
    assert_reconciled(sync_log, PARTITION, "event", "run-2", records)


def test_rerun_changed_content_noted(fake, config, sync_log):
    records = events(5)
    run(records, fake, config, sync_log)
    changed = records.copy()
    changed.loc[2, "properties"] = '{"OrderId":"2","total":12}'
    changed.loc[2, "content_hash"] = "changed"
    report = run(changed, fake, config, sync_log, run_id="run-2")

    assert report.count("sent", "already_sent") == 5
    assert report.requests == 0
    assert any(note.startswith("1 event(s) were already in Klaviyo") for note in report.notes)
    assert any("keeps the first version" in note for note in report.notes)


def test_full_resend_sends_again(fake, config, sync_log):
    records = events(5)
    run(records, fake, config, sync_log)
    report = run(records, fake, config.model_copy(update={"full_resend": True}), sync_log, "run-2")

    assert report.count("sent", "accepted") == 5
    assert report.requests == 1
    assert len(fake.events) == 5


def test_rejected_not_resent_until_changed(fake, config, sync_log):
    rows = [event_row(0), event_row(1, time="2099-01-01T00:00:00+00:00")]
    records = event_frame(rows)
    run(records, fake, config, sync_log)
    second = run(records, fake, config, sync_log, run_id="run-2")

    assert second.count("rejected", "klaviyo_invalid") == 1
    assert second.requests == 0
    assert any("not sent again" in note for note in second.notes)

    fixed = records.copy()
    fixed.loc[1, "time"] = "2024-05-01T00:00:00+00:00"
    fixed.loc[1, "content_hash"] = "fixed"
    third = run(fixed, fake, config, sync_log, run_id="run-3")
    assert third.count("sent", "accepted") == 1
    assert third.requests == 1


def test_backfill_flag_in_body(fake, config, sync_log):
    run(events(3), fake, config, sync_log, backfill=True)
    (body,) = bodies(fake)

    for item in event_bulk_items(body):
        assert item["attributes"]["backfill"] is True
        for event in item_events(item):
            assert event["attributes"]["backfill"] is True


def test_dry_run_records_skipped(config, sync_log):
    client = DryRunKlaviyoClient()
    rows = [event_row(i) for i in range(10)]
    rows[4] = event_row(4, email="broken")
    records = event_frame(rows)
    report = run(records, client, config, sync_log)

    assert report.dry_run
    assert report.count("skipped", "dry_run") == 10
    assert report.count("sent") == 0
    assert report.count("rejected") == 0
    outcomes = report.outcomes.set_index("record_id")
    assert outcomes.loc["4", "klaviyo_code"] == "invalid"
    assert len(client.requests) == 2
    assert any("Dry run" in note for note in report.notes)

    real = FakeKlaviyoClient()
    after = run(records, real, config, sync_log, run_id="run-2")
    assert after.count("sent", "accepted") == 9


def test_dry_run_sdk_model_validation():
    client = DryRunKlaviyoClient()
    body = {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "profile": {
                                    "data": {
                                        "type": "profile",
                                        "attributes": {"email": "a@example.com"},
                                    }
                                },
                                "events": {
                                    "data": [
                                        {
                                            "type": "event",
                                            "attributes": {
                                                "properties": {},
                                                "unique_id": 5,
                                                "metric": {
                                                    "data": {
                                                        "type": "metric",
                                                        "attributes": {"name": "M"},
                                                    }
                                                },
                                            },
                                        }
                                    ]
                                },
                            },
                        }
                    ]
                }
            },
        }
    }
    with pytest.raises(KlaviyoValidationError) as raised:
        client.send_event_bulk(json.dumps(body).encode())

    (error,) = raised.value.errors
    pointer = (
        "/data/attributes/events-bulk-create/data/0/attributes/events/data/0/attributes/unique_id"
    )
    assert error.pointer == pointer
    assert client.requests == []


def test_killed_mid_sync_resumes(fake, config, sync_log):
    records = events(30)
    limited = config.model_copy(update={"event_batch_size": 10})

    class KilledAfterSecond(FakeKlaviyoClient):
        def _store_events(self, body):
            super()._store_events(body)
            if len(self.requests) == 2:
                raise KeyboardInterrupt

    client = KilledAfterSecond()
    with pytest.raises(KeyboardInterrupt):
        run(records, client, limited, sync_log)
    first = sync_log.run_outcomes(PARTITION, "event", "run-1")
    assert (first["status"] == "sent").sum() == 10
    assert (first["reason"] == "not_attempted").sum() == 20

    client.__class__ = FakeKlaviyoClient
    report = run(records, client, limited, sync_log, run_id="run-2")
    assert report.count("sent", "already_sent") == 10
    assert report.count("sent", "accepted") == 20
    assert len(client.events) == 30
    assert client.duplicates_dropped == 10


def test_logs_mask_emails(fake, config, sync_log, caplog):
    rows = [event_row(0, email="secret.person@example.com"), event_row(1, email="x@y")]
    with caplog.at_level(logging.DEBUG):
        run(event_frame(rows), fake, config, sync_log)

    assert "secret.person@example.com" not in caplog.text
    assert "x@y" not in caplog.text or "x***@y" in caplog.text
    latest = sync_log.latest_outcomes(PARTITION, "event")
    assert not latest["identity"].str.contains("secret.person").any()
    assert not latest["profile_key_hash"].str.contains("@").any()


def test_missing_column_raises(fake, config, sync_log):
    records = events(2).drop(columns=["unique_id"])
    with pytest.raises(ValueError, match="unique_id"):
        run(records, fake, config, sync_log)


def test_outcomes_follow_input_rows(fake, config, sync_log):
    records = events(5).iloc[::-1]
    report = run(records, fake, config, sync_log)

    assert report.outcomes["row_id"].tolist() == [0, 1, 2, 3, 4]
    assert isinstance(report.outcomes, pd.DataFrame)


def test_rerun_with_duplicates_skips(fake, config, sync_log):
    rows = [
        event_row(1, email="a@example.com", unique_id="order-1"),
        event_row(2, email="a@example.com", unique_id="order-1"),
        event_row(3, email="b@example.com", unique_id="order-3", time="2099-01-01T00:00:00+00:00"),
        event_row(4, email="b@example.com", unique_id="order-3", time="2099-01-01T00:00:00+00:00"),
    ]
    records = event_frame(rows)
    run(records, fake, config, sync_log)
    report = run(records, fake, config, sync_log, run_id="run-2")

    assert report.count("sent", "already_sent") == 1
    assert report.count("rejected", "klaviyo_invalid") == 1
    assert report.count("deduplicated", "duplicate_unique_id") == 2
    assert report.requests == 0


def test_contract_breaks_settled(fake, config, sync_log):
    rows = [event_row(i) for i in range(6)]
    rows[1] = dict(event_row(1), email=None, profile_key="none")
    rows[2] = dict(event_row(2), unique_id=None)
    rows[3] = dict(event_row(3), metric="")
    rows[4] = dict(event_row(4), value=float("inf"))
    rows[5] = dict(event_row(5), time=None)
    records = event_frame(rows)
    records["email"] = records["email"].astype(object)
    records.loc[0, "phone_number"] = pd.NA
    report = run(records, fake, config, sync_log)
    outcomes = report.outcomes.set_index("record_id")

    assert outcomes.loc["0", "status"] == "sent"
    assert outcomes.loc["1", "reason"] == "no_identifier"
    assert outcomes.loc["1", "status"] == "skipped"
    assert outcomes.loc["2", "reason"] == "unique_id_missing"
    assert outcomes.loc["3", "reason"] == "invalid_name"
    assert outcomes.loc["4", "reason"] == "value_invalid"
    assert outcomes.loc["5", "reason"] == "time_missing"
    (body,) = bodies(fake)
    profile = event_bulk_items(body)[0]["attributes"]["profile"]["data"]["attributes"]
    assert profile == {"email": "user0@example.com"}
