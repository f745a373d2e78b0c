"""`scripts/quickstart.sh --model DIR`: the real-model path (LoRA, the matching config, GPU when there is one)
run end to end on a random-weight Qwen2.5 of a small shape beside the REAL Qwen2.5 tokenizer.

The end-to-end run starts seven Python processes (about 34 s on 2 quiet cores, minutes under load)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_ner.prompting import load_prompt
from llm_ner.training.run_dir import RunRecord

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = ROOT.parent / "shared" / "tokenizers"


@pytest.fixture(scope="module")
def qwen25_dir(tmp_path_factory):
    tokenizer = TOKENIZERS / "qwen2.5"
    if not (tokenizer / "tokenizer.json").is_file():
        pytest.skip(f"needs the real Qwen2.5 tokenizer in {tokenizer}")
    # Named like the hub model, so the quickstart picks configs/qwen2.5-0.5b-lora.yaml by itself.
    from llm_ner.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("models") / "Qwen2.5-0.5B-Instruct"
    shape = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}
    return build_tiny_model(out, "qwen2", tokenizer_dir=tokenizer, **shape)


def test_quickstart_with_a_model_directory(qwen25_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        "bash",
        str(ROOT / "scripts" / "quickstart.sh"),
        "--model",
        str(qwen25_dir),
        "--quick",
        "--train-n",
        "16",
        "--dev-n",
        "6",
        "--out",
        str(out),
        "--",
        "--max_steps",
        "2",
        "--max_eval_samples",
        "4",
        "--f1_eval_samples",
        "2",
        "--f1_max_new_tokens",
        "8",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "configs/qwen2.5-0.5b-lora.yaml" in done.stdout
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())  # LoRA, not full fine-tuning
    assert adapter["base_model_name_or_path"] == str(qwen25_dir) and adapter["r"] == 16
    predictions = (out / "Qwen2.5-0.5B-Instruct-lora.dev.pred.json").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 6
    assert all(json.loads(line)["parse"].get("parse_failures", 0) == 0 for line in predictions)  # constrained
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| Qwen2.5-0.5B-Instruct-lora |" in report and str(qwen25_dir) in report  # the report names the model
    # One prompt end to end (issue 19): the config's prompt converts the training file, and the run records it.
    config_prompt = yaml.safe_load((ROOT / "configs" / "qwen2.5-0.5b-lora.yaml").read_text(encoding="utf-8"))["prompt"]
    record = RunRecord.load(out / "model")
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    text = first["prompt"][-1]["content"].split("文本：")[-1]
    # the prompt extraction will use (the run's copy) is the one the model was trained on, the config's
    assert record.load_prompt().messages(text) == first["prompt"] == load_prompt(config_prompt).messages(text)
    converted = json.loads((out / "train.jsonl.meta.json").read_text(encoding="utf-8"))
    assert converted["prompt_name"] == record.prompt_name == config_prompt
    assert (out / "model" / "prompt.yaml").read_text(encoding="utf-8") == converted["prompt_yaml"]


@pytest.mark.parametrize(
    "model, message",
    [
        ("acme/mystery-7b", "no config in configs/ matches acme/mystery-7b"),
        ("/nowhere/Qwen2.5-0.5B-Instruct", "--model /nowhere/Qwen2.5-0.5B-Instruct: no such directory"),
    ],
)
def test_quickstart_refuses_a_model_it_cannot_run(tmp_path, model, message):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "quickstart.sh"), "--model", model, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr


def _quickstart(*args: str, timeout: int = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    command = ["bash", str(ROOT / "scripts" / "quickstart.sh"), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_model_run_has_its_own_folder(qwen25_dir):
    """`--model` without `--out` writes to runs/quickstart-MODEL (it used to write into the tiny run's folder)."""
    folders = {}
    for args in ([], ["--quick"], ["--model", str(qwen25_dir)], ["--model", str(qwen25_dir), "--quick"]):
        done = _quickstart(*args, "--dry-run")
        assert done.returncode == 0, done.stderr
        folders[" ".join(args[:1] + args[2:])] = done.stdout.splitlines()[0]
    assert folders == {
        "": "out: runs/quickstart",
        "--quick": "out: runs/quickstart-quick",
        "--model": "out: runs/quickstart-Qwen2.5-0.5B-Instruct",
        "--model --quick": "out: runs/quickstart-Qwen2.5-0.5B-Instruct-quick",
    }


@pytest.mark.parametrize(
    "args, plan",
    [
        ([], "prompt: cluener_zh_short, answer format mentions (configs/tiny-cpu.yaml)"),
        (
            ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
            "prompt: cluener_zh_short, answer format mentions (configs/qwen2.5-0.5b-lora.yaml)",
        ),
        (["--model", "Qwen/Qwen3-0.6B"], "prompt: cluener_zh, answer format mentions (configs/qwen3-0.6b-lora.yaml)"),
        (
            [
                "--model",
                "Qwen/Qwen3-8B",
                "--",
                "--max_steps",
                "3",
                "--prompt=cluener_zh_short",
                "--answer_format",
                "grouped",
            ],
            "prompt: cluener_zh_short, answer format grouped (configs/qwen3-8b-lora.yaml and the arguments after --)",
        ),
    ],
)
def test_the_training_file_is_converted_with_the_prompt_training_uses(args, plan):
    """The quickstart converted with cluener_zh_short whatever the config said (issue 19): the plan names the
    prompt read from the training config (Qwen3-0.6B's says cluener_zh), or from the arguments passed on to
    train_sft.py."""
    done = _quickstart("--dry-run", *args)
    assert done.returncode == 0, done.stderr
    assert plan in done.stdout, done.stdout


def test_a_folder_with_another_run_is_not_deleted(tmp_path):
    """A folder holding a run with other settings is refused, not silently replaced (--restart replaces it)."""
    out = tmp_path / "run"
    (out / "report").mkdir(parents=True)
    (out / ".settings").write_text("data=elsewhere quick=0\n")
    (out / "report" / "report.md").write_text("an earlier report\n")
    done = _quickstart("--quick", "--out", str(out))
    assert done.returncode == 2 and "holds a run with other settings" in done.stderr, done.stderr
    assert (out / "report" / "report.md").read_text() == "an earlier report\n"


def test_restart_never_clears_an_input_or_a_foreign_folder(tmp_path):
    """`--out` naming the data folder (or a folder inside it), or a folder of other files, is refused even with
    --restart, before anything is cleared: --restart deletes only a quickstart's own folder."""
    data = tmp_path / "cluener"
    data.mkdir()
    for name in ("train.json", "dev.json"):
        shutil.copy(Path(os.environ.get("LLM_NER_DATA", ROOT / "llm_ner" / "sample_data")) / name, data / name)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    env_data = {"LLM_NER_DATA": str(data)}
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("years of work\n")
    for out, message in ((data, "is the data folder"), (data / "run", "is inside the data folder"),
                         (foreign, "not a quickstart run")):  # fmt: skip
        done = _quickstart("--quick", "--restart", "--out", str(out), env=env_data)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert (foreign / "chapter1.tex").read_text() == "years of work\n"
