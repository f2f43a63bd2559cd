"""Dagster resource that builds the Klaviyo client for a sync."""

from __future__ import annotations

import logging

import dagster as dg

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo.client import KlaviyoClient
from klaviyo_pipeline.klaviyo.dry_run import DryRunKlaviyoClient
from klaviyo_pipeline.klaviyo.rate_limit import shared_rate_limiter
from klaviyo_pipeline.klaviyo.sdk_client import SdkKlaviyoClient

_logger = logging.getLogger(__name__)


class KlaviyoResource(dg.ConfigurableResource):
    """Klaviyo account that the syncs send to.

    Attributes:
        api_key: Private API key, usually ``EnvVar("KLAVIYO_API_KEY")``. Without a key the
            resource builds a dry-run client.
        base_url: Scheme and host of the API, usually ``EnvVar("KLAVIYO_BASE_URL")``; None
            means Klaviyo's production host.
        dry_run: Validate and record the requests without sending them.
        time_scale: How many times faster than real time the rate-limit windows pass.
            1.0 for Klaviyo; a local server started with a time scale needs the same value.
    """

    api_key: str | None = None
    base_url: str | None = None
    dry_run: bool = False
    time_scale: float = 1.0

    def __repr__(self) -> str:
        key_state = "set" if self.api_key else "not set"
        return (
            f"KlaviyoResource(api_key=<{key_state}>, base_url={self.base_url!r}, "
            f"dry_run={self.dry_run!r})"
        )

    __str__ = __repr__

    def get_client(
        self, sync_config: SyncConfig, logger: logging.Logger | logging.LoggerAdapter | None = None
    ) -> KlaviyoClient:
        """Build the client for one sync: a dry-run client or one on the Klaviyo SDK.

        A dry run happens when this resource or `sync_config` sets ``dry_run``, or when no
        API key is set. The log names the case.
        """
        log = logger or _logger
        if self.dry_run or sync_config.dry_run:
            log.info("Dry run: requests are validated and recorded, and none is sent")
            return DryRunKlaviyoClient()
        if not self.api_key:
            log.warning(
                "Dry run: KLAVIYO_API_KEY is not set, so requests are validated and recorded, "
                "and none is sent"
            )
            return DryRunKlaviyoClient()

        base_url = self.base_url.rstrip("/") if self.base_url else None
        limiter = shared_rate_limiter(
            self.api_key, base_url, sync_config.rate_limits, time_scale=self.time_scale
        )
        log.info(
            "Sending to Klaviyo at %s with API revision %s",
            base_url or "the SDK's default host",
            sync_config.api_revision,
        )
        return SdkKlaviyoClient(
            self.api_key,
            base_url,
            connect_timeout_seconds=sync_config.connect_timeout_seconds,
            read_timeout_seconds=sync_config.read_timeout_seconds,
            rate_limiter=limiter,
            revision=sync_config.api_revision,
        )
