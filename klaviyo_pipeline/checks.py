"""Freshness checks of the daily sync assets, and the sensor that runs them.

Two checks per sync asset (``klaviyo_event_sync`` and ``klaviyo_profile_sync``), both keyed to
a deadline cron in the partition timezone (by default 03:00, two hours after the daily
schedule starts the previous day's run):

``freshness_check``
    Dagster's ``build_time_partition_freshness_checks``. After each deadline it expects the
    latest partition that was complete at the deadline (the previous day) to be materialized.
    This flags a daily run that did not happen or failed.
``partitions_complete``
    Every partition from ``partitions.start`` up to that same partition is materialized and
    its latest run did not fail. This flags the gaps that the first check cannot see: a day
    whose run failed once the next day succeeded, or days never backfilled.

Why not the alternatives in dagster 1.13.28: ``build_last_update_freshness_checks`` and the
``FreshnessPolicy`` that supersedes both factories look at the time of the asset's latest
materialization of any partition. A backfill of old days then counts as fresh while
yesterday is missing, so neither suits daily partitions.

``build_sensor_for_freshness_checks`` runs both checks: a check that has never run, or that
passed and whose ``dagster/fresh_until_timestamp`` (the next deadline) has passed, runs on
the next tick, and a failed check runs again after the next materialization of its asset.

NOTE: A dry run (no API key) materializes its partition too, so both checks pass for days
that reached Klaviyo only as a dry run. Such a materialization has ``dry_run: true`` in its
metadata.
"""

import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetPartitionStatus,
    AssetsDefinition,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
    multi_asset_check,
)
from dagster._time import get_current_datetime

# Private module: the same cron functions that build_time_partition_freshness_checks uses,
# so that both checks expect the same partition. Pinned with dagster==1.13.28.
from dagster._utils.schedules import get_latest_completed_cron_tick, get_next_cron_tick
from dagster_shared.utils.warnings import SupersessionWarning

from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.partitions import daily_partitions

SYNC_ASSET_NAMES = ("klaviyo_event_sync", "klaviyo_profile_sync")
PARTITIONS_COMPLETE_CHECK = "partitions_complete"
SENSOR_NAME = "klaviyo_freshness_checks_sensor"
# 03:00 in the partition timezone: the schedule starts the previous day's run at 01:00.
DEFAULT_DEADLINE_CRON = "0 3 * * *"
# The deadline passes once a day, so a sensor tick every 5 minutes flags a missing
# partition at most 5 minutes late.
SENSOR_INTERVAL_SECONDS = 300
# Partition keys listed in the metadata of a failed check; the counts include the rest.
MAX_LISTED_PARTITIONS = 20
# Name of the metadata that build_sensor_for_freshness_checks reads from a passed result.
FRESH_UNTIL_METADATA_KEY = "dagster/fresh_until_timestamp"


def build_freshness_checks(
    assets: Sequence[AssetsDefinition],
    config: PipelineConfig,
    *,
    deadline_cron: str = DEFAULT_DEADLINE_CRON,
) -> tuple[list[AssetChecksDefinition], list[SensorDefinition]]:
    """Build the freshness checks of the sync assets and the sensor that runs them.

    Args:
        assets: The assets of ``build_assets(config)``; the checks cover the sync assets
            among them.
        config: The validated config; its ``partitions`` give the partitions and the
            timezone of the deadline.
        deadline_cron: Cron schedule, in the partition timezone, of the times by which the
            previous day's partition must be materialized.

    Returns:
        The checks, for ``Definitions(asset_checks=...)``, and the sensor, for
        ``Definitions(sensors=...)``. The sensor is running by default.

    Raises:
        ValueError: ``assets`` contains no sync asset.
    """
    asset_keys = sync_asset_keys(assets)
    timezone = config.partitions.timezone
    # Both factories are marked superseded by FreshnessPolicy, which is not partition-aware
    # (see the module docstring), and warn on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupersessionWarning)
        latest_partition_checks = build_time_partition_freshness_checks(
            assets=asset_keys,
            deadline_cron=deadline_cron,
            timezone=timezone,
            severity=AssetCheckSeverity.ERROR,
        )
        checks = [
            *latest_partition_checks,
            build_partitions_complete_check(asset_keys, config, deadline_cron),
        ]
        sensor = build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            name=SENSOR_NAME,
            # A stopped sensor flags nothing, and Dagster starts sensors stopped by default.
            default_status=DefaultSensorStatus.RUNNING,
        )
    return checks, [sensor]


def sync_asset_keys(assets: Sequence[AssetsDefinition]) -> list[AssetKey]:
    """Return the keys of the sync assets among `assets`, in the order of `SYNC_ASSET_NAMES`.

    Raises:
        ValueError: None of `assets` is a sync asset.
    """
    present = {key for definition in assets for key in definition.keys}
    keys = [AssetKey(name) for name in SYNC_ASSET_NAMES if AssetKey(name) in present]
    if not keys:
        names = sorted(key.to_user_string() for key in present)
        raise ValueError(
            f"no sync asset among the assets {names}; expected one of {list(SYNC_ASSET_NAMES)} "
            "(pass the assets of build_assets(config))"
        )
    return keys


def due_partition_keys(partitions_def: DailyPartitionsDefinition, deadline: datetime) -> list[str]:
    """Return the keys of the partitions whose day ended at or before `deadline`."""
    return list(partitions_def.get_partition_keys(current_time=deadline))


def build_partitions_complete_check(
    asset_keys: Sequence[AssetKey], config: PipelineConfig, deadline_cron: str
) -> AssetChecksDefinition:
    """Build the ``partitions_complete`` check of each asset in `asset_keys`.

    Every partition whose day ended by the latest deadline tick must be materialized, and
    the latest run of each must not have failed. A partition with a run in progress counts
    as present.
    """
    partitions_def = daily_partitions(config.partitions)
    timezone = config.partitions.timezone
    specs = [
        AssetCheckSpec(
            PARTITIONS_COMPLETE_CHECK,
            asset=key,
            description=(
                "every daily partition from partitions.start to the last one due by the "
                f"deadline ({deadline_cron}, {timezone}) is materialized and did not fail"
            ),
        )
        for key in asset_keys
    ]

    @multi_asset_check(specs=specs, can_subset=True, name="klaviyo_partitions_complete")
    def klaviyo_partitions_complete(
        context: AssetCheckExecutionContext,
    ) -> Iterable[AssetCheckResult]:
        now = get_current_datetime(timezone)
        deadline = get_latest_completed_cron_tick(deadline_cron, now, timezone)
        next_deadline = get_next_cron_tick(deadline_cron, now, timezone)
        due = due_partition_keys(partitions_def, deadline)
        for check_key in context.selected_asset_check_keys:
            # None when the asset has never been materialized or planned in a run.
            statuses = (
                context.instance.get_status_by_partition(check_key.asset_key, due, partitions_def)
                or {}
            )
            yield partitions_complete_result(
                check_key.asset_key, due, statuses, deadline, next_deadline
            )

    return klaviyo_partitions_complete


def partitions_complete_result(
    asset_key: AssetKey,
    due: Sequence[str],
    statuses: Mapping[str, AssetPartitionStatus | None],
    deadline: datetime,
    next_deadline: datetime,
) -> AssetCheckResult:
    """Build the ``partitions_complete`` result from the status of each due partition."""
    missing = [key for key in due if statuses.get(key) is None]
    failed = [key for key in due if statuses.get(key) == AssetPartitionStatus.FAILED]
    passed = not missing and not failed
    metadata: dict[str, MetadataValue] = {
        "deadline": MetadataValue.timestamp(deadline),
        "partitions_due": MetadataValue.int(len(due)),
        "last_partition_due": MetadataValue.text(due[-1] if due else ""),
        "missing_count": MetadataValue.int(len(missing)),
        "failed_count": MetadataValue.int(len(failed)),
    }
    if missing:
        metadata["missing"] = MetadataValue.json(missing[:MAX_LISTED_PARTITIONS])
    if failed:
        metadata["failed"] = MetadataValue.json(failed[:MAX_LISTED_PARTITIONS])
    if passed:
        metadata[FRESH_UNTIL_METADATA_KEY] = MetadataValue.timestamp(next_deadline)

    if not due:
        description = "No partition is due yet."
    elif passed:
        description = f"All {len(due)} partitions up to {due[-1]} are materialized."
    else:
        parts = []
        if missing:
            parts.append(f"{len(missing)} never materialized (first {missing[0]})")
        if failed:
            parts.append(f"{len(failed)} whose latest run failed (first {failed[0]})")
        description = (
            f"Of {len(due)} partitions up to {due[-1]}, " + " and ".join(parts) + ". "
            "Launch a backfill of these partitions of the job klaviyo_daily_sync."
        )
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=PARTITIONS_COMPLETE_CHECK,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
    )
