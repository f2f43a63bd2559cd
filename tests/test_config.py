"""Config validation: every error names the key path, the value and what is expected."""

import json

import pytest

from klaviyo_pipeline.config import ConfigError, load_config, parse_config

BASE = {
    "partitions": {"start": "2019-10-01", "timezone": "UTC"},
    "source": {"kind": "files", "path": "events.parquet"},
    "destination": {"settings": {"apiKey": "$KLAVIYO_API_KEY"}},
}


def _with(**changes):
    raw = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return raw


def test_bundled_example_loads():
    config = load_config()
    assert config.source.kind == "files"
    assert config.partitions.start.isoformat() == "2019-10-01"


def test_walkeros_flow_file_accepted():
    flow = {
        "destinations": {
            "klaviyo": {
                "package": "@walkeros/server-destination-klaviyo",
                "config": {
                    "settings": {
                        "apiKey": "$KLAVIYO_API_KEY",
                        "email": "user.email",
                        "externalId": "user.id",
                    }
                },
            }
        }
    }
    config = parse_config({**BASE, "destination": flow})
    assert config.destination["settings"]["externalId"] == "user.id"


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        # A typo in a setting would silently disable an identifier.
        (
            {"destination__settings__externalID": "user.id"},
            ["destination.settings.externalID", "unknown setting"],
        ),
        # The currency must be an ISO 4217 code.
        (
            {"destination__settings__currency": "US$"},
            ["destination.settings.currency", "ISO 4217", '"US$"'],
        ),
        # JavaScript functions cannot run; a Python callable is needed.
        (
            {"destination__settings__email": {"fn": "$code:(e) => e.user.email"}},
            ["destination.settings.email.fn", "package.module:function"],
        ),
        # A callable that does not import.
        (
            {"destination__settings__email": {"fn": "no_such_module:f"}},
            ["destination.settings.email.fn", "no_such_module"],
        ),
        # An unknown partition timezone.
        (
            {"partitions__timezone": "Mars/Olympus"},
            ["partitions.timezone", "IANA timezone", "Mars/Olympus"],
        ),
        # A batch larger than Klaviyo accepts.
        ({"sync__event_batch_size": 5000}, ["sync.event_batch_size", "1000 events"]),
        # A source kind needs its own fields.
        ({"source": {"kind": "postgres", "table": "events"}}, ["source", "dsn"]),
        # An unknown top-level section.
        ({"sinks": {}}, ["sinks", "unknown key", "destination"]),
        # A rule key that walkerOS does not have.
        (
            {"destination__mapping": {"order": {"complete": {"nmae": "Placed Order"}}}},
            ["destination.mapping.order.complete.nmae", "unknown rule key"],
        ),
    ],
)
def test_invalid_config_names_path(changes, fragments):
    with pytest.raises(ConfigError) as raised:
        parse_config(_with(**changes))
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message


def test_metric_names_differing_in_case_rejected():
    mapping = {
        "order": {"complete": {"name": "Placed order"}},
        "purchase": {"*": {"name": "Placed Order"}},
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(_with(destination__mapping=mapping))
    assert "only in case or spacing" in str(raised.value)
    assert "destination.mapping.purchase.*.name" in str(raised.value)


def test_metric_name_of_128_rejected():
    mapping = {"order": {"complete": {"name": "x" * 128}}}
    with pytest.raises(ConfigError, match="at most 127 characters"):
        parse_config(_with(destination__mapping=mapping))


def test_api_key_value_never_in_error():
    with pytest.raises(ConfigError) as raised:
        parse_config(_with(destination__settings__apiKey=12345))
    assert "12345" not in str(raised.value)


def test_missing_config_file_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_file_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(BASE))
    monkeypatch.setenv("KLAVIYO_PIPELINE_CONFIG", str(path))
    config = load_config()
    assert config.base_dir == str(tmp_path)


def test_versioned_flow_file_accepted():
    flow = {
        "version": 1,
        "flows": {
            "web": {
                "destinations": {
                    "klaviyoServer": {
                        "package": "@walkeros/server-destination-klaviyo@4.4.0",
                        "config": {"settings": {"externalId": "user.id"}},
                    },
                    "other": {"package": "@walkeros/server-destination-api", "config": {}},
                }
            }
        },
    }
    config = parse_config({**BASE, "destination": flow})
    assert config.destination == {"settings": {"externalId": "user.id"}}


def test_flow_file_path_accepted(tmp_path):
    flow = {"destinations": {"klaviyo": {"config": {"settings": {"email": "user.mail"}}}}}
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    config = parse_config({**BASE, "destination": "flow.json"}, base_dir=tmp_path)
    assert config.destination["settings"]["email"] == "user.mail"


def test_flow_file_without_klaviyo_rejected():
    flow = {"destinations": {"api": {"package": "@walkeros/server-destination-api", "config": {}}}}
    with pytest.raises(ConfigError, match="exactly one destination"):
        parse_config({**BASE, "destination": flow})


@pytest.mark.parametrize(
    "changes",
    [
        # A rule name would become a metric literally named after the code.
        {"destination__mapping": {"order": {"complete": {"name": "$code:(e) => e.name"}}}},
        # A value would resolve to nothing.
        {
            "destination__mapping": {
                "order": {"complete": {"settings": {"value": "$code:(e) => 1"}}}
            }
        },
        # A data map entry would be left out.
        {"destination__mapping": {"page": {"view": {"data": {"map": {"x": "$code:(e) => 1"}}}}}},
    ],
)
def test_javascript_anywhere_rejected(changes):
    with pytest.raises(ConfigError, match="JavaScript functions cannot run here"):
        parse_config(_with(**changes))
