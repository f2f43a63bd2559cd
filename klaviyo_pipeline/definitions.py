"""The Dagster code location: assets, checks, job, schedule and resources of one config."""

import os

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
)

from klaviyo_pipeline.assets import GROUP, build_assets
from klaviyo_pipeline.checks import build_freshness_checks
from klaviyo_pipeline.config import PipelineConfig, load_config
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.partitions import daily_partitions

API_KEY_ENV_VAR = "KLAVIYO_API_KEY"
BASE_URL_ENV_VAR = "KLAVIYO_BASE_URL"
JOB_NAME = "klaviyo_daily_sync"


def _api_key_variable(config: PipelineConfig) -> str:
    """Return the name of the API key's environment variable, from `settings.apiKey: $NAME`."""
    api_key = (config.destination.get("settings") or {}).get("apiKey")
    if isinstance(api_key, str) and api_key.startswith("$"):
        return api_key[1:]
    return API_KEY_ENV_VAR


def klaviyo_resource(config: PipelineConfig) -> KlaviyoResource:
    """Return the Klaviyo resource; without an API key in the environment it is a dry run."""
    key_variable = _api_key_variable(config)
    return KlaviyoResource(
        api_key=EnvVar(key_variable) if os.environ.get(key_variable) else None,
        base_url=EnvVar(BASE_URL_ENV_VAR) if os.environ.get(BASE_URL_ENV_VAR) else None,
        dry_run=config.sync.dry_run,
    )


def build_definitions(config: PipelineConfig) -> Definitions:
    """Return the Definitions of one validated config."""
    assets = build_assets(config)
    freshness_checks, freshness_sensors = build_freshness_checks(assets, config)
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.groups(GROUP),
        partitions_def=daily_partitions(config.partitions),
        # The steps form a chain and both syncs share one pool slot, so a process per step
        # would add an import of the project per step and no parallelism.
        executor_def=in_process_executor,
        description="Sync one day of warehouse events and profiles into Klaviyo.",
    )
    schedule = build_schedule_from_partitioned_job(job, hour_of_day=1, minute_of_hour=0)
    return Definitions(
        assets=assets,
        asset_checks=freshness_checks,
        jobs=[job],
        schedules=[schedule],
        sensors=freshness_sensors,
        resources={"klaviyo": klaviyo_resource(config)},
    )


defs = build_definitions(load_config())
