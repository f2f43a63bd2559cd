"""Child process for the crash test: syncs events to a local server until it is killed.

Usage: python -m tests.sync.sync_child BASE_URL STATE_DB COUNT BATCH_SIZE TIME_SCALE RUN_ID
"""

from __future__ import annotations

import sys

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo import RateLimiter, SdkKlaviyoClient
from klaviyo_pipeline.sync import sync_events
from klaviyo_pipeline.sync_log import SyncLog
from tests.sync.records import PARTITION, events


def main(arguments: list[str]) -> None:
    base_url, state_db, count, batch_size, time_scale, run_id = arguments
    config = SyncConfig(event_batch_size=int(batch_size), backoff_base_seconds=0.01)
    limiter = RateLimiter(config.rate_limits, time_scale=float(time_scale))
    client = SdkKlaviyoClient(
        "pk_test_child",
        base_url,
        connect_timeout_seconds=2.0,
        read_timeout_seconds=10.0,
        rate_limiter=limiter,
    )
    records = events(int(count))
    print("started", flush=True)
    sync_events(
        records,
        client,
        config,
        SyncLog(state_db),
        partition=PARTITION,
        run_id=run_id,
        backfill=False,
    )
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
