"""The sync's retry loop: bounded attempts with jittered exponential backoff.

This is the only retry layer between the sync and Klaviyo; the SDK client makes one
attempt per call. Waiting for ``Retry-After`` is the rate limiter's job, so the backoff
here comes on top of any pause the limiter imposes. Retrying a bulk event request is safe
because Klaviyo keeps only the first event per (profile, metric, unique_id), and retrying
a profile import job repeats the same upsert.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo.classify import Classification, ErrorAction, classify_error
from klaviyo_pipeline.klaviyo.errors import (
    KlaviyoApiError,
    KlaviyoError,
    KlaviyoFatalError,
    KlaviyoTransportError,
)

ResultT = TypeVar("ResultT")
# Retries logged at WARNING per sync; later ones go to DEBUG and into the report's count.
LOGGED_RETRIES = 20


class RequestFailed(Exception):
    """A request ended with an error that names rows (reject) or requires a split.

    Attributes:
        error: The client error of the last attempt.
        classification: What the sync does next.
        attempts: Attempts made for this request.
    """

    def __init__(self, error: KlaviyoError, classification: Classification, attempts: int) -> None:
        self.error = error
        self.classification = classification
        self.attempts = attempts
        super().__init__(str(error))


class RetriesExhausted(Exception):
    """Every attempt of a request failed with a retryable error.

    Attributes:
        error: The error of the last attempt.
        attempts: Attempts made.
    """

    def __init__(self, error: Exception, attempts: int) -> None:
        self.error = error
        self.attempts = attempts
        super().__init__(f"gave up after {attempts} attempts: {error}")


@dataclass
class RetryTotals:
    """Attempts, retries and backoff seconds of one sync."""

    attempts: int = 0
    retries: int = 0
    backoff_seconds: float = 0.0


def backoff_delay(attempt: int, base: float, maximum: float, rng: random.Random) -> float:
    """Return the wait after failed attempt `attempt` (1-based), in seconds.

    The delay doubles per attempt up to `maximum`, and the second half of it is random
    ("equal jitter"), so concurrent clients spread out while the wait never drops below half.
    """
    delay = min(maximum, base * 2 ** (attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


class RequestRunner:
    """Run one client call with the configured retry budget.

    Args:
        config: ``max_attempts``, ``backoff_base_seconds`` and ``backoff_max_seconds``.
        revision: API revision, named in the message of a 410.
        logger: Logger for retries.
        rng: Random source of the jitter.
        sleep: Function that blocks for a number of seconds.
    """

    def __init__(
        self,
        config: SyncConfig,
        revision: str,
        logger: logging.Logger | logging.LoggerAdapter,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.revision = revision
        self.logger = logger
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.totals = RetryTotals()

    def run(self, description: str, call: Callable[[], ResultT]) -> tuple[ResultT, int]:
        """Call `call` until it succeeds or the budget is spent.

        Returns:
            The result and the number of attempts made.

        Raises:
            RequestFailed: An error that rejects rows or splits the batch.
            RetriesExhausted: Every attempt failed with a retryable error.
            KlaviyoFatalError: A configuration error; nothing more should be sent.
        """
        attempt = 0
        while True:
            attempt += 1
            self.totals.attempts += 1
            try:
                return call(), attempt
            except KlaviyoError as error:
                classification = classify_error(error, self.revision)
                if classification.action is ErrorAction.FATAL:
                    raise KlaviyoFatalError(
                        classification.message or str(error), getattr(error, "status", None)
                    ) from error
                if classification.action is not ErrorAction.RETRY:
                    raise RequestFailed(error, classification, attempt) from error
                if attempt >= self.config.max_attempts:
                    raise RetriesExhausted(error, attempt) from error
                self._wait(description, error, attempt)

    def _wait(self, description: str, error: KlaviyoError, attempt: int) -> None:
        delay = backoff_delay(
            attempt, self.config.backoff_base_seconds, self.config.backoff_max_seconds, self.rng
        )
        self.totals.retries += 1
        self.totals.backoff_seconds += delay
        level = logging.WARNING if self.totals.retries <= LOGGED_RETRIES else logging.DEBUG
        self.logger.log(
            level,
            "Retrying %s in %.2f s after attempt %d of %d failed: %s",
            description,
            delay,
            attempt,
            self.config.max_attempts,
            _describe(error),
        )
        if self.totals.retries == LOGGED_RETRIES:
            self.logger.warning("Further retries of this sync are logged at DEBUG level")
        self.sleep(delay)


def _describe(error: KlaviyoError) -> str:
    if isinstance(error, KlaviyoApiError):
        return f"HTTP {error.status} {error.first_code or ''}".strip()
    if isinstance(error, KlaviyoTransportError):
        return f"{error.kind} error"
    return str(error)
