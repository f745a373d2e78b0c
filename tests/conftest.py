import json
import signal
import sys
from pathlib import Path

import pytest

from llm_ner.data_sources import available_data_dir, data_dir, is_sample
from llm_ner.tiny import build_tiny_model, default_texts, real_tokenizer_dir


def pytest_configure(config):
    # A suite started in the background by a non-interactive shell (`pytest &`, `nohup ... &`) inherits SIGINT
    # ignored, and so would every child it starts: the Ctrl-C tests' extract and convert would never see the
    # signal. A Python handler here (not inherited across exec) gives children the default SIGINT again.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # What the command line shows (`llm_ner.logs.configure`): tests that call the library see its messages on
    # stderr whether or not a command ran before them.
    from llm_ner import logs

    logs.configure()


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


def machine_launch(config_file: Path, machine_rank: int, port: int, num_processes: int = 2) -> list[str]:
    """One machine's `accelerate launch` of a multi-machine config (configs/accelerate/multi_node_*.yaml),
    here on 127.0.0.1: machine ``machine_rank`` meets the others at 127.0.0.1:``port``; ``num_processes``
    in all, over every machine. Start one per machine rank, at once (`run_together`).

    Not `--cpu`: accelerate 1.15 then takes its simple launcher, one plain process per machine that
    joins no group (multi-CPU needs mpirun). Without it the config's launcher runs (torchrun --nnodes
    --node_rank, static rendezvous) and the script's `use_cpu` picks gloo. `--mixed_precision no`: the
    configs say bf16 for GPUs, and it would override the script's `bf16 false`."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--machine_rank",
        str(machine_rank),
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
        "--num_processes",
        str(num_processes),
        "--mixed_precision",
        "no",
    ]


def run_together(commands: list[list[str]], timeout: float, **popen) -> list[tuple[int | None, str]]:
    """Run ``commands`` at once (one per machine of a multi-machine launch) and wait for all, at most
    ``timeout`` seconds; returns (exit code, output) of each, exit code None for one ended by a signal
    (killed here, or crashed).

    When one fails or time runs out, the others are killed (each with its process group: the launcher
    and its workers): a rank whose peer died would otherwise wait for it until the group times out."""
    import contextlib
    import os
    import signal
    import subprocess
    import tempfile
    import time

    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8")) for _ in commands]
        processes = [
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen)
            for command, log in zip(commands, logs)
        ]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                codes = [process.poll() for process in processes]
                if all(code is not None for code in codes) or any(code not in (None, 0) for code in codes):
                    break
                time.sleep(0.2)
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs:
            log.seek(0)
        return [(None if p.returncode < 0 else p.returncode, log.read()) for p, log in zip(processes, logs)]


def redraw_(model, std: float, seed: int) -> None:
    """Draw every weight of ``model`` from N(0, std) in place, after ``torch.manual_seed(seed)``."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, std)


def redraw_weights(model_dir: Path, out: Path, std: float, seed: int = 1) -> Path:
    """A copy of a saved model (tokenizer included) with every weight drawn from N(0, std), seeded:
    its greedy answers differ from sentence to sentence, so equivalence tests can see a mix-up."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    redraw_(model, std, seed)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def noisy_model(out: Path) -> Path:
    """A tiny Qwen3 with large random weights: greedy answers differ from sentence to sentence,
    so equal answers from two backends mean the same tokens were generated."""
    tiny = build_tiny_model(out.with_name(out.name + "-base"), "qwen3", default_texts(), hidden_size=64)
    return redraw_weights(tiny, out, std=2.0)


def sft_trainer(model_dir, records: list[dict], output_dir, tokenizer=None, **config):
    """The project's SFT trainer (CPU, no reporting, no truncation) on ``records``; ``tokenizer``
    defaults to the model's own. ``config``: more SFTConfig fields."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from llm_ner.training.trainer import NERSFTTrainer

    return NERSFTTrainer(
        model=str(model_dir),
        args=SFTConfig(output_dir=str(output_dir), report_to="none", use_cpu=True, max_length=None, **config),
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_dir),
    )


def dev_file(path: Path, examples, n: int) -> Path:
    """The texts of the first ``n`` examples as an input file (ids d0, d1, ...)."""
    lines = [json.dumps({"id": f"d{i}", "text": ex.text}, ensure_ascii=False) for i, ex in enumerate(examples[:n])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def records(path: Path) -> list[dict]:
    """The JSON lines of an output file, empty lines skipped. Lines end at "\\n" only: a U+2028 inside a sentence is
    text (as in llm_ner.data.read_lines)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def one_layer_qwen3(out: Path, texts: list[str]) -> Path:
    """The smallest Qwen3 the command tests load: one layer of width 32, every character of ``texts`` a token."""
    from llm_ner.tiny import build_tiny_model, default_texts

    return build_tiny_model(
        out, "qwen3", default_texts(limit=0) + texts, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1
    )
