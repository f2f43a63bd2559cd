"""Start long-running commands in their own process group and stop them with every child."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

# How long a process group gets to exit after SIGTERM before it is killed. dagster-webserver
# and dagster-daemon take several seconds to stop their code servers.
STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    """Return the last `lines` lines of a log file, or a note that it is missing."""
    if not path.is_file():
        return f"({path} does not exist)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


class ManagedProcess:
    """A command in a new session, with stdout and stderr in one log file.

    The command and every process it starts share the new process group, so `stop` reaches
    the code servers and run workers that dagster-webserver and dagster-daemon start.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        stdout_path: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            stdout = stdout_path.open("wb") if stdout_path else log
            try:
                self.popen = subprocess.Popen(
                    list(command),
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=log,
                    start_new_session=True,
                )
            finally:
                if stdout_path:
                    stdout.close()
        self._seen: dict[int, psutil.Process] = {}
        self._remember_tree()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def describe_exit(self) -> str:
        """Return the exit code and the end of the log, for failure messages."""
        return f"{self.name} exited with code {self.popen.returncode}:\n{tail(self.log_path)}"

    def _remember_tree(self) -> None:
        """Record the process and its descendants, so that `stop` finds children that left."""
        try:
            root = psutil.Process(self.popen.pid)
            for process in [root, *root.children(recursive=True)]:
                self._seen.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            pass

    def stop(self) -> list[str]:
        """Stop the process group with SIGTERM, then SIGKILL; return what survived both."""
        self._remember_tree()
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self._alive():
            time.sleep(0.2)
        if self._alive():
            self._signal_group(signal.SIGKILL)
            for process in self._alive():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(self._alive(), timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        return [f"{self.name} child {process.pid}: {process.name()}" for process in self._alive()]

    def _signal_group(self, signal_number: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal_number)

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for process in self._seen.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                continue
        return alive
