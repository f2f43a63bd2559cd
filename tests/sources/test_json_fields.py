"""Fields that DuckDB types JSON, because their values mix types, come back as Python values."""

from klaviyo_pipeline.config import parse_config
from klaviyo_pipeline.sources import PartitionWindow, read_partition

ROWS = (
    '{"name":"order complete","timestamp":"2024-03-05T10:00:00Z",'
    '"user":{"id":"u1"},"data":{"total":49.9,"tags":["a",1]}}\n'
    '{"name":"order complete","timestamp":"2024-03-05T11:00:00Z",'
    '"user":{"id":12345},"data":{"total":"19.99","tags":[2]}}\n'
)


def test_mixed_type_fields_parsed(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text(ROWS)
    raw = {
        "partitions": {"start": "2024-03-01"},
        "source": {"kind": "files", "path": str(path)},
        "destination": {},
    }
    config = parse_config(raw)
    (chunk,) = read_partition(config.source, PartitionWindow.for_day("2024-03-05"))
    users = chunk["user"].tolist()
    data = chunk["data"].tolist()

    assert users == [{"id": "u1"}, {"id": 12345}]
    assert data[0]["total"] == 49.9
    assert data[1]["total"] == "19.99"
    assert data[0]["tags"] == ["a", 1]
