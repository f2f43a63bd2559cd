"""Peak RSS of the mapping and of the whole sync, each in a fresh process.

The parent starts `python -m benchmarks.memory {mapping,sync} ...`. The child writes its
stage timings, its counts and its peak RSS after each stage to a JSON file. The peak RSS
is `VmHWM` of `/proc/self/status`, the high-water mark of the child program's own memory.
It is not `ru_maxrss`, because on Linux a child's `ru_maxrss` includes the RSS that its
parent had at the fork. A child of an 800 MiB Python process reports 811 MiB of
`ru_maxrss` and 11 MiB of `VmHWM` before it allocates anything (measured on this machine,
Linux with Python 3.11). The parent stores the `ru_maxrss` from `os.wait4` next to it.

- `mapping`: read the export through the files source (`read_source_events`), then the
  stages of `benchmarks.mapping`, with each body dropped once it is built.
- `sync`: read through the files source, normalize, map, then `run_event_sync` to a local
  Klaviyo server in another process, without rate limits on either side. The sync log is
  a DuckDB file in a fresh folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.clock import StageClock, load_average
from benchmarks.configs import LOCAL_API_KEY, PARTITION, build_config

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class ChildResult:
    """Peak RSS (VmHWM) of one child process and the report it wrote."""

    peak_rss_mb: float
    report: dict[str, Any]


def measure(
    mode: str, export: Path, *, base_url: str | None = None, timeout_seconds: float = 900.0
) -> ChildResult:
    """Run one child in `mode` on `export` and return its peak RSS and report.

    Raises:
        RuntimeError: The child failed or ran longer than `timeout_seconds`.
    """
    with tempfile.TemporaryDirectory(prefix="klaviyo_bench_") as folder:
        output = Path(folder) / "report.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            mode,
            "--export",
            str(export),
            "--state-dir",
            folder,
            "--output",
            str(output),
        ]
        if base_url:
            command += ["--base-url", base_url]
        process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
        timer = threading.Timer(timeout_seconds, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(
                f"benchmark child {mode} on {export.name} exited with status "
                f"{process.returncode} (killed after {timeout_seconds:.0f} s if negative)"
            )
        report = json.loads(output.read_text(encoding="utf-8"))
    report["ru_maxrss_mb"] = round(usage.ru_maxrss * KIB / MIB, 1)
    return ChildResult(peak_rss_mb=report["peak_rss_mb"], report=report)


def _own_peak_mb() -> float:
    """Return this process's peak RSS in MiB: VmHWM on Linux, else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * KIB / MIB, 1)
    except OSError:
        pass
    # NOTE: outside Linux, ru_maxrss may include the parent's RSS at the fork; see above.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB, 1)


def _run_assets(export: Path, state_dir: Path, base_url: str | None) -> dict[str, Any]:
    """Run the mapping assets' functions, then the event sync when `base_url` is given."""
    from klaviyo_pipeline import pipeline
    from klaviyo_pipeline.klaviyo import KlaviyoResource
    from klaviyo_pipeline.sync_run import run_event_sync

    config = build_config(export, state_dir, unlimited_client=True)
    peaks: dict[str, float] = {"start": _own_peak_mb()}
    clock = StageClock()
    with clock.stage("read"):
        source = pipeline.write_source_events(config, PARTITION)
    peaks["read"] = _own_peak_mb()
    with clock.stage("normalize"):
        normalized = pipeline.write_normalized_events(config, PARTITION, source)
    peaks["normalize"] = _own_peak_mb()
    with clock.stage("map"):
        tables = pipeline.write_records(config, PARTITION, normalized)
    peaks["map"] = _own_peak_mb()
    report: dict[str, Any] = {"rows": len(source), "events": len(tables.events)}
    if base_url is not None:
        klaviyo = KlaviyoResource(api_key=LOCAL_API_KEY, base_url=base_url)
        with clock.stage("sync"):
            outcome = run_event_sync(
                config,
                klaviyo,
                tables.events,
                tables.outcomes,
                partition=PARTITION,
                run_id="benchmark-memory",
                state_database=config.sync.state_database,
                backfill=True,
            )
        peaks["sync"] = _own_peak_mb()
        report["requests"] = outcome.requests
        report["status_counts"] = outcome.status_counts
    report["stages"] = clock.as_dict()
    report["peak_rss_mb_after"] = peaks
    report["peak_rss_mb"] = _own_peak_mb()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run one measured child: map or sync one export, then write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("mode", choices=["mapping", "sync"])
    parser.add_argument("--export", type=Path, required=True, help="generated export file")
    parser.add_argument("--state-dir", type=Path, required=True, help="folder for the sync log")
    parser.add_argument("--output", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--base-url", help="local Klaviyo server, for mode sync")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    load_before = load_average()
    if arguments.mode == "sync" and not arguments.base_url:
        parser.error("mode sync needs --base-url")
    base_url = arguments.base_url if arguments.mode == "sync" else None
    report = _run_assets(arguments.export, arguments.state_dir, base_url)
    report["load_average_before"] = load_before
    report["load_average_after"] = load_average()
    arguments.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
