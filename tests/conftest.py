import sys
from pathlib import Path

import pytest

from llm_ner.data_sources import available_data_dir, data_dir, is_sample


def pytest_report_header(config):
    folder = available_data_dir()
    if is_sample(folder):
        return (
            f"data: the shipped sample {folder} (no CLUENER in {data_dir()}; set LLM_NER_DATA); "
            "the tests of the real corpus are skipped"
        )
    return f"data: CLUENER from {folder}"


@pytest.fixture(scope="session")
def cluener_dir() -> Path:
    """A folder with CLUENER-format train.json and dev.json: the real corpus, or the shipped sample."""
    return available_data_dir()


@pytest.fixture(scope="session")
def real_cluener_dir(cluener_dir) -> Path:
    """The real CLUENER2020 files; tests of facts of that corpus skip (reason printed) without them."""
    if is_sample(cluener_dir):
        pytest.skip(f"needs the real CLUENER2020 train.json/dev.json in {data_dir()} (set LLM_NER_DATA)")
    return cluener_dir


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
