import sys
from pathlib import Path

import pytest

from llm_ner.data_sources import available_data_dir, data_dir, is_sample
from llm_ner.tiny import real_tokenizer_dir


def pytest_report_header(config):
    folder = available_data_dir()
    tokenizers = real_tokenizer_dir("qwen2.5").parent
    found = (tokenizers / "qwen2.5" / "tokenizer.json").is_file()
    lines = [
        f"real Qwen tokenizers: {tokenizers}"
        if found
        else f"real Qwen tokenizers: none in {tokenizers}; the tests of the real vocabulary are skipped"
    ]
    if is_sample(folder):
        return [
            f"data: the shipped sample {folder} (no CLUENER in {data_dir()}; set LLM_NER_DATA); "
            "the tests of the real corpus are skipped",
            *lines,
        ]
    return [f"data: CLUENER from {folder}", *lines]


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


@pytest.fixture(scope="session")
def qwen_tokenizer_dir():
    """``qwen_tokenizer_dir(name)``: the real Qwen tokenizer ``qwen2.5`` or ``qwen3`` in
    ../shared/tokenizers; tests that need it skip (reason printed) without it."""

    def find(name: str) -> Path:
        folder = real_tokenizer_dir(name)
        if not (folder / "tokenizer.json").is_file():
            pytest.skip(f"needs the real Qwen tokenizer in {folder} (../shared/tokenizers beside the checkout)")
        return folder

    return find


def two_cpu_process_launch() -> list[str]:
    """A launcher of 2 CPU processes (gloo): `torchrun --standalone --nproc_per_node 2`.

    Not `accelerate launch --cpu --num_processes 2`: without an MPI hostfile that starts ONE
    process (accelerate 1.15's simple launcher leaves multi-CPU spawning to mpirun/torchrun)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def redraw_weights(model_dir: Path, out: Path, std: float, seed: int = 1) -> Path:
    """A copy of a saved model (tokenizer included) with every weight drawn from N(0, std), seeded:
    its greedy answers differ from sentence to sentence, so equivalence tests can see a mix-up."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, std)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out
