"""Run the project's local Klaviyo server in its own process on 127.0.0.1.

A separate process keeps the server's memory (it stores every event it accepts) out of
the measured process's RSS, and its request handling off the measured process's GIL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class LocalServerProcess:
    """A running local Klaviyo server: its base URL and process."""

    base_url: str
    process: subprocess.Popen[str]

    def requests(self) -> list[dict[str, Any]]:
        """Return the server's log of `/api/` requests, oldest first."""
        with urllib.request.urlopen(f"{self.base_url}/_local/requests", timeout=60) as response:
            entries = json.loads(response.read())
        assert isinstance(entries, list), "GET /_local/requests did not return a list"
        return entries

    def cpu_seconds(self) -> float:
        """Return the user and system CPU seconds that the server process has used."""
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextmanager
def local_klaviyo(
    *, time_scale: float = 1.0, rate_limits: bool = True, job_steps: int = 2
) -> Iterator[LocalServerProcess]:
    """Start `python -m klaviyo_pipeline.local_klaviyo` on a free port, and stop it on exit.

    Raises:
        RuntimeError: The server exited or printed something other than a loopback URL.
    """
    command = [
        sys.executable,
        "-m",
        "klaviyo_pipeline.local_klaviyo",
        "--port",
        "0",
        "--time-scale",
        repr(time_scale),
        "--job-steps",
        str(job_steps),
        "--log-level",
        "WARNING",
    ]
    if not rate_limits:
        command.append("--no-rate-limits")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(
                f"local Klaviyo server did not start: it printed {base_url!r} "
                f"and has exit status {process.poll()}"
            )
        yield LocalServerProcess(base_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
