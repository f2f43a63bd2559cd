"""Run the benchmarks, print the figures against their targets and write the results.

    python -m benchmarks.run               # what `make bench` runs; results/latest.json
    python -m benchmarks.run --full-sync   # whole sync of 1M and 2M events; results/full-sync.json
    python -m benchmarks.run --refresh-full-sync   # copy those figures into results/latest.json

The default run first measures the mapping throughput of the project and of the per-row
baseline on the same 100k rows, and the serialization floor. Then it measures the sync
efficiency and the request counts against rate-limited local servers. Last come the peak
RSS of the mapping at 1M and 2M rows and of the whole sync at 100k rows. The whole sync of
1M and 2M events would push `make bench` past the 15 minutes it may take, so `--full-sync`
measures it on its own. The default run copies the figures of the last such run, with its
date and commit. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import baseline, generate, mapping, memory, pacing, report
from benchmarks.clock import StageClock, load_average
from benchmarks.configs import PARTITION, build_config
from benchmarks.local_server import local_klaviyo
from benchmarks.machine import git_revision, machine_info
from klaviyo_pipeline import pipeline

THROUGHPUT_ROWS = 100_000
MAPPING_MEMORY_ROWS = (1_000_000, 2_000_000)
WHOLE_SYNC_ROWS = 100_000
FULL_SYNC_ROWS = (1_000_000, 2_000_000)
WARM_UP_ROWS = 2_000
THROUGHPUT_REPEATS = 7
TIME_SCALE = 60.0
FULL_SYNC_RESULTS = report.RESULTS_DIR / "full-sync.json"
CHILD_TIMEOUT_SECONDS = 900.0
FULL_SYNC_TIMEOUT_SECONDS = 4 * 3600.0
BUDGET_SECONDS = 15 * 60


def _progress(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _rate(events: int, seconds: float) -> float | None:
    return round(events / seconds, 1) if seconds > 0 else None


def measure_throughput(export: Path, state_dir: Path) -> dict[str, Any]:
    """Map the same rows with the project and with the baseline, and check that they agree."""
    config = build_config(export, state_dir)
    window = pipeline.partition_window(config, PARTITION)
    read = StageClock()
    with read.stage("read"):
        source = pipeline.read_source_events(config, PARTITION)

    # Imports, compiled mappings and lookup tables load on first use, so a warm-up run
    # keeps their cost out of the measurement.
    mapping.run_mapping(config, source.head(WARM_UP_ROWS))
    baseline.run_baseline(source.head(WARM_UP_ROWS), (window.start, window.end))

    # Each side keeps its run with the least CPU time, because other processes on the same
    # cores slow single runs down unevenly. A side's runs follow each other, as the chunks
    # of a partition do, because a project run right after a baseline run took 10 to 20 %
    # more CPU seconds.
    project: mapping.MappingRun | None = None
    for _ in range(THROUGHPUT_REPEATS):
        gc.collect()
        candidate = mapping.run_mapping(config, source)
        if project is None or candidate.clock.total_cpu() < project.clock.total_cpu():
            project = candidate
        del candidate
    plain: baseline.BaselineRun | None = None
    for _ in range(THROUGHPUT_REPEATS):
        gc.collect()
        plain_candidate = baseline.run_baseline(source, (window.start, window.end))
        if plain is None or plain_candidate.clock.total_cpu() < plain.clock.total_cpu():
            plain = plain_candidate
        del plain_candidate
    assert project is not None and plain is not None
    documents = project.documents()
    floor = mapping.serialize_floor(documents)

    project_events = sorted(baseline.event_tuples(documents))
    baseline_events = sorted(baseline.event_tuples(plain.bodies))
    equivalence = {
        "rows_compared": len(source),
        "events_compared": len(project_events),
        "same_events": project_events == baseline_events,
        "same_body_documents": documents == plain.bodies,
    }
    del documents
    if not equivalence["same_events"]:
        raise RuntimeError(
            "the baseline and the project produced different events "
            f"({len(baseline_events):,} and {len(project_events):,}); the comparison is void"
        )

    cpu = project.clock.total_cpu()
    baseline_cpu = plain.clock.total_cpu()
    events_per_second = _rate(project.events, cpu)
    baseline_rate = _rate(plain.events, baseline_cpu)
    return {
        "events_per_second": events_per_second,
        "events_per_wall_second": _rate(project.events, project.clock.total_wall()),
        "baseline_events_per_second": baseline_rate,
        "speedup_vs_baseline": (
            round(events_per_second / baseline_rate, 3)
            if events_per_second and baseline_rate
            else None
        ),
        "serialize_floor_events_per_second": _rate(project.events, floor.cpu["orjson"]),
        "throughput": {
            "rows": project.rows,
            "events": project.events,
            "repeats": THROUGHPUT_REPEATS,
            "requests": project.requests,
            "read_seconds": read.as_dict()["read"],
            "equivalence": equivalence,
            "stages": project.clock.as_dict(),
            "baseline_stages": plain.clock.as_dict(),
            "serialize_floor": floor.as_dict()["orjson"],
            "body_bytes": sum(len(body) for body in project.bodies),
        },
        "_records": project.mapped.events,
    }


def measure_profiles(export: Path, state_dir: Path) -> dict[str, Any]:
    """Map the rows with an identify mapping and import the profiles into a local server."""
    config = build_config(export, state_dir, identify=True)
    source = pipeline.read_source_events(config, PARTITION)
    events = pipeline.normalize_partition(config, PARTITION, source)
    mapped = pipeline.map_partition(config, PARTITION, events)
    return pacing.measure_profile_requests(config, mapped.profiles, time_scale=TIME_SCALE)


def measure_memory(exports: dict[int, Path]) -> dict[str, Any]:
    """Run the mapping children at 1M and 2M rows and the whole-sync child at 100k rows."""
    children: dict[str, Any] = {}
    for rows in MAPPING_MEMORY_ROWS:
        _progress(f"peak RSS of the mapping, {rows:,} rows")
        result = memory.measure("mapping", exports[rows], timeout_seconds=CHILD_TIMEOUT_SECONDS)
        children[f"mapping_{rows}"] = {"peak_rss_mb": result.peak_rss_mb, **result.report}
    _progress(f"peak RSS of the whole sync, {WHOLE_SYNC_ROWS:,} rows")
    children[f"whole_sync_{WHOLE_SYNC_ROWS}"] = _whole_sync(exports[WHOLE_SYNC_ROWS])
    return children


def _whole_sync(export: Path, timeout_seconds: float = CHILD_TIMEOUT_SECONDS) -> dict[str, Any]:
    with local_klaviyo(rate_limits=False, job_steps=0) as server:
        result = memory.measure(
            "sync", export, base_url=server.base_url, timeout_seconds=timeout_seconds
        )
    return {"peak_rss_mb": result.peak_rss_mb, **result.report}


def _mapping_rate(child: dict[str, Any]) -> float | None:
    stages = child.get("stages") or {}
    cpu = sum(
        stages[name]["cpu_seconds"] for name in ("read", "normalize", "map") if name in stages
    )
    return _rate(int(child.get("events", 0)), cpu)


def run_full_sync(seed: int) -> dict[str, Any]:
    """Measure the whole sync of 1M and 2M events and write results/full-sync.json."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run --full-sync",
        "seed": seed,
        "machine": machine_info(),
        "git": git_revision(),
        "load_average_start": load_average(),
    }
    exports = {rows: generate.ensure_export(rows, seed) for rows in FULL_SYNC_ROWS}
    _progress(f"peak RSS of the whole sync, {', '.join(f'{rows:,}' for rows in exports)} rows")
    # The children are independent processes, so they run side by side to save time. RSS
    # does not depend on what else runs. Their stage times do, so they are for orientation only.
    with ThreadPoolExecutor(max_workers=len(exports)) as pool:
        futures = {
            rows: pool.submit(_whole_sync, export, FULL_SYNC_TIMEOUT_SECONDS)
            for rows, export in exports.items()
        }
        for rows, future in futures.items():
            results[f"whole_sync_{rows}"] = future.result()
    results["load_average_end"] = load_average()
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    report.write_results(results, FULL_SYNC_RESULTS)
    return results


def _full_sync_figures() -> dict[str, Any]:
    """Return the whole-sync RSS figures of the last `--full-sync` run, with provenance."""
    if not FULL_SYNC_RESULTS.exists():
        return {"full_sync": None}
    full = json.loads(FULL_SYNC_RESULTS.read_text(encoding="utf-8"))
    figures: dict[str, Any] = {
        "full_sync": {
            "source": str(FULL_SYNC_RESULTS.relative_to(report.RESULTS_DIR.parent.parent)),
            "date": full.get("date"),
            "commit": (full.get("git") or {}).get("commit"),
            "product_files_changed_since_commit": (full.get("git") or {}).get(
                "product_files_changed_since_commit"
            ),
        }
    }
    for rows, key in ((1_000_000, "peak_rss_mb_1m"), (2_000_000, "peak_rss_mb_2m")):
        child = full.get(f"whole_sync_{rows}")
        figures[key] = child.get("peak_rss_mb") if child else None
    return figures


# 151 requests: the steady limit of 150 per minute binds, so the bound is one minute, and
# only the last request waits for the second window.
STEADY_REQUESTS = 151


def _steady_records(records: pd.DataFrame, requests: int) -> pd.DataFrame:
    """Return enough distinct events for `requests` full bulk requests, reusing `records`."""
    wanted = requests * 1_000
    copies = [records]
    copy = 1
    while sum(len(frame) for frame in copies) < wanted:
        copies.append(
            records.assign(
                record_id=records["record_id"].astype(str) + f"+{copy}",
                unique_id=records["unique_id"].astype(str) + f"+{copy}",
            )
        )
        copy += 1
    return pd.concat(copies, ignore_index=True).iloc[:wanted]


def _measure_syncs(export: Path, state_dir: Path, records: pd.DataFrame) -> dict[str, Any]:
    """Measure the sync efficiency and the request counts of the records mapped from `export`."""
    results: dict[str, Any] = {}
    _progress(f"sync efficiency, {len(records):,} events at time scale {TIME_SCALE:g}")
    config = build_config(export, state_dir)
    sync = pacing.measure_sync_efficiency(config, records, time_scale=TIME_SCALE)
    steady = _steady_records(records, STEADY_REQUESTS)
    burst_records = records
    del records
    results["sync"] = sync
    results["sync_efficiency"] = sync["sync_efficiency"]
    results["send_span_efficiency"] = sync["send_span_efficiency"]
    results["requests_per_1000_events"] = sync["requests_per_1000_events"]

    _progress(f"sync efficiency, {len(steady):,} events at Klaviyo's real pace")
    steady_sync = pacing.measure_sync_efficiency(config, steady, time_scale=1.0)
    del steady
    results["sync_steady"] = steady_sync
    results["sync_efficiency_steady"] = steady_sync["sync_efficiency"]

    # The 100 requests of the 100k events at the real pace, where the burst limit binds.
    _progress(f"sync efficiency, {THROUGHPUT_ROWS:,} events at Klaviyo's real pace")
    burst_sync = pacing.measure_sync_efficiency(config, burst_records, time_scale=1.0)
    del burst_records
    results["sync_burst"] = burst_sync
    results["sync_efficiency_burst"] = burst_sync["sync_efficiency"]

    _progress(f"profile import requests, {THROUGHPUT_ROWS:,} rows with an identify mapping")
    profiles = measure_profiles(export, state_dir)
    results["profiles"] = profiles
    results["requests_per_10000_profiles"] = profiles["requests_per_10000_profiles"]
    results["all_requests_per_10000_profiles"] = profiles["all_requests_per_10000_profiles"]
    gc.collect()
    return results


def run_default(seed: int) -> dict[str, Any]:
    """Run every benchmark of `make bench` and return the results."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run",
        "seed": seed,
        "machine": machine_info(),
        "git": git_revision(),
        "load_average_start": load_average(),
    }

    _progress("generating or finding the exports")
    generation = StageClock()
    exports: dict[int, Path] = {}
    for rows in sorted({THROUGHPUT_ROWS, WHOLE_SYNC_ROWS, *MAPPING_MEMORY_ROWS}):
        with generation.stage(str(rows)):
            exports[rows] = generate.ensure_export(rows, seed)
    results["exports"] = {
        str(rows): {"file": path.name, "bytes": path.stat().st_size}
        for rows, path in exports.items()
    }
    results["generation_seconds"] = generation.as_dict()

    with tempfile.TemporaryDirectory(prefix="klaviyo_bench_") as folder:
        state_dir = Path(folder)
        # The throughput runs alone, because with a memory child on the other core the same
        # mapping took up to a third more CPU seconds.
        _progress(f"mapping throughput, project and baseline, {THROUGHPUT_ROWS:,} rows")
        throughput = measure_throughput(exports[THROUGHPUT_ROWS], state_dir)
        records = throughput.pop("_records")
        results.update(throughput)

        # The memory children run in their own processes while this process measures the
        # syncs, which saves wall time. Their RSS does not depend on what runs beside them.
        with ThreadPoolExecutor(max_workers=1) as pool:
            children_future = pool.submit(measure_memory, exports)
            results.update(_measure_syncs(exports[THROUGHPUT_ROWS], state_dir, records))
            del records
            children = children_future.result()
    results["memory"] = children
    results["peak_rss_mb_mapping_1m"] = children["mapping_1000000"]["peak_rss_mb"]
    results["peak_rss_mb_mapping_2m"] = children["mapping_2000000"]["peak_rss_mb"]
    results["peak_rss_mb_whole_sync_100k"] = children[f"whole_sync_{WHOLE_SYNC_ROWS}"][
        "peak_rss_mb"
    ]
    results["mapping_assets_events_per_second_1m"] = _mapping_rate(children["mapping_1000000"])
    results["mapping_assets_events_per_second_2m"] = _mapping_rate(children["mapping_2000000"])
    results.update(_full_sync_figures())

    results["load_average_end"] = load_average()
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.evaluate(results)
    report.write_results(results)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the results table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED, help="data seed")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--full-sync", action="store_true", help="measure only the whole sync of 1M and 2M events"
    )
    modes.add_argument(
        "--refresh-full-sync",
        action="store_true",
        help="copy the last --full-sync figures into results/latest.json without measuring",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    if arguments.refresh_full_sync:
        results = json.loads(report.LATEST.read_text(encoding="utf-8"))
        results.update(_full_sync_figures())
        results["targets"] = report.evaluate(results)
        report.write_results(results)
        print(report.format_table(results))
        return 0

    if arguments.full_sync:
        full = run_full_sync(arguments.seed)
        for rows in FULL_SYNC_ROWS:
            child = full[f"whole_sync_{rows}"]
            print(f"whole sync, {rows:,} events: peak RSS {child['peak_rss_mb']:,.0f} MiB")
        print(f"wrote {FULL_SYNC_RESULTS} in {full['duration_seconds']:,.0f} s")
        return 0

    results = run_default(arguments.seed)
    machine = results["machine"]
    print(
        f"{machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}; "
        f"load average {results['load_average_start'][0]} at the start, "
        f"{results['load_average_end'][0]} at the end"
    )
    print(report.format_table(results))
    print()
    throughput = results["throughput"]
    print(
        report.format_stages(
            f"Project mapping, {throughput['events']:,} events",
            throughput["stages"],
            throughput["events"],
        )
    )
    print(
        report.format_stages(
            f"Baseline, {throughput['events']:,} events",
            throughput["baseline_stages"],
            throughput["events"],
        )
    )
    full = results.get("full_sync")
    if full:
        print(f"\nWhole-sync RSS at 1M and 2M events from {full['source']}, {full['date']}")
    else:
        print("\nWhole-sync RSS at 1M and 2M events: not measured; run --full-sync")
    duration = results["duration_seconds"]
    print(f"\nwrote {report.LATEST} in {duration:,.0f} s (budget {BUDGET_SECONDS} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
