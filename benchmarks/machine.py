"""The machine, software versions and source revision that a benchmark run measured."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "pandas",
    "numpy",
    "pyarrow",
    "duckdb",
    "orjson",
    "klaviyo-api",
    "dagster",
    "pydantic",
    "urllib3",
)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Return the machine's total memory in GiB from /proc/meminfo, or None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    """Return the installed version of each package in `PACKAGES`, None when missing."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Return cores, CPU model, memory, OS, Python and package versions."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def git_revision() -> dict[str, Any]:
    """Return the commit, the product files that differ from it and a hash of the difference.

    Others may change the working tree between runs, so the hash tells whether two results
    measured the same product code.
    """

    def git(*arguments: str) -> str:
        completed = subprocess.run(
            ["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    diff = git("diff", "HEAD", "--", "klaviyo_pipeline")
    changed = [
        line[3:] for line in git("status", "--porcelain", "--", "klaviyo_pipeline").splitlines()
    ]
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "product_files_changed_since_commit": changed,
        "product_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }
