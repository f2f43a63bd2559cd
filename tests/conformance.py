"""Replay walkerOS conformance vectors through normalize and map, for the conformance tests."""

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd

from klaviyo_pipeline.config import PipelineConfig, parse_config
from klaviyo_pipeline.normalized_events import normalize_events
from klaviyo_pipeline.records import MappedPartition, build_records

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "walkeros"
SECTIONS = ("data", "user", "globals", "context", "custom", "source", "consent")


def normalize_email(event: Any, context: Any = None) -> Any:
    """Python stand-in for run E-custom-settings' JavaScript email function."""
    email = (event.get("user") or {}).get("email") if isinstance(event, dict) else None
    return email.strip().lower() if isinstance(email, str) else None


def _replace_code(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _replace_code(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_code(item) for item in value]
    if isinstance(value, str) and value.startswith("$code:"):
        return normalize_email
    return value


def load_runs() -> list[dict[str, Any]]:
    """Return the runs of events.json with `$code:` functions replaced by Python callables."""
    runs = json.loads((VECTORS / "events.json").read_text())["runs"]
    return [{**run, "destination": _replace_code(run["destination"])} for run in runs]


def load_calls() -> list[dict[str, Any]]:
    """Return the lines of calls.jsonl."""
    return [json.loads(line) for line in (VECTORS / "calls.jsonl").read_text().splitlines() if line]


def collector_event(event: dict[str, Any], collector: dict[str, Any]) -> dict[str, Any]:
    """Fill in the fields that walkerOS's collector adds before calling a destination."""
    filled = dict(event)
    entity, _, action = filled["name"].partition(" ")
    filled.setdefault("entity", entity)
    filled.setdefault("action", action)
    filled.setdefault("trigger", "")
    filled.setdefault("timing", 0)
    filled.setdefault("nested", [])
    filled.setdefault("source", {"type": "collector", "schema": "4"})
    filled["globals"] = {**collector.get("globals", {}), **filled.get("globals", {})}
    filled["user"] = {**collector.get("user", {}), **filled.get("user", {})}
    filled["consent"] = {**collector.get("consent", {}), **filled.get("consent", {})}
    return filled


def event_row(event: dict[str, Any]) -> dict[str, Any]:
    """Flatten one walkerOS event into a warehouse row with dotted section columns."""
    row: dict[str, Any] = {}
    for key, value in event.items():
        if key in SECTIONS and isinstance(value, dict):
            for field, item in value.items():
                row[f"{key}.{field}"] = item
        else:
            row[key] = value
    return row


def run_config(run: dict[str, Any]) -> PipelineConfig:
    """Build a pipeline config around one run's destination."""
    destination = copy.deepcopy(run["destination"])
    if not run.get("noDefaultApiKey"):
        destination.setdefault("settings", {}).setdefault("apiKey", "pk_test_key")
    raw = {
        "partitions": {"start": "2000-01-01"},
        "source": {"kind": "files", "path": "unused.ndjson"},
        "destination": destination,
    }
    return parse_config(raw)


def map_run(run: dict[str, Any]) -> MappedPartition:
    """Normalize and map every event of one run as one partition."""
    collector = run.get("collector") or {}
    rows = [event_row(collector_event(event, collector)) for event in run["events"]]
    frame = pd.DataFrame(rows)
    events = normalize_events(frame, timestamp_unit="ms", source_timezone="UTC")
    return build_records(events, run_config(run), "conformance")
