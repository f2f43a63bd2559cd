"""Sync pacing and request counts, measured against the local Klaviyo server.

Sync efficiency: the event sync of one partition runs against a local server that
enforces Klaviyo's limits for `event-bulk-create-jobs` (burst 10 per second, steady 150
per minute) with a time scale. The client has the same limits and time scale. The
bound is the least time those limits allow between the first and the last of the sync's
requests: request k (counting from 0) cannot start before floor(k / burst) burst windows
and floor(k / steady) steady windows have passed, so 100 requests need 9 burst windows,
9 s, or 0.15 s at time scale 60. `sync_efficiency` is the bound divided by the wall time
of `sync_events`, so 1.0 means the sync takes no longer than the limits force.

Request counts are read from the server's request log: every `POST` to the bulk event
endpoint, and for profiles every `POST` of an import job plus, separately, the reads of
job status and import errors.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.clock import StageClock
from benchmarks.configs import LOCAL_API_KEY, PARTITION
from benchmarks.local_server import local_klaviyo
from klaviyo_pipeline import settings
from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.sync import sync_events, sync_profiles
from klaviyo_pipeline.sync_log import SyncLog

EVENT_BULK_PATH = "/api/event-bulk-create-jobs"
PROFILE_IMPORT_PATH = "/api/profile-bulk-import-jobs"
BURST_WINDOW_SECONDS = 1.0
STEADY_WINDOW_SECONDS = 60.0


def rate_limit_bound(requests: int, burst: int, steady: int, time_scale: float) -> float:
    """Return the least real seconds from the first to the last of `requests` requests."""
    if requests <= 1:
        return 0.0
    last = requests - 1
    scaled = max(
        (last // burst) * BURST_WINDOW_SECONDS,
        (last // steady) * STEADY_WINDOW_SECONDS,
    )
    return scaled / time_scale


class _TimedSends:
    """Client method wrapper that adds up the seconds of its calls (request round trips)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def measure_sync_efficiency(
    config: PipelineConfig, records: pd.DataFrame, *, time_scale: float = 60.0
) -> dict[str, Any]:
    """Sync `records` to a rate-limited local server and compare the wall time with the bound."""
    limit = config.sync.rate_limits["event_bulk_create"]
    with (
        local_klaviyo(time_scale=time_scale, rate_limits=True) as server,
        tempfile.TemporaryDirectory(prefix="klaviyo_bench_sync_") as folder,
    ):
        klaviyo = KlaviyoResource(
            api_key=f"{LOCAL_API_KEY}_pacing", base_url=server.base_url, time_scale=time_scale
        )
        client = klaviyo.get_client(config.sync)
        sends = _TimedSends(client.send_event_bulk)
        client.send_event_bulk = sends  # type: ignore[method-assign]
        clock = StageClock()
        server_cpu_before = server.cpu_seconds()
        with clock.stage("sync_events"):
            report = sync_events(
                records,
                client,
                config.sync,
                SyncLog(Path(folder) / "state.duckdb"),
                partition=PARTITION,
                run_id="benchmark-pacing",
                backfill=True,
            )
        server_cpu = server.cpu_seconds() - server_cpu_before
        log = [entry for entry in server.requests() if entry["path"] == EVENT_BULK_PATH]

    statuses = Counter(entry.get("status") for entry in log)
    accepted = statuses.get(202, 0)
    events_sent = int(report.status_counts.get("sent", 0))
    bound = rate_limit_bound(accepted, limit.burst, limit.steady, time_scale)
    wall = clock.wall["sync_events"]
    span = log[-1]["time"] - log[0]["time"] if len(log) > 1 else 0.0
    return {
        "time_scale": time_scale,
        "limits": {"burst_per_second": limit.burst, "steady_per_minute": limit.steady},
        "events_sent": events_sent,
        "requests": len(log),
        "requests_accepted": accepted,
        "requests_throttled": statuses.get(429, 0),
        "status_counts": dict(report.status_counts),
        "bound_seconds": round(bound, 4),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(clock.cpu["sync_events"], 3),
        "server_cpu_seconds": round(server_cpu, 3),
        "first_to_last_request_seconds": round(span, 3),
        "request_round_trip_seconds": round(sends.seconds, 3),
        "limiter_wait_seconds": round(report.wait_seconds, 3),
        "sync_efficiency": round(bound / wall, 4) if wall else None,
        "send_span_efficiency": round(bound / span, 4) if span else None,
        "requests_per_1000_events": _per(len(log), events_sent, 1_000),
        "minimum_requests": math.ceil(events_sent / settings.MAX_EVENTS_PER_BULK_REQUEST),
    }


def measure_profile_requests(
    config: PipelineConfig, profiles: pd.DataFrame, *, time_scale: float = 60.0
) -> dict[str, Any]:
    """Import `profiles` into a local server and count the requests per 10,000 profiles."""
    with (
        local_klaviyo(time_scale=time_scale, rate_limits=True) as server,
        tempfile.TemporaryDirectory(prefix="klaviyo_bench_profiles_") as folder,
    ):
        klaviyo = KlaviyoResource(
            api_key=f"{LOCAL_API_KEY}_profiles", base_url=server.base_url, time_scale=time_scale
        )
        clock = StageClock()
        with clock.stage("sync_profiles"):
            report = sync_profiles(
                profiles,
                klaviyo.get_client(config.sync),
                config.sync,
                SyncLog(Path(folder) / "state.duckdb"),
                partition=PARTITION,
                run_id="benchmark-profiles",
            )
        log = server.requests()

    imports = [e for e in log if e["method"] == "POST" and e["path"] == PROFILE_IMPORT_PATH]
    reads = [e for e in log if e["method"] == "GET" and e["path"].startswith(PROFILE_IMPORT_PATH)]
    sent = int(report.status_counts.get("sent", 0))
    return {
        "profiles": len(profiles),
        "profiles_sent": sent,
        "status_counts": dict(report.status_counts),
        "import_requests": len(imports),
        "job_reads": len(reads),
        "requests_throttled": sum(1 for entry in log if entry.get("status") == 429),
        "requests_per_10000_profiles": _per(len(imports), sent, 10_000),
        "all_requests_per_10000_profiles": _per(len(imports) + len(reads), sent, 10_000),
        "minimum_requests": math.ceil(sent / settings.MAX_PROFILES_PER_IMPORT_JOB),
        "wall_seconds": round(clock.wall["sync_profiles"], 3),
        "cpu_seconds": round(clock.cpu["sync_profiles"], 3),
    }


def _per(requests: int, items: int, unit: int) -> float | None:
    return round(requests / items * unit, 4) if items else None
