"""Tests of the profile sync against the in-memory Klaviyo."""

from __future__ import annotations

import json

import pytest

from klaviyo_pipeline.klaviyo import (
    ApiErrorDetail,
    DryRunKlaviyoClient,
    FakeKlaviyoClient,
    ImportJob,
    KlaviyoApiError,
    KlaviyoFatalError,
)
from klaviyo_pipeline.klaviyo.validation import profile_import_items
from klaviyo_pipeline.sync import sync_profiles
from tests.sync.helpers import assert_reconciled
from tests.sync.records import PARTITION, profile_frame, profile_row, profiles

IMPORT = "profile_bulk_import"
JOB = "profile_bulk_import_job"
ERRORS = "profile_bulk_import_errors"


def run(records, client, config, sync_log, run_id="run-1"):
    return sync_profiles(records, client, config, sync_log, partition=PARTITION, run_id=run_id)


def job_bodies(fake: FakeKlaviyoClient) -> list[dict]:
    return [request.body for request in fake.requests_to(IMPORT)]


def test_imports_and_polls(config, sync_log):
    fake = FakeKlaviyoClient(job_steps=3)
    records = profiles(30)
    report = run(records, fake, config, sync_log)

    assert report.count("sent", "accepted") == 30
    assert report.jobs == 1
    assert len(fake.requests_to(JOB)) == 3
    assert fake.requests_to(ERRORS) == []
    assert len(fake.profiles) == 30
    assert fake.profiles["email:user1@example.com"]["first_name"] == "Ann1"
    assert_reconciled(sync_log, PARTITION, "profile", "run-1", records)


def test_body_has_no_nulls(fake, config, sync_log):
    records = profile_frame(
        [profile_row(1, attributes={"first_name": "A", "location": {"city": "B"}})]
    )
    run(records, fake, config, sync_log)
    (body,) = job_bodies(fake)

    assert profile_import_items(body) == [
        {
            "type": "profile",
            "attributes": {
                "email": "user1@example.com",
                "first_name": "A",
                "location": {"city": "B"},
            },
        }
    ]


def test_job_errors_reject_rows(config, sync_log):
    fake = FakeKlaviyoClient(errors_page_size=2)
    rows = [profile_row(i) for i in range(10)]
    for i in (1, 4, 7):
        rows[i] = profile_row(i, email=f"not-an-email-{i}")
    records = profile_frame(rows)
    report = run(records, fake, config, sync_log)

    assert report.count("sent", "accepted") == 7
    assert report.count("rejected", "import_error") == 3
    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["p1", "p4", "p7"]
    assert rejected["klaviyo_detail"].str.contains("invalid email").all()
    # Three errors at two per page: two pages, the second found by its cursor.
    assert [r.arguments["cursor"] for r in fake.requests_to(ERRORS)] == [None, "2"]
    assert report.jobs == 1


def test_errors_matched_by_payload(config, sync_log):
    class PayloadOnly(FakeKlaviyoClient):
        def _create_job(self, body):
            job = super()._create_job(body)
            stored = self._jobs[job.id]
            stored.errors = [
                type(error)(error.code, error.title, error.detail, None, error.original_payload)
                for error in stored.errors
            ]
            return job

    rows = [profile_row(0), profile_row(1, email="broken"), profile_row(2)]
    report = run(profile_frame(rows), PayloadOnly(), config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["p1"]
    assert report.count("sent") == 2


def test_unmatched_failures_bisect(config, sync_log):
    class Anonymous(FakeKlaviyoClient):
        """Reports import errors with neither pointer nor payload."""

        def _create_job(self, body):
            job = super()._create_job(body)
            stored = self._jobs[job.id]
            stored.errors = [
                type(error)(error.code, error.title, error.detail, f"#{index}", None)
                for index, error in enumerate(stored.errors)
            ]
            return job

    rows = [profile_row(i) for i in range(8)]
    rows[5] = profile_row(5, email="broken")
    report = run(profile_frame(rows), Anonymous(), config, sync_log)

    rejected = report.outcomes[report.outcomes["status"] == "rejected"]
    assert rejected["record_id"].tolist() == ["p5"]
    assert report.count("sent") == 7
    assert report.jobs <= 7


def test_missing_job_id_retried(fake, config, sync_log):
    fake.fail_next(1, status=None, no_job_id=True, endpoint=IMPORT)
    report = run(profiles(3), fake, config, sync_log)

    assert report.count("sent") == 3
    assert len(fake.requests_to(IMPORT)) == 2
    assert report.jobs == 1


def test_missing_job_id_exhausted(fake, config, sync_log):
    fake.fail_next(100, status=None, no_job_id=True, endpoint=IMPORT)
    report = run(profiles(3), fake, config, sync_log)

    assert report.count("failed", "retries_exhausted") == 3
    assert len(fake.requests_to(IMPORT)) == config.max_attempts


def test_poll_errors_retried(fake, config, sync_log):
    fake.fail_next(2, status=503, endpoint=JOB)
    report = run(profiles(3), fake, config, sync_log)

    assert report.count("sent") == 3
    assert len(fake.requests_to(JOB)) == 3


def test_error_pages_retried(config, sync_log):
    fake = FakeKlaviyoClient()
    fake.fail_next(1, status=None, transport="timeout", endpoint=ERRORS)
    rows = [profile_row(0), profile_row(1, email="broken")]
    report = run(profile_frame(rows), fake, config, sync_log)

    assert report.count("rejected", "import_error") == 1
    assert report.count("sent") == 1


def test_job_timeout_fails_rows(config, sync_log):
    fake = FakeKlaviyoClient(job_steps=10**6)
    quick = config.model_copy(update={"job_poll_timeout_seconds": 0.05})
    report = run(profiles(3), fake, quick, sync_log)

    assert report.count("failed", "job_timeout") == 3
    assert report.count("sent") == 0


def test_cancelled_job_fails_rows(config, sync_log):
    class Cancelling(FakeKlaviyoClient):
        def _poll(self, body, job_id):
            state = super()._poll(body, job_id)
            return ImportJob(state.id, "cancelled", state.total_count)

    report = run(profiles(3), Cancelling(), config, sync_log)

    assert report.count("failed", "job_cancelled") == 3


def test_create_400_with_pointer(config, sync_log):
    class Strict(FakeKlaviyoClient):
        def _create_job(self, body):
            for index, profile in enumerate(profile_import_items(json.loads(body))):
                if profile["attributes"].get("first_name") == "bad":
                    pointer = f"/data/attributes/profiles/data/{index}/attributes/first_name"
                    detail = ApiErrorDetail(code="invalid", detail="bad name", pointer=pointer)
                    raise KlaviyoApiError(400, IMPORT, (detail,))
            return super()._create_job(body)

    rows = [profile_row(i) for i in range(5)]
    rows[2] = profile_row(2, attributes={"first_name": "bad"})
    report = run(profile_frame(rows), Strict(), config, sync_log)

    assert report.count("rejected", "klaviyo_invalid") == 1
    assert report.count("sent") == 4
    assert report.outcomes.set_index("record_id").loc["p2", "klaviyo_detail"] == "bad name"


def test_duplicate_profile_conflict(config, sync_log):
    class Conflicting(FakeKlaviyoClient):
        def _create_job(self, body):
            detail = ApiErrorDetail(code="duplicate_profile", detail="exists", pointer="/data")
            raise KlaviyoApiError(409, IMPORT, (detail,))

    report = run(profiles(1), Conflicting(), config, sync_log)

    assert report.count("rejected", "identity_conflict") == 1


def test_same_profile_separate_jobs(fake, config, sync_log):
    rows = [profile_row(1, attributes={"first_name": "Old"}), profile_row(2)]
    rows.append(dict(profile_row(1, attributes={"first_name": "New"}), record_id="p1b", row_id=3))
    report = run(profile_frame(rows), fake, config, sync_log)

    assert report.jobs == 2
    assert fake.profiles["email:user1@example.com"]["first_name"] == "New"


def test_job_size_limit(fake, config, sync_log):
    limited = config.model_copy(update={"profile_batch_size": 4})
    report = run(profiles(10), fake, limited, sync_log)

    assert report.jobs == 3
    assert [len(profile_import_items(body)) for body in job_bodies(fake)] == [4, 4, 2]


def test_oversized_profile_rejected(fake, config, sync_log):
    rows = [profile_row(0), profile_row(1, attributes={"properties": {"blob": "x" * 120_000}})]
    report = run(profile_frame(rows), fake, config, sync_log)

    assert report.count("rejected", "record_too_large") == 1
    assert report.count("sent") == 1


def test_rerun_skips_same_content(fake, config, sync_log):
    records = profiles(4)
    run(records, fake, config, sync_log)
    changed = records.copy()
    changed.loc[0, "attributes"] = '{"first_name":"Changed"}'
    changed.loc[0, "content_hash"] = "changed"
    report = run(changed, fake, config, sync_log, run_id="run-2")

    assert report.count("sent", "already_sent") == 3
    assert report.count("sent", "accepted") == 1
    assert fake.profiles["email:user0@example.com"]["first_name"] == "Changed"


def test_auth_error_stops_profiles(fake, config, sync_log):
    fake.fail_next(10, status=403, code="permission_denied")
    records = profiles(5)
    with pytest.raises(KlaviyoFatalError, match="profiles:write"):
        run(records, fake, config, sync_log)

    assert len(fake.requests) == 1
    rows = assert_reconciled(sync_log, PARTITION, "profile", "run-1", records)
    assert set(rows["reason"]) == {"not_attempted"}


def test_empty_profiles_send_nothing(fake, config, sync_log):
    report = run(profiles(1).iloc[0:0], fake, config, sync_log)

    assert fake.requests == []
    assert report.records == 0


def test_dry_run_profiles(config, sync_log):
    client = DryRunKlaviyoClient()
    rows = [profile_row(0), profile_row(1, email="broken")]
    report = run(profile_frame(rows), client, config, sync_log)

    assert report.count("skipped", "dry_run") == 2
    assert report.count("sent") == 0
    assert client.profiles == {}
    assert report.outcomes.set_index("record_id").loc["p1", "klaviyo_code"] == "invalid"


def test_profile_without_identifier_skipped(fake, config, sync_log):
    rows = [profile_row(0), dict(profile_row(1), email="")]
    report = run(profile_frame(rows), fake, config, sync_log)

    assert report.count("skipped", "no_identifier") == 1
    assert report.count("sent") == 1


def test_client_reads_all_error_pages():
    fake = FakeKlaviyoClient(errors_page_size=2)
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {"type": "profile", "attributes": {"email": f"bad{i}"}} for i in range(5)
                    ]
                }
            },
        }
    }
    job = fake.create_profile_import_job(json.dumps(body).encode())
    errors = fake.get_profile_import_errors(job.id)

    assert len(errors) == 5
    assert len(fake.requests_to(ERRORS)) == 3
