"""Sync engine: sends event and profile records to Klaviyo with one outcome per record."""

from klaviyo_pipeline.klaviyo.errors import KlaviyoFatalError
from klaviyo_pipeline.sync.events import sync_events
from klaviyo_pipeline.sync.profiles import JOB_CANCELLED, JOB_TIMEOUT, sync_profiles
from klaviyo_pipeline.sync.report import SyncReport

__all__ = [
    "JOB_CANCELLED",
    "JOB_TIMEOUT",
    "KlaviyoFatalError",
    "SyncReport",
    "sync_events",
    "sync_profiles",
]
