"""Fixtures: a local Klaviyo server on a free port and an SDK client pointed at it."""

from collections.abc import Iterator

import pytest
from klaviyo_api import KlaviyoAPI

from klaviyo_pipeline.local_klaviyo import LocalKlaviyoServer
from tests.local_klaviyo.payloads import make_client


@pytest.fixture
def server() -> Iterator[LocalKlaviyoServer]:
    """Server with the default settings: rate limits on, time scale 1, two job steps."""
    with LocalKlaviyoServer(port=0) as local_server:
        yield local_server


@pytest.fixture
def client(server: LocalKlaviyoServer) -> KlaviyoAPI:
    """SDK client with one attempt per call, so every server response reaches the test."""
    return make_client(server.base_url)
