"""The local Klaviyo server, dagster-webserver and dagster-daemon of one pipeline config."""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.graphql import DagsterGraphQL
from tests.e2e.processes import ManagedProcess, free_port, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# A fake private key in Klaviyo's pk_ format; the local Klaviyo server accepts any key.
LOCAL_API_KEY = "pk_e2e_local_test_key"
STARTUP_TIMEOUT_SECONDS = 240.0
# Environment variables of the shell that would point the stack at another config or host.
_REPLACED_VARIABLES = (
    "DAGSTER_HOME",
    "KLAVIYO_PIPELINE_CONFIG",
    "KLAVIYO_API_KEY",
    "KLAVIYO_BASE_URL",
)


class StackError(RuntimeError):
    """A process of the stack failed to start or exited early."""


@dataclass
class Stack:
    """A running stack: its GraphQL client, base URLs and processes."""

    webserver_url: str
    klaviyo_url: str
    graphql: DagsterGraphQL
    processes: list[ManagedProcess]

    def check_alive(self) -> None:
        """Raise when a process of the stack has exited.

        Raises:
            StackError: Naming the process, its exit code and the end of its log.
        """
        for process in self.processes:
            if not process.running():
                raise StackError(process.describe_exit())


def _read_base_url(process: ManagedProcess, stdout_path: Path, timeout_seconds: float) -> str:
    """Wait for the local Klaviyo server to print its base URL, its only line on stdout."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not process.running():
            raise StackError(process.describe_exit())
        text = stdout_path.read_text(encoding="utf-8") if stdout_path.is_file() else ""
        if text.endswith("\n"):
            return text.strip()
        time.sleep(0.1)
    raise StackError(f"local Klaviyo server printed no base URL in {timeout_seconds:.0f} s")


@contextlib.contextmanager
def running_stack(config_path: Path, work_dir: Path, log_dir: Path) -> Iterator[Stack]:
    """Start the stack for `config_path`; stop every process on exit, also after a failure.

    Args:
        config_path: The pipeline config that the code location loads.
        work_dir: Empty folder for DAGSTER_HOME, holding a copy of the repository's
            dagster.yaml.
        log_dir: Folder for the log file of each process.

    Raises:
        StackError: A process exited during start-up, or some survived the stop.
    """
    dagster_home = work_dir / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    environment = {
        key: value for key, value in os.environ.items() if key not in _REPLACED_VARIABLES
    }
    environment.update(
        DAGSTER_HOME=str(dagster_home),
        KLAVIYO_PIPELINE_CONFIG=str(config_path),
        PYTHONUNBUFFERED="1",
    )
    processes: list[ManagedProcess] = []
    try:
        klaviyo_stdout = log_dir / "local_klaviyo.url"
        klaviyo = ManagedProcess(
            "local Klaviyo server",
            [sys.executable, "-m", "klaviyo_pipeline.local_klaviyo", "--port", "0"],
            cwd=REPO_ROOT,
            env=environment,
            log_path=log_dir / "local_klaviyo.log",
            stdout_path=klaviyo_stdout,
        )
        processes.append(klaviyo)
        klaviyo_url = _read_base_url(klaviyo, klaviyo_stdout, timeout_seconds=60)
        environment.update(KLAVIYO_BASE_URL=klaviyo_url, KLAVIYO_API_KEY=LOCAL_API_KEY)

        # dagster 1.13.28 creates the SQLite databases on first use. When the webserver, the
        # daemon and their code servers do so at once, alembic_version can get two rows, and
        # loading fails with "more than one head present". Creating them first avoids that.
        migrate = subprocess.run(
            [str(VENV_BIN / "dagster"), "instance", "migrate"],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        (log_dir / "instance_migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode != 0:
            raise StackError(f"dagster instance migrate failed:\n{migrate.stderr[-4000:]}")

        port = free_port()
        processes.append(
            ManagedProcess(
                "dagster-webserver",
                [
                    str(VENV_BIN / "dagster-webserver"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--workspace", "workspace.yaml"),
                ],
                cwd=REPO_ROOT,
                env=environment,
                log_path=log_dir / "dagster_webserver.log",
            )
        )
        processes.append(
            ManagedProcess(
                "dagster-daemon",
                [str(VENV_BIN / "dagster-daemon"), "run", "--workspace", "workspace.yaml"],
                cwd=REPO_ROOT,
                env=environment,
                log_path=log_dir / "dagster_daemon.log",
            )
        )
        webserver_url = f"http://127.0.0.1:{port}"
        stack = Stack(webserver_url, klaviyo_url, DagsterGraphQL(webserver_url), processes)
        stack.graphql.wait_until_loaded(STARTUP_TIMEOUT_SECONDS, stack.check_alive)
        yield stack
    finally:
        survivors = []
        for process in reversed(processes):
            survivors.extend(process.stop())
        if survivors:
            raise StackError(f"processes still running after SIGKILL: {survivors}")


def describe_logs(log_dir: Path) -> str:
    """Return the end of each process log, for failure messages."""
    return "\n".join(f"--- {path.name}\n{tail(path, 15)}" for path in sorted(log_dir.glob("*.log")))
