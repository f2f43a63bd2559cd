"""Profile the mapping path or the event sync with pyinstrument and write the report.

    .venv/bin/pip install pyinstrument   # not a project dependency
    python -m benchmarks.hotspots [--target mapping|sync] [--rows 100000]

`mapping` profiles `benchmarks.mapping.run_mapping` on the generated export with
pyinstrument, after a warm-up on a few rows and one run of the whole export. `sync`
profiles `sync_events` of the mapped records to a local Klaviyo server without rate
limits. The sync sends from worker threads, which pyinstrument does not see, so this
target samples every thread of the process with py-spy (installed next to pyinstrument),
leaving out idle threads. The report lists the functions with the
most time of their own and with the most inclusive time, and for the mapping the call
tree. It goes to `benchmarks/results/profile-<target>.txt`. Both profilers sample wall
time, so on a busy machine the seconds stretch, while the shares stay comparable.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import generate, mapping, report
from benchmarks.clock import StageClock
from benchmarks.configs import LOCAL_API_KEY, PARTITION, build_config
from benchmarks.local_server import local_klaviyo
from benchmarks.machine import cpu_model, git_revision
from klaviyo_pipeline import pipeline

WARM_UP_ROWS = 2_000
SYNC_ROWS_DEFAULT = 20_000
TOP_ENTRIES = 25
PY_SPY_ATTACH_SECONDS = 1.0
_LINE_NUMBER = re.compile(r":\d+\)$")


def _profiler() -> Any:
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit(
            "pyinstrument is not installed; install it into the virtual environment with "
            "'.venv/bin/pip install pyinstrument' (it is not a project dependency)"
        )
    return Profiler(interval=0.001)


def _own_and_total_times(root: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Sum each function's own time and its inclusive time (counted once per stack)."""
    own: dict[str, float] = {}
    total: dict[str, float] = {}
    pending: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while pending:
        frame, above = pending.pop()
        if frame.is_synthetic:
            # A "[self]" leaf: its time is already in the parent's total_self_time.
            continue
        name = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        own[name] = own.get(name, 0.0) + frame.total_self_time
        if name not in above:
            total[name] = total.get(name, 0.0) + frame.time
        pending.extend((child, above | {name}) for child in frame.children)
    return own, total


def _top(times: dict[str, float], whole: float, cpu: float, count: int) -> list[str]:
    lines = [f"  {'share':>6} {'est. cpu s':>10}  function  file:line"]
    for name, seconds in sorted(times.items(), key=lambda item: -item[1])[:count]:
        share = seconds / whole if whole else 0.0
        lines.append(f"  {share:6.1%} {share * cpu:10.3f}  {name}")
    return lines


def _render(profiler: Any, title: str, count: int = TOP_ENTRIES) -> str:
    from pyinstrument.renderers import ConsoleRenderer

    session = profiler.last_session
    root = session.root_frame()
    own, total = _own_and_total_times(root)
    tree = ConsoleRenderer(unicode=False, color=False, show_all=False, time="percent_of_total")
    lines = [
        title,
        f"Samples: {session.sample_count:,}, wall {session.duration:.3f} s, "
        f"CPU {session.cpu_time:.3f} s. Estimated CPU seconds are the share of samples times "
        "the CPU time.",
        "",
        "Functions by own time:",
        *_top(own, root.time, session.cpu_time, count),
        "",
        "Functions by inclusive time:",
        *_top(total, root.time, session.cpu_time, count),
        "",
        "Call tree:",
        tree.render(session),
    ]
    return "\n".join(lines)


def profile_mapping(export: Path, state_dir: Path) -> str:
    """Profile the timed mapping stages on `export` and return the report text."""
    config = build_config(export, state_dir)
    source = pipeline.read_source_events(config, PARTITION)
    # The first run of the whole export takes about half as long again as the next ones,
    # while the heap grows, so the profile is of a later run, as the throughput's best is.
    mapping.run_mapping(config, source.head(WARM_UP_ROWS))
    mapping.run_mapping(config, source, keep=False)
    profiler = _profiler()
    profiler.start()
    run = mapping.run_mapping(config, source)
    profiler.stop()
    title = (
        f"Mapping of {run.events:,} events ({export.name}) on {cpu_model()}; "
        f"stage CPU seconds: {run.clock.as_dict()}"
    )
    return _render(profiler, title)


def _py_spy_stacks(run: Callable[[], None]) -> list[tuple[list[str], int]]:
    """Run `run` while py-spy samples this process, and return (frames, samples) per stack."""
    executable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(executable).exists():
        sys.exit("py-spy is not installed; install it with '.venv/bin/pip install py-spy'")
    with tempfile.TemporaryDirectory(prefix="klaviyo_bench_spy_") as folder:
        output = Path(folder) / "stacks.txt"
        command = [executable, "record", "--pid", str(os.getpid()), "--rate", "200"]
        command += ["--format", "raw", "--nonblocking", "--output", str(output)]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(PY_SPY_ATTACH_SECONDS)
        try:
            run()
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
        lines = output.read_text(encoding="utf-8").splitlines() if output.exists() else []
    stacks = []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # py-spy names frames "function (file:line)", and the line would split a function.
            frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
            stacks.append((frames, int(count)))
    return stacks


def _stack_times(
    stacks: list[tuple[list[str], int]],
) -> tuple[dict[str, float], dict[str, float]]:
    own: dict[str, float] = {}
    total: dict[str, float] = {}
    for frames, count in stacks:
        own[frames[-1]] = own.get(frames[-1], 0.0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0.0) + count
    return own, total


def profile_sync(export: Path, state_dir: Path, rows: int) -> str:
    """Profile `sync_events` of the first `rows` rows of `export` and return the report."""
    from klaviyo_pipeline.klaviyo import KlaviyoResource
    from klaviyo_pipeline.sync import sync_events
    from klaviyo_pipeline.sync_log import SyncLog

    config = build_config(export, state_dir, unlimited_client=True)
    source = pipeline.read_source_events(config, PARTITION).head(rows)
    events = pipeline.normalize_partition(config, PARTITION, source)
    records = pipeline.map_partition(config, PARTITION, events).events
    with local_klaviyo(rate_limits=False) as server:
        client = KlaviyoResource(api_key=LOCAL_API_KEY, base_url=server.base_url).get_client(
            config.sync
        )
        clock = StageClock()

        def sync() -> None:
            with clock.stage("sync_events"):
                sync_events(
                    records,
                    client,
                    config.sync,
                    SyncLog(state_dir / "profile-sync.duckdb"),
                    partition=PARTITION,
                    run_id="benchmark-profile",
                    backfill=True,
                )

        stacks = _py_spy_stacks(sync)
    own, total = _stack_times(stacks)
    samples = sum(count for _, count in stacks)
    cpu = clock.cpu["sync_events"]
    return "\n".join(
        [
            f"Event sync of {len(records):,} events to the local server on {cpu_model()}",
            f"py-spy samples of non-idle threads: {samples:,}; sync_events wall "
            f"{clock.wall['sync_events']:.3f} s, CPU {cpu:.3f} s. Estimated CPU seconds are "
            "the share of samples times the CPU time.",
            "",
            "Functions by own time:",
            *_top(own, samples, cpu, TOP_ENTRIES),
            "",
            "Functions by inclusive time:",
            *_top(total, samples, cpu, TOP_ENTRIES),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Write the profile report of one target and print its path."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotspots", description=__doc__)
    parser.add_argument("--target", choices=["mapping", "sync"], default="mapping")
    parser.add_argument("--rows", type=int, help="rows of the export (default 100000)")
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    arguments = parser.parse_args(argv)

    export = generate.ensure_export(100_000, arguments.seed)
    with tempfile.TemporaryDirectory(prefix="klaviyo_bench_profile_") as folder:
        if arguments.target == "mapping":
            if arguments.rows:
                export = generate.ensure_export(arguments.rows, arguments.seed)
            text = profile_mapping(export, Path(folder))
        else:
            text = profile_sync(export, Path(folder), arguments.rows or SYNC_ROWS_DEFAULT)
    revision = git_revision()
    text = (
        f"python -m benchmarks.hotspots --target {arguments.target}"
        f"{f' --rows {arguments.rows}' if arguments.rows else ''}, commit {revision['commit']}, "
        f"product diff {revision['product_diff_sha256'] or 'none'}\n{text}"
    )
    output = report.RESULTS_DIR / f"profile-{arguments.target}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
