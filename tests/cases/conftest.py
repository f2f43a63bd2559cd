"""Fixtures of the case tests: a local Klaviyo server, a recording proxy in front of it, state."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.cases.wire import RecordingProxy


@pytest.fixture
def server() -> Iterator[LocalKlaviyoServer]:
    """A local Klaviyo server with Klaviyo's rate limits; import jobs complete on the 2nd poll."""
    with LocalKlaviyoServer(port=0) as local_server:
        yield local_server


@pytest.fixture
def proxy(server: LocalKlaviyoServer) -> Iterator[RecordingProxy]:
    """A recording proxy that forwards to `server`."""
    with RecordingProxy(target=server.base_url) as recording:
        yield recording


@pytest.fixture
def state_database(tmp_path: Path) -> str:
    """Path of an empty sync log for the test."""
    return str(tmp_path / "state.duckdb")
