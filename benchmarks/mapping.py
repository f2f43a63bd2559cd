"""The project's mapping path, timed stage by stage: source rows to encoded bulk bodies.

The stages call the functions that the assets and `sync_events` call, in the same order:

- `normalize`: `pipeline.normalize_partition`;
- `map`: `CompiledDestination.evaluate`, the rule lookup and mapping values per rule group;
- `records`: the rest of `pipeline.map_partition`, which normalizes identities and values,
  checks and serializes properties, deduplicates and hashes the records;
- `payloads`: `order_records` and `build_event_payloads`, which encode every event and
  profile as JSON;
- `batches`: `order_by_profile` and `plan_event_batches`;
- `bodies`: `build_event_body` for every batch, which joins the encoded parts into the
  bytes that the client sends as they are.

`map` runs inside `map_partition`. Its time is measured around each rule group that the
generator yields and is subtracted from `records`, so the stages add up to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from benchmarks.clock import StageClock, timed_generator
from benchmarks.configs import PARTITION
from klaviyo_pipeline import pipeline, settings
from klaviyo_pipeline.config import PipelineConfig
from klaviyo_pipeline.mapping.destination import CompiledDestination
from klaviyo_pipeline.records import MappedPartition
from klaviyo_pipeline.sync.event_bodies import (
    build_event_body,
    build_event_payloads,
    order_by_profile,
    plan_event_batches,
)
from klaviyo_pipeline.sync.session import order_records


@dataclass
class MappingRun:
    """Encoded bodies, records and stage times of one mapping run."""

    rows: int
    events: int
    requests: int
    bodies: list[bytes]
    mapped: MappedPartition
    clock: StageClock

    def documents(self) -> list[dict[str, Any]]:
        """Return the bodies parsed back into JSON documents."""
        return [orjson.loads(body) for body in self.bodies]


def run_mapping(
    config: PipelineConfig, source: pd.DataFrame, *, backfill: bool = True, keep: bool = True
) -> MappingRun:
    """Map `source` (rows as `read_source_events` returns them) into encoded bodies.

    Args:
        config: The pipeline config whose destination maps the rows.
        source: One partition's source rows.
        backfill: Value of `backfill` in the bodies; 2019 partitions are sent as backfill.
        keep: Keep every body in the result. False drops each body once it is built, as the
            sync does after sending it.
    """
    clock = StageClock()
    with clock.stage("normalize"):
        events = pipeline.normalize_partition(config, PARTITION, source)

    evaluate = CompiledDestination.evaluate
    CompiledDestination.evaluate = timed_generator(evaluate, clock, "map")  # type: ignore[method-assign]
    try:
        with clock.stage("records"):
            mapped = pipeline.map_partition(config, PARTITION, events)
    finally:
        CompiledDestination.evaluate = evaluate  # type: ignore[method-assign]
    clock.subtract("records", "map")

    with clock.stage("payloads"):
        records = order_records(mapped.events)
        payloads = build_event_payloads(records, backfill)
    with clock.stage("batches"):
        # The sync plans the positions that its ledger has not decided, all but payload errors.
        decided = np.zeros(len(records), dtype=bool)
        decided[[error.position for error in payloads.errors]] = True
        positions = np.flatnonzero(~decided).tolist()
        ordered = order_by_profile(positions, payloads.codes()[0])
        batches, too_large = plan_event_batches(
            ordered,
            payloads,
            min(config.sync.event_batch_size, settings.MAX_EVENTS_PER_BULK_REQUEST),
            settings.MAX_PAYLOAD_BYTES,
        )
    bodies: list[bytes] = []
    for batch in batches:
        with clock.stage("bodies"):
            body = build_event_body(batch, payloads).body
        if keep:
            bodies.append(body)

    if too_large or payloads.errors:
        raise RuntimeError(
            f"{len(too_large)} events exceed the body size limit and {len(payloads.errors)} "
            "have no payload; the generated REES46 rows should all be sendable"
        )
    return MappingRun(
        rows=len(source),
        events=sum(len(batch) for batch in batches),
        requests=len(batches),
        bodies=bodies,
        mapped=mapped,
        clock=clock,
    )


def serialize_floor(bodies: list[dict[str, Any]], repeats: int = 3) -> StageClock:
    """Time `orjson.dumps`, the fastest encoder here, on the final bodies: best of `repeats`."""
    best = StageClock()
    for _ in range(repeats):
        clock = StageClock()
        with clock.stage("orjson"):
            for body in bodies:
                orjson.dumps(body)
        if not best.cpu or clock.cpu["orjson"] < best.cpu["orjson"]:
            best = clock
    return best
