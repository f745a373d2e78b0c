import os
import sys
from pathlib import Path

import pytest

from llm_ner.data_sources import data_dir


@pytest.fixture(scope="session")
def cluener_dir() -> Path:
    """The real CLUENER files ($LLM_NER_DATA); CI must have them, elsewhere they may be absent."""
    folder = data_dir()
    if not (folder / "dev.json").is_file():
        message = f"CLUENER data not found in {folder} (set LLM_NER_DATA=../shared/data/cluener)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def cluener_dev(cluener_dir):
    from llm_ner.data import read_cluener

    examples, _ = read_cluener(cluener_dir / "dev.json")
    return examples


def two_cpu_process_launch() -> list[str]:
    """`accelerate launch` with 2 CPU processes, without a saved accelerate config."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
