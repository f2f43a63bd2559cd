"""Headless Chromium from Debian's chromium package: install it, dump a page's DOM, screenshot."""

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

CHROMIUM = "/usr/bin/chromium"
# Virtual time that Chromium lets the page's timers and requests run before it dumps or
# captures. Virtual time does not advance while requests are pending.
VIRTUAL_TIME_BUDGET_MS = 30_000
CHROMIUM_TIMEOUT_SECONDS = 180
APT_TIMEOUT_SECONDS = 900


class ChromiumError(RuntimeError):
    """Chromium is missing and could not be installed, or it failed on a page."""


def ensure_chromium() -> str:
    """Return the path of chromium, installing Debian's package with apt-get when missing.

    Raises:
        ChromiumError: It is missing and the install failed or needs root; the message
            has the command to run.
    """
    found = shutil.which("chromium") or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if found:
        return found
    if os.geteuid() != 0:
        raise ChromiumError(
            "chromium is not installed, and installing it needs root: run "
            "'apt-get update && apt-get install -y chromium' as root"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a dpkg lock held by another apt-get instead of failing at once.
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        ["apt-get", *lock_wait, "update"],
        ["apt-get", *lock_wait, "install", "-y", "chromium"],
    ):
        try:
            completed = subprocess.run(
                command,
                env=environment,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise ChromiumError(
                f"'{' '.join(command)}' timed out after {error.timeout} s"
            ) from error
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr)[-3000:]
            raise ChromiumError(
                f"'{' '.join(command)}' failed with exit code {completed.returncode}:\n{output}"
            )
    found = shutil.which("chromium")
    if not found:
        raise ChromiumError("apt-get installed chromium, but no chromium command is on PATH")
    return found


def _chromium_command(chromium: str, profile: Path) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Every host name fails to resolve, so the page can reach 127.0.0.1 and nothing else.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
    ]


def _run_chromium(chromium: str, arguments: list[str], url: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [*_chromium_command(chromium, Path(profile)), *arguments, url]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                timeout=CHROMIUM_TIMEOUT_SECONDS,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as error:
            raise ChromiumError(f"chromium timed out after {error.timeout} s on {url}") from error
    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace")[-3000:]
        raise ChromiumError(f"chromium exited with {completed.returncode} on {url}:\n{stderr}")
    return completed


def dump_dom(chromium: str, url: str) -> str:
    """Load `url` and return the DOM as HTML after the page's scripts have run."""
    return _run_chromium(chromium, ["--dump-dom"], url).stdout.decode("utf-8", errors="replace")


def screenshot(chromium: str, url: str, path: Path) -> None:
    """Load `url` and save a PNG screenshot of the window at `path`.

    Raises:
        ChromiumError: Chromium failed or wrote no file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _run_chromium(chromium, [f"--screenshot={path}"], url)
    if not path.is_file() or path.stat().st_size == 0:
        raise ChromiumError(f"chromium wrote no screenshot to {path}")


class PageText(HTMLParser):
    """The visible text of a page and the cell texts of each table row."""

    _SKIPPED: ClassVar[frozenset[str]] = frozenset({"script", "style", "noscript"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self._texts: list[str] = []
        self._skip_depth = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.rows: list[list[str]] = []
        self.feed(html)
        self.close()

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._texts).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skip_depth += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        self._texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
