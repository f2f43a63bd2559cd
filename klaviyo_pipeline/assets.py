"""Dagster assets of the daily sync: source rows to Klaviyo, one partition at a time."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from klaviyo_pipeline import pipeline, report
from klaviyo_pipeline.config import PipelineConfig, resolve_path
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.outcomes import TERMINAL_STATES
from klaviyo_pipeline.partitions import daily_partitions
from klaviyo_pipeline.sync_run import SyncOutcome, run_event_sync, run_profile_sync
from klaviyo_pipeline.tables import PartitionTable

GROUP = "klaviyo"
KLAVIYO_POOL = "klaviyo_api"
EVENT_PREVIEW = [
    "metric",
    "email",
    "phone_number",
    "external_id",
    "unique_id",
    "time",
    "value",
    "value_currency",
]
PROFILE_PREVIEW = ["email", "phone_number", "external_id", "attributes"]


def is_backfill(config: PipelineConfig, partition_key: str, today: date | None = None) -> bool:
    """Return whether a partition is old enough to be sent with `backfill: true`."""
    if config.sync.backfill_after_days is None:
        return False
    today = today or datetime.now(UTC).date()
    return date.fromisoformat(partition_key) < today - timedelta(
        days=config.sync.backfill_after_days
    )


def _first_chunk(table: PartitionTable) -> pd.DataFrame:
    """Return the table's first chunk, for previews."""
    return next(iter(table.chunks()), pd.DataFrame())


def _sync_metadata(
    outcome: SyncOutcome, records: PartitionTable, preview: list[str]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": outcome.rows_read,
        "rows_read": outcome.rows_read,
        **{f"rows_{state}": outcome.status_counts[state] for state in TERMINAL_STATES},
        "statuses": MetadataValue.json(outcome.status_counts),
        "reasons": MetadataValue.json(outcome.reason_counts),
        "requests": outcome.requests,
        "throttled": outcome.throttled,
        "throttle_wait_seconds": round(outcome.wait_seconds, 3),
        "dry_run": outcome.dry_run,
        "backfill": outcome.backfill,
        "preview": MetadataValue.md(report.preview_markdown(_first_chunk(records), preview)),
    }
    if outcome.metric_counts is not None:
        metadata["metrics"] = MetadataValue.json(outcome.metric_counts)
    if outcome.notes:
        metadata["notes"] = MetadataValue.md("\n".join(f"- {note}" for note in outcome.notes))
    return metadata


def build_assets(config: PipelineConfig) -> list[Any]:
    """Return the partitioned assets, with their checks, for `config`."""
    partitions_def = daily_partitions(config.partitions)
    state_database = resolve_path(config, config.sync.state_database)

    @asset(group_name=GROUP, partitions_def=partitions_def)
    def source_events(context: AssetExecutionContext) -> Output[PartitionTable]:
        """Rows of the partition as the source exports them."""
        table = pipeline.write_source_events(config, context.partition_key, logger=context.log)
        context.log.info(
            f"Read {table.rows:,} rows for {context.partition_key} from {config.source.kind} "
            f"in {len(table.parts):,} chunks"
        )
        return Output(table, metadata={"dagster/row_count": table.rows, "chunks": len(table.parts)})

    @asset(group_name=GROUP, partitions_def=partitions_def)
    def normalized_events(
        context: AssetExecutionContext, source_events: PartitionTable
    ) -> Output[PartitionTable]:
        """Events with canonical columns, UTC times and rule lookup names."""
        table = pipeline.write_normalized_events(config, context.partition_key, source_events)
        unsendable = int(table.attrs.get("rows_unsendable", 0))
        context.log.info(
            f"Normalized {table.rows:,} events for {context.partition_key}; "
            f"{unsendable:,} rejected for a missing or invalid time or name"
        )
        return Output(
            table, metadata={"dagster/row_count": table.rows, "rows_unsendable": unsendable}
        )

    @multi_asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        ins={"normalized_events": AssetIn()},
        outs={
            "klaviyo_event_records": AssetOut(
                description="Klaviyo events to send, one row per event."
            ),
            "klaviyo_profile_records": AssetOut(
                description="Klaviyo profile upserts, one row per profile."
            ),
            "rejected_rows": AssetOut(
                description="Rows settled before sending, with status and reason."
            ),
        },
    )
    def klaviyo_records(context: AssetExecutionContext, normalized_events: PartitionTable):
        """Map normalized events into Klaviyo event records, profile records and settled rows."""
        mapped = pipeline.write_records(config, context.partition_key, normalized_events)
        for name, count in sorted(mapped.warnings.items()):
            if count:
                context.log.warning(
                    f"{count:,} rows of {context.partition_key}: {name.replace('_', ' ')}"
                )
        context.log.info(
            f"Mapped {mapped.rows_read:,} rows of {context.partition_key} into "
            f"{mapped.events.rows:,} events, "
            f"{mapped.profiles.rows:,} profiles and {mapped.outcomes.rows:,} settled rows"
        )
        settled = (
            mapped.outcomes.read()
            if mapped.outcomes.rows <= 100_000
            else _first_chunk(mapped.outcomes)
        )
        yield Output(
            mapped.events,
            "klaviyo_event_records",
            metadata={
                "dagster/row_count": mapped.events.rows,
                "preview": MetadataValue.md(
                    report.preview_markdown(_first_chunk(mapped.events), EVENT_PREVIEW)
                ),
            },
        )
        yield Output(
            mapped.profiles,
            "klaviyo_profile_records",
            metadata={
                "dagster/row_count": mapped.profiles.rows,
                "preview": MetadataValue.md(
                    report.preview_markdown(_first_chunk(mapped.profiles), PROFILE_PREVIEW)
                ),
            },
        )
        yield Output(
            mapped.outcomes,
            "rejected_rows",
            metadata={
                "dagster/row_count": mapped.outcomes.rows,
                "reasons": MetadataValue.json(
                    report.reason_counts(settled) if len(settled) else {}
                ),
                "warnings": MetadataValue.json(mapped.warnings),
            },
        )

    @asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        pool=KLAVIYO_POOL,
        check_specs=[
            AssetCheckSpec(
                "rows_reconciled",
                asset="klaviyo_event_sync",
                blocking=True,
                description="rows read equal the sum of the terminal states",
            ),
            AssetCheckSpec(
                "rejected_share",
                asset="klaviyo_event_sync",
                description="share of rejected rows is at most sync.max_rejected_share",
            ),
        ],
    )
    def klaviyo_event_sync(
        context: AssetExecutionContext,
        klaviyo: KlaviyoResource,
        klaviyo_event_records: PartitionTable,
        rejected_rows: PartitionTable,
    ) -> MaterializeResult:
        """Events of the partition sent to Klaviyo, with one recorded outcome per row."""
        outcome = run_event_sync(
            config,
            klaviyo,
            klaviyo_event_records,
            rejected_rows,
            partition=context.partition_key,
            run_id=context.run_id,
            state_database=state_database,
            backfill=is_backfill(config, context.partition_key),
            logger=context.log,
        )
        return MaterializeResult(
            metadata=_sync_metadata(outcome, klaviyo_event_records, EVENT_PREVIEW),
            check_results=[
                _reconciled(outcome, "rows_reconciled"),
                _rejected_share(outcome, config.sync.max_rejected_share),
            ],
        )

    @asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        pool=KLAVIYO_POOL,
        check_specs=[
            AssetCheckSpec(
                "profiles_reconciled",
                asset="klaviyo_profile_sync",
                blocking=True,
                description="profile candidates equal the sum of the terminal states",
            ),
        ],
    )
    def klaviyo_profile_sync(
        context: AssetExecutionContext,
        klaviyo: KlaviyoResource,
        klaviyo_profile_records: PartitionTable,
        rejected_rows: PartitionTable,
    ) -> MaterializeResult:
        """Profiles of the partition upserted in Klaviyo through bulk import jobs."""
        outcome = run_profile_sync(
            config,
            klaviyo,
            klaviyo_profile_records,
            rejected_rows,
            partition=context.partition_key,
            run_id=context.run_id,
            state_database=state_database,
            logger=context.log,
        )
        return MaterializeResult(
            metadata=_sync_metadata(outcome, klaviyo_profile_records, PROFILE_PREVIEW),
            check_results=[_reconciled(outcome, "profiles_reconciled")],
        )

    return [
        source_events,
        normalized_events,
        klaviyo_records,
        klaviyo_event_sync,
        klaviyo_profile_sync,
    ]


def _reconciled(outcome: SyncOutcome, name: str) -> AssetCheckResult:
    settled = sum(outcome.status_counts.values())
    return AssetCheckResult(
        check_name=name,
        passed=settled == outcome.rows_read,
        metadata={
            "rows_read": outcome.rows_read,
            "settled": settled,
            "missing": outcome.rows_read - settled,
        },
    )


def _rejected_share(outcome: SyncOutcome, max_share: float) -> AssetCheckResult:
    rejected = outcome.status_counts["rejected"]
    share = rejected / outcome.rows_read if outcome.rows_read else 0.0
    return AssetCheckResult(
        check_name="rejected_share",
        passed=share <= max_share,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected": rejected,
            "rows_read": outcome.rows_read,
            "share": round(share, 4),
            "max_share": max_share,
        },
    )
