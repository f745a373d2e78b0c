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
    """A launcher of 2 CPU processes (gloo): `torchrun --standalone --nproc_per_node 2`.

    Not `accelerate launch --cpu --num_processes 2`: without an MPI hostfile that starts ONE
    process (accelerate 1.15's simple launcher leaves multi-CPU spawning to mpirun/torchrun)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
