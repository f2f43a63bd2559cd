"""Tests of the Klaviyo Dagster resource."""

from __future__ import annotations

import logging

import dagster as dg

from klaviyo_pipeline.config import SyncConfig
from klaviyo_pipeline.klaviyo import DryRunKlaviyoClient, KlaviyoResource, SdkKlaviyoClient

LOCAL_URL = "http://127.0.0.1:9"
SECRET = "pk_secret_for_repr_test"


def test_no_key_means_dry_run(caplog):
    resource = KlaviyoResource(api_key=None, base_url=LOCAL_URL)
    with caplog.at_level(logging.INFO):
        client = resource.get_client(SyncConfig())

    assert isinstance(client, DryRunKlaviyoClient)
    assert "KLAVIYO_API_KEY is not set" in caplog.text


def test_dry_run_flag(caplog):
    resource = KlaviyoResource(api_key=SECRET, base_url=LOCAL_URL, dry_run=True)
    with caplog.at_level(logging.INFO):
        client = resource.get_client(SyncConfig())

    assert isinstance(client, DryRunKlaviyoClient)
    assert "Dry run" in caplog.text
    assert SECRET not in caplog.text


def test_config_dry_run():
    resource = KlaviyoResource(api_key=SECRET, base_url=LOCAL_URL)

    assert isinstance(resource.get_client(SyncConfig(dry_run=True)), DryRunKlaviyoClient)


def test_key_builds_sdk_client(caplog):
    resource = KlaviyoResource(api_key=SECRET, base_url=LOCAL_URL + "/")
    with caplog.at_level(logging.DEBUG):
        client = resource.get_client(SyncConfig())
        second = resource.get_client(SyncConfig())

    assert isinstance(client, SdkKlaviyoClient)
    assert client.base_url == LOCAL_URL
    assert client.rate_limiter is second.rate_limiter
    assert SECRET not in caplog.text


def test_repr_hides_key():
    resource = KlaviyoResource(api_key=SECRET, base_url=LOCAL_URL)

    assert SECRET not in repr(resource)
    assert SECRET not in str(resource)
    assert "api_key=<set>" in repr(resource)


def test_env_var_wiring(monkeypatch):
    monkeypatch.setenv("KLAVIYO_API_KEY", SECRET)
    monkeypatch.setenv("KLAVIYO_BASE_URL", LOCAL_URL)
    resource = KlaviyoResource(
        api_key=dg.EnvVar("KLAVIYO_API_KEY"), base_url=dg.EnvVar("KLAVIYO_BASE_URL")
    )
    with dg.build_resources({"klaviyo": resource}) as resources:
        client = resources.klaviyo.get_client(SyncConfig())

    assert isinstance(client, SdkKlaviyoClient)
    assert client.base_url == LOCAL_URL
