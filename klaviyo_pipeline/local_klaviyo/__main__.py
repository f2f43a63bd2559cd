"""Command line: ``python -m klaviyo_pipeline.local_klaviyo --port PORT [options]``.

Prints the base URL (``http://127.0.0.1:PORT``) as the only line on stdout, then serves
until SIGINT or SIGTERM. Logs go to stderr.
"""

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from klaviyo_pipeline.local_klaviyo.faults import DROP_MODES, INJECTABLE_STATUSES
from klaviyo_pipeline.local_klaviyo.server import LocalKlaviyoServer

logger = logging.getLogger("klaviyo_pipeline.local_klaviyo")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m klaviyo_pipeline.local_klaviyo",
        description="Serve the Klaviyo API endpoints that the sync uses on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1, or 0 (default) for a free one"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="speed-up factor of the rate-limit windows: 60 runs a 60 s window in 1 s (default 1)",
    )
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="do not enforce Klaviyo's rate limits"
    )
    parser.add_argument(
        "--job-steps",
        type=int,
        default=2,
        help="number of job reads until a bulk import job is complete, 0 for at once (default 2)",
    )

    faults = parser.add_argument_group("fault injection (applies to /api/ paths only)")
    faults.add_argument(
        "--fault-fraction", type=float, help="fraction of requests (0 to 1) that get the fault"
    )
    faults.add_argument("--fault-next", type=int, help="give the fault to the next N requests")

    faults.add_argument(
        "--fault-status",
        type=int,
        choices=sorted(INJECTABLE_STATUSES),
        help="HTTP status of the injected error",
    )
    faults.add_argument(
        "--fault-no-retry-after",
        action="store_true",
        help="send injected 429 responses without a Retry-After header",
    )
    faults.add_argument(
        "--fault-retry-after", type=int, help="Retry-After of injected 429 responses, in seconds"
    )
    faults.add_argument(
        "--fault-delay-seconds", type=float, help="delay before the response, in real seconds"
    )

    faults.add_argument(
        "--fault-drop", choices=DROP_MODES, help="close the connection without a response"
    )
    faults.add_argument(
        "--fault-seed", type=int, default=0, help="seed of the fraction's random draws (default 0)"
    )
    faults.add_argument(
        "--fault-path",
        action="append",
        help="apply faults only to paths that start with this prefix (repeatable)",
    )

    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the messages on stderr (default INFO)",
    )
    return parser


def fault_plan_from_arguments(arguments: argparse.Namespace) -> dict[str, Any] | None:
    """Build the fault plan of ``set_faults`` from the command-line options."""
    plan: dict[str, Any] = {}
    if arguments.fault_fraction is not None:
        plan["fraction"] = arguments.fault_fraction
    if arguments.fault_next is not None:
        plan["next"] = arguments.fault_next
    if arguments.fault_status is not None:
        plan["status"] = arguments.fault_status
    if arguments.fault_no_retry_after:
        plan["retry_after"] = None
    elif arguments.fault_retry_after is not None:
        plan["retry_after"] = arguments.fault_retry_after
    if arguments.fault_delay_seconds is not None:
        plan["delay_seconds"] = arguments.fault_delay_seconds
    if arguments.fault_drop is not None:
        plan["drop"] = arguments.fault_drop
    if arguments.fault_path:
        plan["paths"] = arguments.fault_path
    if not plan:
        return None
    plan["seed"] = arguments.fault_seed
    return plan


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM and return the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=arguments.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = LocalKlaviyoServer(
            port=arguments.port,
            time_scale=arguments.time_scale,
            rate_limits=not arguments.no_rate_limits,
            job_steps=arguments.job_steps,
            faults=fault_plan_from_arguments(arguments),
        )
    except ValueError as error:
        parser.error(str(error))

    stop_requested = threading.Event()

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        logger.info("Received signal %d, stopping", signal_number)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    server.start()
    print(server.base_url, flush=True)
    stop_requested.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
