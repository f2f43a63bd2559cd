"""Partition tables round-trip chunks exactly; chunked mapping equals one-chunk mapping."""

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd

from klaviyo_pipeline.config import parse_config
from klaviyo_pipeline.pipeline import write_normalized_events, write_records, write_source_events
from klaviyo_pipeline.tables import TableWriter, open_table


def test_table_round_trips_awkward_columns(tmp_path):
    chunk = pd.DataFrame(
        {
            "id": pd.array([1, None, 2**62], dtype="Int64"),
            "name": ["a", None, "c"],
            "mixed": [404, "order complete", None],
            "nested": [[{"data": {"id": "P1"}}], [], None],
            "amount": [Decimal("1.10"), None, Decimal("3")],
            "when": pd.to_datetime(
                ["2024-01-01T00:00:00Z", None, "2024-01-02T00:00:00Z"], utc=True
            ),
        }
    )
    writer = TableWriter(tmp_path / "table")
    writer.write(chunk)
    writer.write(chunk.iloc[:1])
    table = writer.close({"rows_read": 4})
    first, second = list(table.chunks())

    assert table.rows == 4
    assert table.attrs == {"rows_read": 4}
    assert first["id"].tolist()[0] == 1
    assert first["id"].isna().tolist() == [False, True, False]
    assert first["id"].tolist()[2] == 2**62
    assert first["mixed"].tolist()[:2] == [404, "order complete"]
    assert first["nested"].tolist()[0] == [{"data": {"id": "P1"}}]
    assert first["amount"].tolist()[0] == Decimal("1.10")
    assert first["when"].tolist()[0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert len(second) == 1


def test_table_replaces_earlier_version(tmp_path):
    for rows in (3, 1):
        writer = TableWriter(tmp_path / "table")
        writer.write(pd.DataFrame({"a": range(rows)}))
        writer.close()
    assert open_table(tmp_path / "table").rows == 1


def _config(tmp_path, chunk_rows):
    rows = []
    for index in range(40):
        rows.append(
            {
                "id": f"evt-{index % 30}",
                "name": "order complete",
                "timestamp": f"2024-05-01T10:{index:02d}:00Z",
                "user.email": f"user{index % 30 % 7}@example.com",
                "data.total": float(index),
                "data.plan": f"plan-{index}",
            }
        )
    path = tmp_path / "events.ndjson"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    raw = {
        "partitions": {"start": "2024-05-01"},
        "source": {"kind": "files", "path": str(path), "chunk_rows": chunk_rows},
        "destination": {
            "settings": {"identify": {"map": {"properties": {"map": {"plan": "data.plan"}}}}},
            "mapping": {
                "order": {"complete": {"name": "Placed Order", "settings": {"value": "data.total"}}}
            },
        },
        "sync": {"state_database": str(tmp_path / f"state-{chunk_rows}" / "state.duckdb")},
    }
    return parse_config(raw)


def _map(config):
    source = write_source_events(config, "2024-05-01")
    events = write_normalized_events(config, "2024-05-01", source)
    return write_records(config, "2024-05-01", events)


def test_chunked_mapping_equals_single_chunk(tmp_path):
    whole = _map(_config(tmp_path, 1000))
    chunked = _map(_config(tmp_path, 7))
    columns = ["record_id", "metric", "unique_id", "email", "value", "properties"]
    whole_events = whole.events.read()[columns].sort_values("record_id").reset_index(drop=True)
    chunked_events = chunked.events.read()[columns].sort_values("record_id").reset_index(drop=True)
    whole_outcomes = whole.outcomes.read().sort_values(["stream", "row_id"]).reset_index(drop=True)
    chunked_outcomes = (
        chunked.outcomes.read().sort_values(["stream", "row_id"]).reset_index(drop=True)
    )

    assert len(chunked.events.parts) > 1
    assert len(whole_events) == 30
    assert chunked_events.equals(whole_events)
    assert chunked_outcomes[["row_id", "stream", "status", "reason"]].equals(
        whole_outcomes[["row_id", "stream", "status", "reason"]]
    )
    assert whole.profiles.rows == 7
    assert chunked.profiles.rows == 7
    assert chunked.outcomes.attrs["rows_read"] == 40


def test_repeat_across_chunks_keeps_first(tmp_path):
    chunked = _map(_config(tmp_path, 7))
    events = chunked.events.read()
    duplicates = chunked.outcomes.read().query("stream == 'event' and status == 'deduplicated'")

    assert sorted(duplicates["row_id"].tolist()) == list(range(30, 40))
    assert set(events["row_id"]) == set(range(30))
