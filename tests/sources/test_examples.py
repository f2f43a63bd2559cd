"""The YAML examples in EXAMPLES.md are valid source configs."""

import re
from pathlib import Path

import pytest
import yaml

from klaviyo_pipeline.config import SourceConfig
from klaviyo_pipeline.sources import PartitionWindow
from tests.sources.conftest import REPO_ROOT, read_all

EXAMPLES = Path(__file__).with_name("EXAMPLES.md")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", EXAMPLES.read_text(encoding="utf-8"), re.DOTALL)


def test_examples_cover_every_kind() -> None:
    kinds = {yaml.safe_load(block)["source"]["kind"] for block in YAML_BLOCKS}

    assert kinds == {"files", "duckdb", "postgres"}


@pytest.mark.parametrize("block", YAML_BLOCKS)
def test_example_is_valid_source(block: str) -> None:
    SourceConfig.model_validate(yaml.safe_load(block)["source"])


def test_rees46_example_reads_sample() -> None:
    block = next(block for block in YAML_BLOCKS if "2019-Oct-sample.csv" in block)
    source = SourceConfig.model_validate(yaml.safe_load(block)["source"])

    frame = read_all(source, PartitionWindow.for_day("2019-10-01"), REPO_ROOT)

    assert len(frame) == 1_000
