"""State of one sync run shared by the event and profile syncs: the ledger, the sync log
writes, the skip rules for records that earlier runs settled, and the final report."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo.classify import SDK_INVALID
from klaviyo_pipeline.klaviyo.client import KlaviyoClient
from klaviyo_pipeline.klaviyo.errors import KlaviyoFatalError
from klaviyo_pipeline.outcomes import Reason, Status
from klaviyo_pipeline.sync.event_bodies import PayloadError
from klaviyo_pipeline.sync.ledger import OUTCOME_COLUMNS, Ledger
from klaviyo_pipeline.sync.report import SyncReport
from klaviyo_pipeline.sync.retry import RequestRunner
from klaviyo_pipeline.sync_log import SyncLog

Logger = logging.Logger | logging.LoggerAdapter

# Rejections that depend only on the record's content. A later run does not send the
# record again until its content hash changes.
CONTENT_REJECTIONS = frozenset(
    {
        Reason.KLAVIYO_INVALID.value,
        Reason.KLAVIYO_TOO_LARGE.value,
        Reason.IMPORT_ERROR.value,
        SDK_INVALID,
    }
)
# After this many batches in a row that exhausted their retries, the sync stops sending
# and leaves the rest for the next run, because Klaviyo is probably down.
MAX_CONSECUTIVE_EXHAUSTED_BATCHES = 3


def check_columns(records: pd.DataFrame, columns: Sequence[str], stream: str) -> None:
    """Raise ValueError naming the columns of the input contract that `records` lacks."""
    missing = [name for name in columns if name not in records.columns]
    if missing:
        raise ValueError(f"{stream} records are missing columns {missing}")


def order_records(records: pd.DataFrame) -> pd.DataFrame:
    """Return the records in input row order; positions in the sync refer to this order."""
    if records["row_id"].is_monotonic_increasing:
        return records.reset_index(drop=True)
    return records.sort_values("row_id", kind="stable").reset_index(drop=True)


def empty_report(stream: str, partition: str, run_id: str, dry_run: bool) -> SyncReport:
    """Return the report of a sync without records."""
    report = SyncReport(stream, partition, run_id, dry_run=dry_run)
    report.fill_counts(pd.DataFrame(columns=list(OUTCOME_COLUMNS)))
    return report


@dataclass
class SyncSession:
    """One run of one stream for one partition.

    Attributes:
        records: Input records in position order.
        ledger: Outcome per record position.
        runner: Retry loop shared by the run's requests.
        report: The report being filled.
    """

    stream: str
    partition: str
    run_id: str
    records: pd.DataFrame
    client: KlaviyoClient
    config: SyncConfig
    sync_log: SyncLog
    logger: Logger
    ledger: Ledger
    runner: RequestRunner
    report: SyncReport
    consecutive_exhausted: int = 0
    _stats_at_start: tuple[int, int, float] = field(default=(0, 0, 0.0))

    @classmethod
    def start(
        cls,
        records: pd.DataFrame,
        stream: str,
        client: KlaviyoClient,
        config: SyncConfig,
        sync_log: SyncLog,
        *,
        partition: str,
        run_id: str,
        logger: Logger,
    ) -> SyncSession:
        """Create the session of a run; `records` must be in position order."""
        dry_run = bool(client.dry_run)
        return cls(
            stream=stream,
            partition=partition,
            run_id=run_id,
            records=records,
            client=client,
            config=config,
            sync_log=sync_log,
            logger=logger,
            ledger=Ledger(records, stream, partition, run_id, dry_run),
            runner=RequestRunner(config, client.revision, logger),
            report=SyncReport(stream, partition, run_id, dry_run=dry_run),
            _stats_at_start=client.stats.snapshot(),
        )

    def skip_settled(self, immutable: bool) -> None:
        """Skip records that earlier runs sent or rejected for their content.

        Args:
            immutable: True for events, which Klaviyo never updates. A record sent before
                with other content is then skipped too, and counted in a note. For
                profiles, only a record sent before with the same content is skipped.
        """
        if self.config.full_resend:
            return
        undecided = np.asarray(self.ledger.undecided(), dtype=np.int64)
        keys = self.ledger.record_keys[undecided]
        prior = self.sync_log.prior_outcomes(self.partition, self.stream, record_keys=keys.tolist())
        if prior.empty:
            return
        current = pd.DataFrame(
            {
                "position": undecided,
                "record_key": self.ledger.record_keys[undecided],
                "content_hash": self.ledger.identity["content_hash"].to_numpy()[undecided],
            }
        )
        merged = current.merge(prior, on="record_key", how="inner", suffixes=("", "_prior"))
        self._skip_sent(merged, immutable)
        self._carry_rejections(merged)

    def _skip_sent(self, merged: pd.DataFrame, immutable: bool) -> None:
        if immutable:
            sent = merged[merged["first_sent_hash"].notna()]
            changed = int((sent["first_sent_hash"] != sent["content_hash"]).sum())
        else:
            sent = merged[merged["last_sent_hash"] == merged["content_hash"]]
            changed = 0
        self.ledger.mark(sent["position"].tolist(), Status.SENT, Reason.ALREADY_SENT)
        if len(sent):
            self.logger.info(
                "Skipping %d %ss of partition %s that an earlier run sent",
                len(sent),
                self.stream,
                self.partition,
            )
        if changed:
            self.report.notes.append(
                f"{changed} event(s) were already in Klaviyo with the same unique_id; Klaviyo "
                "keeps the first version of an event, so changed content was not updated. "
                "Send a compensating event (such as Refunded Order) or give the changed "
                "event a new unique_id."
            )

    def _carry_rejections(self, merged: pd.DataFrame) -> None:
        undecided = ~self.ledger.decided[merged["position"].to_numpy(dtype=np.int64)]
        same = (
            undecided
            & (merged["status"] == Status.REJECTED.value).to_numpy()
            & merged["reason"].isin(CONTENT_REJECTIONS).to_numpy()
            & (merged["content_hash_prior"] == merged["content_hash"]).to_numpy()
        )
        carried = merged[same]
        for row in carried.itertuples(index=False):
            self.ledger.mark(
                [row.position], Status.REJECTED, row.reason, row.klaviyo_code, row.klaviyo_detail
            )
        if len(carried):
            self.report.notes.append(
                f"{len(carried)} {self.stream}s were rejected by Klaviyo in an earlier run "
                "and were not sent again because their content has not changed."
            )

    def settle_payload_errors(self, errors: Iterable[PayloadError]) -> None:
        """Record the records whose payload could not be built, with their status and reason."""
        for error in errors:
            if error.status == Status.REJECTED.value:
                self.ledger.mark_rejected([error.position], error.reason, None, error.detail)
            else:
                self.ledger.mark([error.position], error.status, error.reason, None, error.detail)

    def write(self, positions: Iterable[int] | None = None) -> None:
        """Write the outcomes of the positions, or of every record, to the sync log."""
        rows = self.ledger.log_rows(positions)
        self.sync_log.record(rows)

    def batch_finished(self, exhausted: bool) -> bool:
        """Count a finished top-level batch and return False once the sync should stop."""
        self.consecutive_exhausted = self.consecutive_exhausted + 1 if exhausted else 0
        if self.consecutive_exhausted < MAX_CONSECUTIVE_EXHAUSTED_BATCHES:
            return True
        remaining = len(self.ledger.undecided())
        message = (
            f"Stopped sending after {self.consecutive_exhausted} batches in a row failed "
            f"every retry; {remaining} {self.stream}s were not attempted and the next run "
            "sends them."
        )
        self.logger.error(message)
        self.report.notes.append(message)
        return False

    def stopped(self, error: KlaviyoFatalError) -> None:
        """Write the records still undecided to the sync log and attach the report to `error`."""
        self.write(self.ledger.undecided())
        error.report = self.finish()

    def finish(self) -> SyncReport:
        """Fill the report from the ledger and the request totals, and return it."""
        requests, throttles, waited = self.client.stats.snapshot()
        start_requests, start_throttles, start_waited = self._stats_at_start
        report = self.report
        report.fill_counts(self.ledger.outcomes())
        report.requests = requests - start_requests
        report.throttles = throttles - start_throttles
        report.wait_seconds = waited - start_waited
        report.attempts = self.runner.totals.attempts
        report.retries = self.runner.totals.retries
        report.backoff_seconds = self.runner.totals.backoff_seconds
        if report.dry_run:
            report.notes.append(
                "Dry run: nothing was sent to Klaviyo; the records that would have been "
                "sent are skipped with reason dry_run."
            )
        return report
