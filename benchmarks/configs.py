"""Pipeline configs of the benchmarks: the bundled REES46 config pointed at generated files.

Every variant keeps the REES46 `source.select` and `destination` of
`examples/rees46/config.yaml` and changes only what a benchmark needs: the file path, the
sync log location, an `identify` mapping for profile upserts, client-side rate limits and
the job poll interval.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from klaviyo_pipeline import settings
from klaviyo_pipeline.config import PipelineConfig, parse_config

REES46_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "rees46" / "config.yaml"
PARTITION = "2019-10-01"
# A throwaway key. The local server accepts any key, and nothing reaches Klaviyo.
LOCAL_API_KEY = "pk_benchmark_local_server"

# Profile properties from the REES46 columns, so that the identify variant has upserts.
IDENTIFY_MAPPING: dict[str, Any] = {
    "map": {"properties": {"map": {"LastSession": "user.session", "LastCategory": "data.category"}}}
}
# Client-side limits high enough never to wait, for runs against a server without limits.
UNLIMITED_RATE = {"burst": 1_000_000, "steady": 60_000_000}
# The local server completes an import job after a fixed number of reads, so a short poll
# interval only shortens the run and does not change the number of polls.
FAST_JOB_POLL_SECONDS = 0.05


def rees46_raw() -> dict[str, Any]:
    """Return the bundled REES46 config file as a mapping."""
    raw = yaml.safe_load(REES46_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(raw, dict), f"{REES46_CONFIG} does not contain a mapping"
    return raw


def build_config(
    export: Path,
    state_dir: Path,
    *,
    identify: bool = False,
    unlimited_client: bool = False,
) -> PipelineConfig:
    """Return the REES46 config reading `export`, with its sync log under `state_dir`.

    Args:
        export: A generated Parquet or CSV export.
        state_dir: Folder for the DuckDB sync log. Use a fresh folder per run.
        identify: Add `settings.identify` so that every user gets one profile upsert.
        unlimited_client: Lift the client-side rate limits, for a server without limits.
    """
    raw = copy.deepcopy(rees46_raw())
    raw["source"]["path"] = str(export.resolve())
    sync = raw.setdefault("sync", {})
    sync["state_database"] = str((state_dir / "state.duckdb").resolve())
    sync["job_poll_interval_seconds"] = FAST_JOB_POLL_SECONDS
    if unlimited_client:
        sync["rate_limits"] = {name: dict(UNLIMITED_RATE) for name in settings.RATE_LIMITS}
    if identify:
        raw["destination"]["settings"]["identify"] = copy.deepcopy(IDENTIFY_MAPPING)
    return parse_config(raw, base_dir=REES46_CONFIG.parent)
