"""Server state shared by all request threads: account, rate limiter, faults and request log."""

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from klaviyo_pipeline.local_klaviyo.account import Account
from klaviyo_pipeline.local_klaviyo.faults import FaultInjector, parse_fault_plan
from klaviyo_pipeline.local_klaviyo.limits import RATE_LIMITS
from klaviyo_pipeline.local_klaviyo.rate_limits import RateLimiter

logger = logging.getLogger(__name__)

# The request log keeps the newest entries only, so a long-running server stays bounded.
MAX_LOGGED_REQUESTS = 100_000


class LocalKlaviyoApp:
    """Everything a request handler needs, independent of sockets and threads.

    Attributes:
        account: Profiles, events and import jobs.
        rate_limiter: Per-endpoint windows, or None when rate limits are off.
        faults: Fault injector for ``/api/`` requests.
        time_scale: How many times faster than real time the rate-limit windows pass.
        base_url: Server base URL without a trailing slash, set once the port is bound.
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        rate_limits: bool = True,
        job_steps: int = 2,
        faults: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the state with the arguments of ``LocalKlaviyoServer``.

        Raises:
            ValueError: time_scale is not positive, job_steps is negative or the fault
                plan is invalid.
        """
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.account = Account(job_steps=job_steps)
        self.rate_limiter = RateLimiter(RATE_LIMITS, time_scale) if rate_limits else None
        self.faults = FaultInjector()
        self.faults.configure(parse_fault_plan(faults))
        self.time_scale = time_scale
        self.base_url = ""
        self._log_lock = threading.Lock()
        self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)

    def record_request(self, entry: dict[str, Any]) -> None:
        """Append one entry to the request log."""
        with self._log_lock:
            self._requests.append(entry)

    def request_records(self) -> list[dict[str, Any]]:
        """Return copies of the logged requests, oldest first."""
        with self._log_lock:
            return [dict(entry) for entry in self._requests]

    def set_faults(self, plan: Mapping[str, Any] | None) -> dict[str, Any]:
        """Replace the fault plan and return it as stored.

        Raises:
            ValueError: The plan is invalid. The message names the key.
        """
        self.faults.configure(parse_fault_plan(plan))
        description = self.faults.describe()
        logger.info("Fault plan set to %s", description or "none")
        return description

    def reset(self) -> None:
        """Clear the account, the request log, the rate-limit windows and the fault plan."""
        self.account.reset()
        with self._log_lock:
            self._requests.clear()
        if self.rate_limiter is not None:
            self.rate_limiter.reset()
        self.faults.configure(None)

    def local_get(self, path: str) -> Any | None:
        """Return the body of ``GET /_local/<name>``, or None for an unknown path."""
        if path == "/_local/events":
            return self.account.event_records()
        if path == "/_local/profiles":
            return self.account.profile_records()
        if path == "/_local/requests":
            return self.request_records()
        if path == "/_local/faults":
            return self.faults.describe()
        return None

    def local_post(self, path: str, body: Any) -> Any | None:
        """Apply ``POST /_local/<name>`` and return the response body, or None if unknown.

        Raises:
            ValueError: The fault plan is invalid.
        """
        if path == "/_local/reset":
            self.reset()
            return {"reset": True, "time": time.time()}
        if path == "/_local/faults":
            if body is not None and not isinstance(body, dict):
                raise ValueError("the fault plan must be a JSON object")
            return self.set_faults(body)
        return None
