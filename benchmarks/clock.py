"""Stage timers that record wall time and process CPU time side by side.

CPU time is the figure to compare between runs on a shared machine. Other processes on
the same cores stretch wall time, while a single-threaded stage's CPU time stays close to
the wall time it would take on an idle core.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

ItemT = TypeVar("ItemT")


@dataclass
class StageClock:
    """Seconds of wall and CPU time per named stage, summed over every entry to a stage."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent inside the `with` block to stage `name`."""
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall_start
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu_start

    def subtract(self, outer: str, inner: str) -> None:
        """Remove the time of stage `inner`, which ran nested inside `outer`, from `outer`."""
        self.wall[outer] -= self.wall.get(inner, 0.0)
        self.cpu[outer] -= self.cpu.get(inner, 0.0)

    def total_wall(self) -> float:
        """Return the wall seconds of all stages."""
        return sum(self.wall.values())

    def total_cpu(self) -> float:
        """Return the CPU seconds of all stages."""
        return sum(self.cpu.values())

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Return `{stage: {"wall_seconds": ..., "cpu_seconds": ...}}` in stage order."""
        return {
            name: {
                "wall_seconds": round(self.wall[name], 4),
                "cpu_seconds": round(self.cpu[name], 4),
            }
            for name in self.wall
        }


def timed_generator(
    function: Callable[..., Iterator[ItemT]], clock: StageClock, name: str
) -> Callable[..., Iterator[ItemT]]:
    """Wrap a generator function so that the time spent producing each item counts as `name`.

    The time the caller spends between items is not counted.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Iterator[ItemT]:
        iterator = iter(function(*args, **kwargs))
        while True:
            with clock.stage(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    return wrapper


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages of the machine."""
    return [round(value, 2) for value in os.getloadavg()]
