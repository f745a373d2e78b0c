"""Opt-in: the quickstart's real-model path on the REAL pretrained Qwen2.5 0.5B (never in CI).

    bash ../shared/tools/real-qwen.sh                      # builds ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct
    LLM_NER_REAL_MODEL=~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct pytest -m realmodel -s

A handful of LoRA steps on the first 96 train sentences (7.5 minutes on 2 quiet CPU cores, 11.3 GiB): the run
directory's prompt is the one the training file was converted with, constrained extraction parses every
answer, and the fine-tuned model beats the base model's zero-shot answers on the same dev sentences.
Random weights cannot show a prompt mismatch or a score that learned nothing; this model can.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_ner.data import load_examples
from llm_ner.metrics import evaluate
from llm_ner.prompting import load_prompt, read_conversion
from llm_ner.training.run_dir import RunRecord

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "qwen2.5-0.5b-lora.yaml"

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def real_model() -> Path:
    folder = os.environ.get("LLM_NER_REAL_MODEL")
    if not folder:
        pytest.skip("opt-in: set LLM_NER_REAL_MODEL to a real model folder (../shared/tools/real-qwen.sh builds one)")
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        pytest.fail(f"LLM_NER_REAL_MODEL={folder}: no config.json there")
    return path


def micro_f1(gold: Path, pred: Path) -> float:
    examples, _ = load_examples(gold)
    predictions, _ = load_examples(pred, "cluener", allow_empty=True)
    return evaluate(examples, predictions)["span"]["micro avg"]["f1-score"]


def test_quickstart_trains_and_extracts_with_one_prompt_and_beats_zero_shot(real_model, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["bash", "scripts/quickstart.sh", "--model", str(real_model), "--config", str(CONFIG)]
    command += ["--train-n", "96", "--dev-n", "40", "--out", str(out), "--"]
    command += ["--max_steps", "6", "--f1_eval_samples", "8", "--max_eval_samples", "8"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    trained_with = read_conversion(out / "train.jsonl")
    record = RunRecord.load(out / "model")
    assert trained_with is not None and record is not None
    assert record.load_prompt().messages("张三在北京") == trained_with.prompt.messages("张三在北京")
    config_prompt = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["prompt"]
    assert trained_with.prompt.messages("张三在北京") == load_prompt(config_prompt).messages("张三在北京")

    dev = out / "data" / "dev.json"
    tuned = next(out.glob("*-lora.dev.pred.json"))
    records = [json.loads(line) for line in tuned.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 40 and not any(r["parse"].get("parse_failures") for r in records)

    zero_shot = tmp_path / "zero-shot.pred.json"
    extract = [sys.executable, "-m", "llm_ner", "extract", "--model", str(real_model), "--input", str(dev)]
    extract += ["--output", str(zero_shot), "--prompt", config_prompt, "--constrained", "--quiet"]
    done = subprocess.run(extract, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: every zero-shot answer unparseable
    tuned_f1, zero_f1 = micro_f1(dev, tuned), micro_f1(dev, zero_shot)
    print(f"\nspan micro-F1 on the first 40 dev sentences: LoRA {tuned_f1:.3f}, zero-shot {zero_f1:.3f}")
    assert tuned_f1 > zero_f1
