"""A loopback HTTP proxy that records request bodies, and helpers that sync case records.

`RecordingProxy` sits between the real SDK and the local Klaviyo server, so a test reads the
exact bytes the SDK serialized. Given a fixed error, it returns that error for every `/api/`
request instead, for statuses that the local server does not inject (401, 403, 410).
"""

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import pandas as pd

from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.klaviyo import KlaviyoResource
from klaviyo_pipeline.records import MappedPartition
from klaviyo_pipeline.sync_run import SyncOutcome, run_event_sync, run_profile_sync
from klaviyo_pipeline.tables import PartitionTable, TableWriter

API_KEY = "pk_test_cases_key"
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "host"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class FixedError:
    """A JSON:API error response that the proxy returns for every `/api/` request."""

    status: int
    code: str
    detail: str


class RecordingProxy:
    """HTTP server on 127.0.0.1 that records each request, then forwards it or returns an error.

    Args:
        target: Base URL of the server to forward to, such as a LocalKlaviyoServer's.
        error: A response to return instead of forwarding.
    """

    def __init__(self, target: str | None = None, error: FixedError | None = None) -> None:
        if (target is None) == (error is None):
            raise ValueError(
                "RecordingProxy needs exactly one of target and error, got both or neither"
            )
        self.requests: list[RecordedRequest] = []
        self._target = urlsplit(target) if target else None
        self._error = error
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """Base URL of the proxy, without a trailing slash."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def bodies(self, path_prefix: str) -> list[RecordedRequest]:
        """Return the recorded POST requests whose path starts with `path_prefix`."""
        with self._lock:
            return [
                r for r in self.requests if r.method == "POST" and r.path.startswith(path_prefix)
            ]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if self._error is not None:
            document = {
                "errors": [
                    {
                        "id": "fixed",
                        "status": self._error.status,
                        "code": self._error.code,
                        "title": self._error.code,
                        "detail": self._error.detail,
                        "source": {},
                    }
                ]
            }
            content = json.dumps(document).encode()
            return self._error.status, {"Content-Type": "application/vnd.api+json"}, content
        assert self._target is not None
        connection = http.client.HTTPConnection(
            self._target.hostname, self._target.port, timeout=30
        )
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            content = response.read()
            forwarded = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS}
            return response.status, forwarded, content
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                proxy._record(RecordedRequest(self.command, self.path, headers, body))
                status, response_headers, content = proxy._respond(
                    self.command, self.path, headers, body
                )
                self.send_response(status)
                for name, value in response_headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = _serve
            do_POST = _serve

        return Handler


def write_table(
    frame: pd.DataFrame, path: Path, attrs: dict[str, Any] | None = None
) -> PartitionTable:
    """Write `frame` as a one-chunk partition table, as the assets pass tables on."""
    writer = TableWriter(path)
    writer.write(frame)
    return writer.close(attrs)


def sync_cases(
    mapped: MappedPartition,
    config: PipelineConfig,
    base_url: str,
    state_database: str,
    *,
    run_id: str = "run-1",
    partition: str = "2024-05-01",
    backfill: bool = False,
    stream: str = "event",
    time_scale: float = 1.0,
) -> SyncOutcome:
    """Run the event or profile sync of mapped cases as the sync assets run it.

    The record and outcome tables are written next to `state_database`.
    """
    tables = Path(state_database).parent / f"tables-{stream}-{partition}-{run_id}"
    records = mapped.events if stream == "event" else mapped.profiles
    record_table = write_table(records, tables / "records")
    settled = write_table(mapped.outcomes, tables / "settled", {"rows_read": mapped.rows_read})
    klaviyo = KlaviyoResource(api_key=API_KEY, base_url=base_url, time_scale=time_scale)
    if stream == "event":
        return run_event_sync(
            config,
            klaviyo,
            record_table,
            settled,
            partition=partition,
            run_id=run_id,
            state_database=state_database,
            backfill=backfill,
        )
    return run_profile_sync(
        config,
        klaviyo,
        record_table,
        settled,
        partition=partition,
        run_id=run_id,
        state_database=state_database,
    )


def sent_events(requests: list[RecordedRequest]) -> list[dict[str, Any]]:
    """Return every event of recorded bulk bodies, each with its item's profile attributes."""
    events = []
    for request in requests:
        for item in request.json()["data"]["attributes"]["events-bulk-create"]["data"]:
            profile = item["attributes"]["profile"]["data"]["attributes"]
            for event in item["attributes"]["events"]["data"]:
                events.append({**event["attributes"], "profile": profile})
    return events
