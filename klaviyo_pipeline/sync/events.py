"""Event sync: sends a partition's event records as bulk event requests.

The steps:

1. Deduplicate repeated (profile, metric, unique_id) keys. The first record wins.
2. Skip records that earlier runs settled.
3. Build the payloads and plan batches within the count and 5 MB limits.
4. Write every record to the sync log as in flight, while the first batches go out.
5. Send batch by batch, and write the outcomes of every few batches.

When Klaviyo rejects a batch (400, 409, 422), each error pointer is mapped back to its
record. Those records are rejected with Klaviyo's code and detail, and the rest of the
batch goes out again. An error that names no record, or names an item of several events,
makes the sync split the batch in halves until the invalid record is alone, so no valid
record is rejected with it. A 413 splits the batch the same way.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import pandas as pd

from klaviyo_pipeline import settings
from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo.classify import ErrorAction
from klaviyo_pipeline.klaviyo.client import KlaviyoClient
from klaviyo_pipeline.klaviyo.errors import ApiErrorDetail, KlaviyoFatalError
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.sync.event_bodies import (
    EVENT_COLUMNS,
    EventBody,
    EventPayloads,
    build_event_body,
    build_event_payloads,
    map_event_pointer,
    order_by_profile,
    plan_event_batches,
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
# Maximum time that finished batches wait before their outcomes go to the sync log.
SYNC_LOG_WRITE_SECONDS = 2.0
SYNC_LOG_WRITE_BATCHES = 10
# Rejections logged at WARNING per sync; later ones go to DEBUG and into the counts.
LOGGED_REJECTIONS = 20


def sync_events(
    records: pd.DataFrame,
    client: KlaviyoClient,
    config: SyncConfig,
    sync_log: SyncLog,
    *,
    partition: str,
    run_id: str,
    backfill: bool,
    logger: Logger | None = None,
) -> SyncReport:
    """Send a partition's event records to Klaviyo and record one outcome per record.

    Args:
        records: Event records (columns as in ``EVENT_COLUMNS``), one per event.
        client: The Klaviyo client; a dry-run client records rows as skipped.
        config: Batch size, retry budget and resend policy.
        sync_log: Where outcomes are written after every batch.
        partition: Partition key (YYYY-MM-DD).
        run_id: Id of this run, stored on every sync log row.
        backfill: Send ``backfill: true`` so that the events trigger no flows.
        logger: Logger, such as Dagster's ``context.log``.

    Returns:
        The report. Every record ends in exactly one terminal status.

    Raises:
        KlaviyoFatalError: After a 401, 403, 410 or other configuration error. The
            records not yet sent are in the sync log as ``failed`` / ``not_attempted``,
            and the error's ``report`` contains the counts up to then.
    """
    log = logger or _logger
    if records.empty:
        log.info("No events to sync for partition %s; no request was sent", partition)
        return empty_report("event", partition, run_id, bool(client.dry_run))

    check_columns(records, EVENT_COLUMNS, "event")
    ordered = order_records(records)
    session = SyncSession.start(
        ordered, "event", client, config, sync_log, partition=partition, run_id=run_id, logger=log
    )
    mark_repeated_keys(session)
    session.skip_settled(immutable=True)

    payloads = build_event_payloads(ordered, backfill)
    session.settle_payload_errors(payloads.errors)
    batches = _plan(session, payloads)

    log.info(
        "Syncing %d of %d events of partition %s in %d requests (backfill=%s)",
        sum(len(batch) for batch in batches),
        len(ordered),
        partition,
        len(batches),
        backfill,
    )
    # The first requests go out while every record is written to the sync log as in
    # flight. A run killed before that write ends leaves records with no row, which the
    # next run sends again, and Klaviyo keeps one event per unique_id.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-sync-log") as writer:
        sender = _EventSender(session, payloads, writer.submit(session.write))
        try:
            sender.send_all(batches)
        except KlaviyoFatalError as error:
            session.stopped(error)
            log.error("Event sync of partition %s stopped: %s", partition, error)
            raise

    report = session.finish()
    log.info(
        "Event sync of partition %s finished: %s; %d request(s)",
        partition,
        report.describe_counts(),
        report.requests,
    )
    return report


def _label(number: int, total: int) -> str:
    return f"event batch {number}/{total}"


def mark_repeated_keys(session: SyncSession) -> None:
    """Record all but the first record of each (profile, metric, unique_id) as deduplicated."""
    records = session.records
    repeated = records.duplicated(subset=["profile_key", "metric", "unique_id"], keep="first")
    positions = repeated.to_numpy().nonzero()[0].tolist()
    if not positions:
        return
    session.ledger.mark(positions, Status.DEDUPLICATED, Reason.DUPLICATE_UNIQUE_ID)
    session.logger.info(
        "%d events of partition %s repeat an earlier (profile, metric, unique_id) and were "
        "deduplicated",
        len(positions),
        session.partition,
    )


def _plan(session: SyncSession, payloads: EventPayloads) -> list[list[int]]:
    pending = order_by_profile(session.ledger.undecided(), payloads.codes()[0])
    max_events = min(session.config.event_batch_size, settings.MAX_EVENTS_PER_BULK_REQUEST)
    batches, too_large = plan_event_batches(
        pending, payloads, max_events, settings.MAX_PAYLOAD_BYTES
    )
    detail = "the event alone makes a request body over Klaviyo's limit of 5 MB"
    session.ledger.mark_rejected(too_large, Reason.RECORD_TOO_LARGE, None, detail)
    return batches


class _EventSender:
    """Sends planned batches, isolating invalid records by pointer or by bisection."""

    def __init__(
        self, session: SyncSession, payloads: EventPayloads, first_write: Future[None]
    ) -> None:
        self.session = session
        self.payloads = payloads
        self._first_write: Future[None] | None = first_write
        self.rejections_logged = 0
        self._unwritten: list[int] = []
        self._unwritten_batches = 0
        self._written_at = time.monotonic()

    def send_all(self, batches: list[list[int]]) -> None:
        """Send the batches and write every outcome to the sync log before returning."""
        try:
            self._send_all(batches)
        finally:
            self._flush()

    def _send_all(self, batches: list[list[int]]) -> None:
        """Send the batches with up to `sync.max_in_flight` requests under way at once.

        Batches settle disjoint records, so the sends of different batches never touch the
        same ledger entries; the rate limiter paces all of them together.
        """
        in_flight = max(1, min(self.session.config.max_in_flight, len(batches)))
        if in_flight == 1:
            for number, batch in enumerate(batches, start=1):
                if not self._settle(batch, self.send(batch, _label(number, len(batches)))):
                    return
            return

        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="event-sync") as pool:
            queued = iter(enumerate(batches, start=1))
            running: dict[Future[bool], list[int]] = {}
            stopping = False
            while True:
                while not stopping and len(running) < in_flight:
                    item = next(queued, None)
                    if item is None:
                        break
                    number, batch = item
                    running[pool.submit(self.send, batch, _label(number, len(batches)))] = batch
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    batch = running.pop(future)
                    if future.exception() is not None:
                        # A fatal error stops the sync: the batches still under way finish
                        # and are written before the error goes up.
                        wait(running)
                        for other, other_batch in running.items():
                            if other.exception() is None:
                                self._unwritten.extend(other_batch)
                        raise future.exception()
                    if not self._settle(batch, future.result()):
                        stopping = True

    def _settle(self, batch: list[int], exhausted: bool) -> bool:
        """Record a finished batch; return False once the sync should stop.

        Outcomes go to the sync log every SYNC_LOG_WRITE_BATCHES batches or
        SYNC_LOG_WRITE_SECONDS, whichever comes first, because a write costs a DuckDB
        connection. A run killed in between leaves those records as failed /
        not_attempted, so the next run sends them again, which Klaviyo de-duplicates by
        unique_id.
        """
        self._unwritten.extend(batch)
        self._unwritten_batches += 1
        due = time.monotonic() - self._written_at >= SYNC_LOG_WRITE_SECONDS
        if due or self._unwritten_batches >= SYNC_LOG_WRITE_BATCHES:
            self._flush()
        return self.session.batch_finished(exhausted)

    def _flush(self) -> None:
        if self._first_write is not None:
            # Outcomes replace the in-flight rows, so they are written after them.
            first_write, self._first_write = self._first_write, None
            first_write.result()
        if self._unwritten:
            self.session.write(self._unwritten)
            self._unwritten = []
        self._unwritten_batches = 0
        self._written_at = time.monotonic()

    def send(self, positions: list[int], description: str) -> bool:
        """Send one batch and settle each of its records; return True if retries ran out."""
        session = self.session
        body = build_event_body(positions, self.payloads)
        try:
            _, attempts = session.runner.run(
                description, lambda: session.client.send_event_bulk(body.body)
            )
        except RetriesExhausted as error:
            session.ledger.add_attempts(positions, error.attempts)
            session.ledger.mark_failed(positions, Reason.RETRIES_EXHAUSTED, str(error.error))
            session.logger.warning(
                "%s: %d events failed after %d attempts and are retried on the next run",
                description,
                len(positions),
                error.attempts,
            )
            return True
        except RequestFailed as failure:
            session.ledger.add_attempts(positions, failure.attempts)
            return self._handle_failure(positions, body, failure, description)
        except KlaviyoFatalError:
            session.ledger.add_attempts(positions, 1)
            raise
        session.ledger.add_attempts(positions, attempts)
        session.ledger.mark_accepted(positions)
        return False

    def _handle_failure(
        self, positions: list[int], body: EventBody, failure: RequestFailed, description: str
    ) -> bool:
        classification = failure.classification
        errors: tuple[ApiErrorDetail, ...] = getattr(failure.error, "errors", ())
        reason = classification.reason or Reason.KLAVIYO_INVALID.value
        if len(positions) == 1:
            first = errors[0] if errors else ApiErrorDetail(detail=str(failure.error))
            self._reject(positions, reason, first, description)
            return False
        if classification.action is ErrorAction.SPLIT:
            return self._bisect(positions, description)

        exact: dict[int, ApiErrorDetail] = {}
        suspects: set[int] = set()
        for error in errors:
            target = map_event_pointer(error.pointer, body)
            if target is None:
                continue
            if target.exact:
                for position in target.positions:
                    exact.setdefault(position, error)
            else:
                suspects.update(target.positions)
        suspects -= exact.keys()
        if not exact and not suspects:
            return self._bisect(positions, description)

        for position, error in exact.items():
            self._reject([position], reason, error, description)
        rest = [p for p in positions if p not in exact and p not in suspects]
        exhausted = False
        if suspects:
            exhausted |= self._bisect(sorted(suspects), description)
        if rest:
            exhausted |= self.send(rest, description)
        return exhausted

    def _bisect(self, positions: list[int], description: str) -> bool:
        if len(positions) == 1:
            return self.send(positions, description)
        middle = len(positions) // 2
        exhausted = self.send(positions[:middle], description)
        return self.send(positions[middle:], description) or exhausted

    def _reject(
        self, positions: list[int], reason: str, error: ApiErrorDetail, description: str
    ) -> None:
        self.session.ledger.mark_rejected(positions, reason, error.code, error.detail)
        self.rejections_logged += 1
        level = logging.WARNING if self.rejections_logged <= LOGGED_REJECTIONS else logging.DEBUG
        self.session.logger.log(
            level,
            "%s: Klaviyo rejected %d event(s) of metric %s: %s %s",
            description,
            len(positions),
            str(self.session.records["metric"].iat[positions[0]])[:60],
            error.code,
            self.session.ledger.detail[positions[0]],
        )
