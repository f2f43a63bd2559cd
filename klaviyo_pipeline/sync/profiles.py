"""Profile sync: imports a partition's profile records as profile bulk import jobs.

A 202 for a job means Klaviyo accepted it, not that the profiles were imported. The sync
polls each job until it is ``complete``, then reads the job's import errors and rejects
the records they name with Klaviyo's detail. Only the other records count as sent. A job
created without an id in the response failed and is created again within the retry budget.

Jobs run one after another. A job that reports more failed profiles than its errors name
is imported again in halves until each failed profile is alone, which is safe because an
import is an upsert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import pandas as pd

from klaviyo_pipeline import settings
from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo.classify import ErrorAction
from klaviyo_pipeline.klaviyo.client import ImportJob, ImportRowError, KlaviyoClient
from klaviyo_pipeline.klaviyo.errors import ApiErrorDetail, KlaviyoFatalError
from klaviyo_pipeline.outcomes import Reason
from klaviyo_pipeline.sync.profile_bodies import (
    PROFILE_COLUMNS,
    ProfileBody,
    ProfilePayloads,
    build_profile_body,
    build_profile_payloads,
    map_profile_pointer,
    match_original_payload,
    plan_profile_batches,
)
from klaviyo_pipeline.sync.report import SyncReport
from klaviyo_pipeline.sync.retry import RequestFailed, RetriesExhausted
from klaviyo_pipeline.sync.session import (
    Logger,
    SyncSession,
    check_columns,
    empty_report,
    order_records,
)
from klaviyo_pipeline.sync_log import SyncLog

_logger = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

# Proposed additions to ``outcomes.Reason`` (status ``failed``, retried on the next run).
JOB_TIMEOUT = "job_timeout"
JOB_CANCELLED = "job_cancelled"


class _JobOutcomeUnknown(Exception):
    """Polling or reading the errors of a job failed; the job's rows are retried."""

    def __init__(self, reason: str, detail: str, attempts: int = 0) -> None:
        self.reason = reason
        self.detail = detail
        self.attempts = attempts
        super().__init__(detail)


def sync_profiles(
    records: pd.DataFrame,
    client: KlaviyoClient,
    config: SyncConfig,
    sync_log: SyncLog,
    *,
    partition: str,
    run_id: str,
    logger: Logger | None = None,
) -> SyncReport:
    """Import a partition's profile records into Klaviyo and record one outcome per record.

    Args:
        records: Profile records (columns as in ``PROFILE_COLUMNS``), one per upsert.
        client: The Klaviyo client; a dry-run client records rows as skipped.
        config: Job size, polling, retry budget and resend policy.
        sync_log: Where outcomes are written after every job.
        partition: Partition key (YYYY-MM-DD).
        run_id: Id of this run, stored on every sync log row.
        logger: Logger, such as Dagster's ``context.log``.

    Returns:
        The report. Every record ends in exactly one terminal status.

    Raises:
        KlaviyoFatalError: After a 401, 403, 410 or other configuration error, with the
            records not yet imported in the sync log as ``failed`` / ``not_attempted``.
    """
    log = logger or _logger
    if records.empty:
        log.info("No profiles to sync for partition %s; no request was sent", partition)
        return empty_report("profile", partition, run_id, bool(client.dry_run))

    check_columns(records, PROFILE_COLUMNS, "profile")
    ordered = order_records(records)
    session = SyncSession.start(
        ordered, "profile", client, config, sync_log, partition=partition, run_id=run_id, logger=log
    )
    session.skip_settled(immutable=False)

    payloads = build_profile_payloads(ordered)
    session.settle_payload_errors(payloads.errors)
    max_profiles = min(config.profile_batch_size, settings.MAX_PROFILES_PER_IMPORT_JOB)
    batches = plan_profile_batches(
        session.ledger.undecided(), payloads, max_profiles, settings.MAX_PAYLOAD_BYTES
    )
    session.write()

    log.info(
        "Importing %d of %d profiles of partition %s in %d jobs",
        sum(len(batch) for batch in batches),
        len(ordered),
        partition,
        len(batches),
    )
    importer = _ProfileImporter(session, payloads)
    try:
        importer.import_all(batches)
    except KlaviyoFatalError as error:
        session.stopped(error)
        log.error("Profile sync of partition %s stopped: %s", partition, error)
        raise

    report = session.finish()
    log.info(
        "Profile sync of partition %s finished: %s; %d job(s), %d request(s)",
        partition,
        report.describe_counts(),
        report.jobs,
        report.requests,
    )
    return report


class _ProfileImporter:
    """Creates, polls and settles import jobs."""

    def __init__(self, session: SyncSession, payloads: ProfilePayloads) -> None:
        self.session = session
        self.payloads = payloads

    def import_all(self, batches: list[list[int]]) -> None:
        for number, batch in enumerate(batches, start=1):
            exhausted = self.import_batch(batch, f"profile job {number}/{len(batches)}")
            self.session.write(batch)
            if not self.session.batch_finished(exhausted):
                return

    def import_batch(self, positions: list[int], description: str) -> bool:
        """Import one batch and settle each record; return True if retries ran out."""
        session = self.session
        body = build_profile_body(positions, self.payloads)
        try:
            job, attempts = session.runner.run(
                description, lambda: session.client.create_profile_import_job(body.body)
            )
        except RetriesExhausted as error:
            session.ledger.add_attempts(positions, error.attempts)
            session.ledger.mark_failed(positions, Reason.RETRIES_EXHAUSTED, str(error.error))
            return True
        except RequestFailed as failure:
            session.ledger.add_attempts(positions, failure.attempts)
            return self._handle_rejection(positions, body, failure, description)
        except KlaviyoFatalError:
            session.ledger.add_attempts(positions, 1)
            raise
        session.ledger.add_attempts(positions, attempts)
        session.report.jobs += 1

        try:
            job = self._wait_for_job(job, description)
            errors = self._read_errors(job, description) if job.failed_count else []
        except _JobOutcomeUnknown as unknown:
            session.ledger.mark_failed(positions, unknown.reason, unknown.detail)
            session.logger.warning(
                "%s: %s; its profiles are retried on the next run", description, unknown
            )
            return unknown.reason == Reason.RETRIES_EXHAUSTED
        return self._settle(positions, body, job, errors, description)

    def _wait_for_job(self, job: ImportJob, description: str) -> ImportJob:
        config = self.session.config
        deadline = time.monotonic() + config.job_poll_timeout_seconds
        while not job.finished:
            if time.monotonic() >= deadline:
                detail = (
                    f"job {job.id} was still {job.status} after "
                    f"{config.job_poll_timeout_seconds:g} s"
                )
                raise _JobOutcomeUnknown(JOB_TIMEOUT, detail)
            time.sleep(config.job_poll_interval_seconds)
            job = self._request(
                f"{description} status",
                lambda job_id=job.id: self.session.client.get_profile_import_job(job_id),
            )
        if job.status == "cancelled":
            raise _JobOutcomeUnknown(JOB_CANCELLED, f"Klaviyo cancelled job {job.id}")
        return job

    def _read_errors(self, job: ImportJob, description: str) -> list[ImportRowError]:
        errors: list[ImportRowError] = []
        cursor: str | None = None
        while True:
            page = self._request(
                f"{description} import errors",
                lambda cursor=cursor: self.session.client.get_profile_import_errors_page(
                    job.id, cursor
                ),
            )
            errors.extend(page.errors)
            if not page.next_cursor or page.next_cursor == cursor:
                return errors
            cursor = page.next_cursor

    def _request(self, description: str, call: Callable[[], ResultT]) -> ResultT:
        try:
            result, _ = self.session.runner.run(description, call)
        except RetriesExhausted as error:
            raise _JobOutcomeUnknown(Reason.RETRIES_EXHAUSTED, str(error), error.attempts) from None
        except RequestFailed as failure:
            # A 4xx on a job's own status or errors names no row of the job.
            raise _JobOutcomeUnknown(Reason.RETRIES_EXHAUSTED, str(failure.error)) from None
        return result

    def _settle(
        self,
        positions: list[int],
        body: ProfileBody,
        job: ImportJob,
        errors: list[ImportRowError],
        description: str,
    ) -> bool:
        rejected: dict[int, ImportRowError] = {}
        unmatched: list[ImportRowError] = []
        for error in errors:
            target = map_profile_pointer(error.pointer, body) or match_original_payload(
                error.original_payload, body, self.payloads
            )
            if target is None:
                unmatched.append(error)
                continue
            for position in target.positions:
                rejected.setdefault(position, error)
        for position, error in rejected.items():
            self.session.ledger.mark_rejected(
                [position], Reason.IMPORT_ERROR, error.code, error.detail
            )
        if rejected:
            self.session.logger.warning(
                "%s: Klaviyo rejected %d profiles of job %s, first: %s %s",
                description,
                len(rejected),
                job.id,
                next(iter(rejected.values())).code,
                self.session.ledger.detail[next(iter(rejected))],
            )

        rest = [position for position in positions if position not in rejected]
        if not unmatched and job.failed_count <= len(rejected):
            self.session.ledger.mark_accepted(rest)
            return False
        return self._isolate_unmatched(rest, unmatched, job, description)

    def _isolate_unmatched(
        self, rest: list[int], unmatched: list[ImportRowError], job: ImportJob, description: str
    ) -> bool:
        """Import the unsettled records again in halves until each failed one is alone."""
        if not rest:
            return False
        if len(rest) == 1:
            first = unmatched[0] if unmatched else None
            detail = first.detail if first else f"job {job.id} reported the profile as failed"
            self.session.ledger.mark_rejected(
                rest, Reason.IMPORT_ERROR, first.code if first else None, detail
            )
            return False
        self.session.logger.warning(
            "%s: %d import errors of job %s name no profile of the job; importing %d "
            "profiles again in halves to find them",
            description,
            max(len(unmatched), 1),
            job.id,
            len(rest),
        )
        middle = len(rest) // 2
        exhausted = self.import_batch(rest[:middle], description)
        return self.import_batch(rest[middle:], description) or exhausted

    def _handle_rejection(
        self, positions: list[int], body: ProfileBody, failure: RequestFailed, description: str
    ) -> bool:
        """Settle a job request that failed with 400, 409, 413 or 422."""
        classification = failure.classification
        errors: tuple[ApiErrorDetail, ...] = getattr(failure.error, "errors", ())
        reason = classification.reason or Reason.KLAVIYO_INVALID.value
        if len(positions) == 1:
            first = errors[0] if errors else ApiErrorDetail(detail=str(failure.error))
            self.session.ledger.mark_rejected(positions, reason, first.code, first.detail)
            return False
        if classification.action is ErrorAction.SPLIT:
            middle = len(positions) // 2
            exhausted = self.import_batch(positions[:middle], description)
            return self.import_batch(positions[middle:], description) or exhausted

        named: dict[int, ApiErrorDetail] = {}
        for error in errors:
            target = map_profile_pointer(error.pointer, body)
            for position in target.positions if target else []:
                named.setdefault(position, error)
        if not named:
            middle = len(positions) // 2
            exhausted = self.import_batch(positions[:middle], description)
            return self.import_batch(positions[middle:], description) or exhausted
        for position, error in named.items():
            self.session.ledger.mark_rejected([position], reason, error.code, error.detail)
        rest = [position for position in positions if position not in named]
        return self.import_batch(rest, description) if rest else False
