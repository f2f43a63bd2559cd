"""Run the event or profile sync of one partition and combine its outcomes with settled rows."""

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from klaviyo_pipeline import report
from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.sync import SyncReport, sync_events, sync_profiles
from klaviyo_pipeline.sync_log import INPUT_COLUMNS, SyncLog, hash_key

_logger = logging.getLogger(__name__)


@dataclass
class SyncOutcome:
    """Row-level counts of one sync, for metadata and checks."""

    rows_read: int
    status_counts: dict[str, int]
    reason_counts: dict[str, int]
    metric_counts: dict[str, dict[str, int]] | None
    requests: int = 0
    throttled: int = 0
    wait_seconds: float = 0.0
    dry_run: bool = False
    backfill: bool = False
    notes: list[str] = field(default_factory=list)
    report: SyncReport | None = None


def settled_log_rows(
    settled: pd.DataFrame, stream: str, partition: str, run_id: str
) -> pd.DataFrame:
    """Return sync log rows for outcomes settled before any request."""
    if settled.empty:
        return pd.DataFrame(columns=INPUT_COLUMNS)
    rows = pd.DataFrame(
        {
            "partition": partition,
            "stream": stream,
            "record_id": settled["record_id"].astype(str).to_numpy(),
            "run_id": run_id,
            "row_id": settled["row_id"].astype("int64").to_numpy(),
            "unique_id": settled["unique_id"].to_numpy(),
            "metric": settled["metric"].to_numpy(),
            "identity": settled["identity"].to_numpy(),
            "profile_key_hash": None,
            "content_hash": None,
            "status": settled["status"].to_numpy(),
            "reason": settled["reason"].astype(str).to_numpy(),
            "klaviyo_code": None,
            "klaviyo_detail": settled["detail"].to_numpy(),
            "attempts": 0,
        }
    )
    rows["record_key"] = [
        hash_key(stream, record_id, unique_id)
        for record_id, unique_id in zip(rows["record_id"], rows["unique_id"], strict=True)
    ]
    return rows[INPUT_COLUMNS]


def _stream(settled: pd.DataFrame, stream: str) -> pd.DataFrame:
    if settled.empty or "stream" not in settled:
        return settled
    return settled[settled["stream"] == stream]


def _combine(
    sync_report: SyncReport, settled: pd.DataFrame, rows_read: int, main_only: bool, backfill: bool
) -> SyncOutcome:
    outcomes = sync_report.outcomes
    columns = ["record_id", "status", "reason", "metric"]
    synced = outcomes[columns] if not outcomes.empty else pd.DataFrame(columns=columns)
    rows = synced
    if main_only and not synced.empty:
        rows = synced[~synced["record_id"].astype(str).str.contains(":")]
    settled_rows = settled[columns] if not settled.empty else pd.DataFrame(columns=columns)
    row_outcomes = pd.concat([rows, settled_rows], ignore_index=True)
    all_outcomes = pd.concat([synced, settled_rows], ignore_index=True)
    return SyncOutcome(
        rows_read=rows_read,
        status_counts=report.status_counts(row_outcomes["status"]),
        reason_counts=report.reason_counts(all_outcomes) if len(all_outcomes) else {},
        metric_counts=report.metric_counts(all_outcomes)
        if main_only and len(all_outcomes)
        else None,
        requests=sync_report.requests,
        throttled=sync_report.throttles,
        wait_seconds=sync_report.wait_seconds,
        dry_run=sync_report.dry_run,
        backfill=backfill,
        notes=list(sync_report.notes),
        report=sync_report,
    )


def run_event_sync(
    config: PipelineConfig,
    klaviyo: KlaviyoResource,
    records: pd.DataFrame,
    settled: pd.DataFrame,
    *,
    partition: str,
    run_id: str,
    state_database: str,
    backfill: bool,
    logger: Any = None,
) -> SyncOutcome:
    """Send one partition's events and count one outcome per input row."""
    log = logger or _logger
    sync_log = SyncLog(state_database)
    event_settled = _stream(settled, "event")
    sync_log.record(settled_log_rows(event_settled, "event", partition, run_id))
    client = klaviyo.get_client(config.sync, log)
    sync_report = sync_events(
        records,
        client,
        config.sync,
        sync_log,
        partition=partition,
        run_id=run_id,
        backfill=backfill,
        logger=log,
    )
    main_records = (
        int((~records["record_id"].astype(str).str.contains(":")).sum()) if len(records) else 0
    )
    rows_read = int(settled.attrs.get("rows_read", main_records + len(event_settled)))
    return _combine(sync_report, event_settled, rows_read, main_only=True, backfill=backfill)


def run_profile_sync(
    config: PipelineConfig,
    klaviyo: KlaviyoResource,
    records: pd.DataFrame,
    settled: pd.DataFrame,
    *,
    partition: str,
    run_id: str,
    state_database: str,
    logger: Any = None,
) -> SyncOutcome:
    """Upsert one partition's profiles and count one outcome per profile candidate."""
    log = logger or _logger
    sync_log = SyncLog(state_database)
    profile_settled = _stream(settled, "profile")
    sync_log.record(settled_log_rows(profile_settled, "profile", partition, run_id))
    client = klaviyo.get_client(config.sync, log)
    sync_report = sync_profiles(
        records, client, config.sync, sync_log, partition=partition, run_id=run_id, logger=log
    )
    rows_read = len(records) + len(profile_settled)
    return _combine(sync_report, profile_settled, rows_read, main_only=False, backfill=False)
