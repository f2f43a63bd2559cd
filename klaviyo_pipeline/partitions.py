"""The daily partitions that every asset shares."""

from datetime import date, timedelta

from dagster import DailyPartitionsDefinition

from klaviyo_pipeline.config import PartitionsConfig


def daily_partitions(config: PartitionsConfig) -> DailyPartitionsDefinition:
    """Return daily partitions from the config's first day, in its timezone."""
    end = config.end + timedelta(days=1) if isinstance(config.end, date) else None
    return DailyPartitionsDefinition(
        start_date=config.start.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone=config.timezone,
    )
