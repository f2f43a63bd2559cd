"""``LocalKlaviyoServer``: start, inspect and stop a local Klaviyo server from Python."""

import logging
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import orjson

from klaviyo_pipeline.local_klaviyo.app import LocalKlaviyoApp
from klaviyo_pipeline.local_klaviyo.http_server import LocalKlaviyoHTTPServer

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
# serve_forever checks for a stop request this often, in seconds, so stop() returns within
# about this time. Tests start and stop a server per test, which makes this matter.
_POLL_INTERVAL_SECONDS = 0.01


class LocalKlaviyoServer:
    """HTTP server on 127.0.0.1 that implements the Klaviyo endpoints the sync uses.

    Example::

        with LocalKlaviyoServer(port=0, time_scale=60) as server:
            client = KlaviyoAPI("pk_test", test_host=server.base_url, max_retries=1)
            ...
            assert len(server.events()) == 1000
    """

    def __init__(
        self,
        port: int = 0,
        time_scale: float = 1.0,
        rate_limits: bool = True,
        job_steps: int = 2,
        faults: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the server. Nothing is bound until ``start``.

        Args:
            port: TCP port on 127.0.0.1, or 0 for a free port.
            time_scale: How many times faster than real time the rate-limit windows pass, so
                60 runs a 60 s window in 1 s.
            rate_limits: Enforce Klaviyo's per-endpoint rate limits.
            job_steps: Number of job reads (GET) after which a bulk import job is
                complete. With 0 the POST response already has it complete.
            faults: Initial fault plan, in the format of ``set_faults``.

        Raises:
            ValueError: An argument is out of range or the fault plan is invalid.
        """
        if not 0 <= port <= 65_535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self._requested_port = port
        self._app = LocalKlaviyoApp(
            time_scale=time_scale, rate_limits=rate_limits, job_steps=job_steps, faults=faults
        )
        self._http_server: LocalKlaviyoHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321``, without a trailing slash.

        Raises:
            RuntimeError: The server has not been started.
        """
        if self._http_server is None:
            raise RuntimeError("LocalKlaviyoServer is not started. Call start() first.")
        return self._app.base_url

    @property
    def port(self) -> int:
        """Bound TCP port.

        Raises:
            RuntimeError: The server has not been started.
        """
        if self._http_server is None:
            raise RuntimeError("LocalKlaviyoServer is not started. Call start() first.")
        return int(self._http_server.server_address[1])

    def start(self) -> Self:
        """Bind the port, serve in a background thread and return self.

        Raises:
            RuntimeError: The server is already running.
            OSError: The port cannot be bound.
        """
        if self._http_server is not None:
            raise RuntimeError("LocalKlaviyoServer is already started")
        http_server = LocalKlaviyoHTTPServer((LOOPBACK_HOST, self._requested_port), self._app)
        self._http_server = http_server
        self._app.base_url = f"http://{LOOPBACK_HOST}:{http_server.server_address[1]}"
        self._thread = threading.Thread(
            target=http_server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name=f"local-klaviyo-{http_server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Local Klaviyo server listening on %s", self._app.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the port and every open connection. A second call does nothing."""
        http_server = self._http_server
        if http_server is None:
            return
        http_server.shutdown()
        http_server.server_close()
        http_server.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._http_server = None
        self._thread = None
        logger.info("Local Klaviyo server on %s stopped", self._app.base_url)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def events(self) -> list[dict[str, Any]]:
        """Return copies of the stored events, in the format of ``GET /_local/events``."""
        return _copy(self._app.account.event_records())

    def profiles(self) -> list[dict[str, Any]]:
        """Return copies of the stored profiles, in the format of ``GET /_local/profiles``."""
        return _copy(self._app.account.profile_records())

    def requests(self) -> list[dict[str, Any]]:
        """Return the logged ``/api/`` requests, oldest first.

        Each entry has ``method``, ``path``, ``status`` (None when the connection was
        dropped before a response), ``time`` (Unix seconds) and, where they apply,
        ``route``, ``events``, ``stored``, ``duplicates``, ``profiles``, ``job_id``,
        ``error_code`` and ``fault``.
        """
        return self._app.request_records()

    def set_faults(self, plan: Mapping[str, Any] | None) -> dict[str, Any]:
        """Replace the fault plan with one in the format of ``POST /_local/faults`` and return it.

        Raises:
            ValueError: The plan is invalid. The message names the key.
        """
        return self._app.set_faults(plan)

    def reset(self) -> None:
        """Delete all events, profiles, jobs and logged requests, empty the rate-limit
        windows and clear the fault plan."""
        self._app.reset()


def _copy(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deep-copy JSON records with an orjson round trip, which is faster than copy.deepcopy."""
    return orjson.loads(orjson.dumps(records))
