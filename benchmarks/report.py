"""Targets, the printed table and the results file of a benchmark run."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"
RSS_LIMIT_MB = 1.5 * 1024


@dataclass(frozen=True)
class Target:
    """One figure of the results, its goal and how to check it."""

    key: str
    label: str
    goal: str
    check: Callable[[dict[str, Any]], bool]
    unit: str = ""


def _at_least(key: str, minimum: float) -> Callable[[dict[str, Any]], bool]:
    return lambda results: results.get(key) is not None and results[key] >= minimum


def _at_most(key: str, maximum: float) -> Callable[[dict[str, Any]], bool]:
    return lambda results: results.get(key) is not None and results[key] <= maximum


def _full_batches(section: str, requests: str) -> Callable[[dict[str, Any]], bool]:
    """Pass when the sync sent no more requests than full batches need (ceil(n / max))."""

    def check(results: dict[str, Any]) -> bool:
        details = results.get(section) or {}
        count, minimum = details.get(requests), details.get("minimum_requests")
        return count is not None and minimum is not None and count <= minimum

    return check


TARGETS = (
    Target(
        "events_per_second",
        "Mapping throughput, one core",
        ">= 100,000",
        _at_least("events_per_second", 100_000),
        "events/s",
    ),
    Target(
        "speedup_vs_baseline",
        "Speed-up over the per-row baseline",
        ">= 10",
        _at_least("speedup_vs_baseline", 10),
        "x",
    ),
    Target(
        "sync_efficiency",
        "Sync efficiency (bound / wall)",
        ">= 0.95",
        _at_least("sync_efficiency", 0.95),
    ),
    Target(
        "sync_efficiency_steady",
        "Sync efficiency at Klaviyo's real pace, 151 requests",
        ">= 0.95",
        _at_least("sync_efficiency_steady", 0.95),
    ),
    Target(
        "requests_per_1000_events",
        "Requests per 1,000 events",
        "<= 1 (full batches)",
        _full_batches("sync", "requests"),
    ),
    Target(
        "requests_per_10000_profiles",
        "Import jobs per 10,000 profiles",
        "<= 1 (full jobs)",
        _full_batches("profiles", "import_requests"),
    ),
    Target(
        "peak_rss_mb_1m",
        "Peak RSS, whole sync, 1M events",
        "<= 1,536 MiB",
        _at_most("peak_rss_mb_1m", RSS_LIMIT_MB),
        "MiB",
    ),
    Target(
        "peak_rss_mb_2m",
        "Peak RSS, whole sync, 2M events",
        "<= 1,536 MiB",
        _at_most("peak_rss_mb_2m", RSS_LIMIT_MB),
        "MiB",
    ),
    Target(
        "peak_rss_mb_mapping_1m",
        "Peak RSS, mapping, 1M events",
        "<= 1,536 MiB",
        _at_most("peak_rss_mb_mapping_1m", RSS_LIMIT_MB),
        "MiB",
    ),
    Target(
        "peak_rss_mb_mapping_2m",
        "Peak RSS, mapping, 2M events",
        "<= 1,536 MiB",
        _at_most("peak_rss_mb_mapping_2m", RSS_LIMIT_MB),
        "MiB",
    ),
)

# Figures without a target that the table shows after the targets.
INFORMATION = (
    ("baseline_events_per_second", "Baseline throughput, one core", "events/s"),
    ("serialize_floor_events_per_second", "Serialization floor (orjson)", "events/s"),
    ("events_per_wall_second", "Mapping throughput, wall clock", "events/s"),
    ("send_span_efficiency", "Sync efficiency, first to last request", ""),
    ("sync_efficiency_burst", "Sync efficiency at Klaviyo's real pace, 100 requests", ""),
    ("all_requests_per_10000_profiles", "All profile requests per 10,000 profiles", ""),
    ("peak_rss_mb_whole_sync_100k", "Peak RSS, whole sync, 100k events", "MiB"),
)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per target with its value and PASS, MISS or NOT MEASURED."""
    rows = []
    for target in TARGETS:
        value = results.get(target.key)
        status = "PASS" if target.check(results) else "MISS"
        if value is None:
            status = "NOT MEASURED"
        rows.append({"figure": target.key, "value": value, "target": target.goal, "status": status})
    return rows


def _format(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if unit in ("events/s", "MiB"):
        return f"{value:,.0f} {unit}"
    if unit == "x":
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(results: dict[str, Any]) -> str:
    """Return the figures as a text table: targets with PASS or MISS, then the others."""
    lines = [f"{'figure':44} {'value':>18}  {'target':20} status", "-" * 92]
    for target, row in zip(TARGETS, results["targets"], strict=True):
        value = _format(row["value"], target.unit)
        lines.append(f"{target.label:44} {value:>18}  {target.goal:20} {row['status']}")
    lines.append("")
    for key, label, unit in INFORMATION:
        lines.append(f"{label:44} {_format(results.get(key), unit):>18}")
    return "\n".join(lines)


def format_stages(title: str, stages: dict[str, dict[str, float]], events: int) -> str:
    """Return a stage breakdown table with CPU and wall seconds and events per CPU second."""
    total_cpu = sum(stage["cpu_seconds"] for stage in stages.values())
    total_wall = sum(stage["wall_seconds"] for stage in stages.values())
    lines = [
        title,
        f"  {'stage':12} {'cpu s':>9} {'wall s':>9} {'share':>7} {'events/cpu s':>14}",
    ]
    for name, stage in {
        **stages,
        "total": {"cpu_seconds": total_cpu, "wall_seconds": total_wall},
    }.items():
        cpu = stage["cpu_seconds"]
        share = cpu / total_cpu if total_cpu else 0.0
        rate = f"{events / cpu:,.0f}" if cpu > 0 else "-"
        lines.append(f"  {name:12} {cpu:9.3f} {stage['wall_seconds']:9.3f} {share:7.1%} {rate:>14}")
    return "\n".join(lines)


def write_results(results: dict[str, Any], path: Path = LATEST) -> None:
    """Write the results as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def markdown_tables(results: dict[str, Any]) -> str:
    """Return the figures and the stage breakdowns as Markdown tables, for the docs."""
    lines = ["| figure | value | target | status |", "|---|---:|---|---|"]
    for target, row in zip(TARGETS, results["targets"], strict=True):
        value = _format(row["value"], target.unit)
        lines.append(f"| {target.label} | {value} | {target.goal} | {row['status']} |")
    for key, label, unit in INFORMATION:
        lines.append(f"| {label} | {_format(results.get(key), unit)} | | |")
    throughput = results["throughput"]
    events = throughput["events"]
    for title, stages in (
        ("Project", throughput["stages"]),
        ("Baseline", throughput["baseline_stages"]),
    ):
        total = sum(stage["cpu_seconds"] for stage in stages.values())
        lines += ["", f"| {title} stage | CPU s | wall s | share of CPU | events per CPU s |"]
        lines.append("|---|---:|---:|---:|---:|")
        for name, stage in stages.items():
            cpu = stage["cpu_seconds"]
            rate = f"{events / cpu:,.0f}" if cpu > 0 else "-"
            share = cpu / total if total else 0.0
            lines.append(
                f"| {name} | {cpu:.3f} | {stage['wall_seconds']:.3f} | {share:.1%} | {rate} |"
            )
        lines.append(f"| total | {total:.3f} | | | {events / total:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    """Print the Markdown tables of `results/latest.json`."""
    print(markdown_tables(json.loads(LATEST.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
