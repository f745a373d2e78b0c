"""From how many labels is the LLM worth it? Span micro-F1 on the same dev sentences against the number of
labelled train sentences, for three systems, each point with its bootstrap interval and its training time:

- ``llm-lora``: the real model LoRA-trained on the first N train sentences (`real_model.py`'s stages: convert,
  train_sft.py with ``--config``, extract), N = 0 being the base model with no training;
- ``llm-shots``: the same model with no training, the K most similar of the first N train sentences as worked
  examples in every prompt (``extract --shots K --shots-from``), N = 0 being zero-shot;
- ``bilstm-crf``: the BiLSTM-CRF trained from scratch on the first N (``llm-ner baseline train``), its epoch
  chosen on the dev sentences after the first ``--dev-n`` (never on the scored ones).

    bash ../shared/tools/real-qwen.sh      # builds ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct
    python benchmarks/learning_curve.py --model ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct \\
        --sizes 160,640,2240,10748 --dev-n 300 --shots 4 --out runs/curve

Every point is written by `llm-ner curve` into OUT/curve.jsonl and `llm-ner report --learning-curve` draws
OUT/report/report.md, .html and learning_curve.png, with the systems of the largest N side by side. Each
stage is a child process whose output is kept: a rerun reuses what exists (resumable; delete a folder to redo
it). ``--reuse-lora N=DIR`` takes the adapter and training time of an earlier `real_model.py` run on the same
first N sentences instead of training again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from real_model import run_stage

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("llm-lora", "llm-shots", "bilstm-crf")


def first_lines(source: Path, target: Path, start: int, stop: int | None) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[start:stop]
    target.write_text("".join(lines), encoding="utf-8")
    return target


def reuse_lora(out: Path, earlier: Path) -> None:
    """An earlier real_model.py run's adapter and its training figures, as this run's training stage."""
    if not (earlier / "adapter" / "adapter_config.json").is_file():
        raise SystemExit(f"--reuse-lora: {earlier} holds no adapter/adapter_config.json")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "adapter").exists():
        shutil.copytree(earlier / "adapter", out / "adapter")
    shutil.copyfile(earlier / "train.stage.json", out / "train.stage.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the real model directory (real-qwen.sh)")
    parser.add_argument("--data", default=os.environ.get("LLM_NER_DATA", str(ROOT.parent / "shared/data/cluener")))
    parser.add_argument("--out", default="runs/curve")
    parser.add_argument("--sizes", default="160,640,2240,10748", help="labelled sentences of each point")
    parser.add_argument("--dev-n", type=int, default=300, help="the first N dev sentences are scored")
    parser.add_argument("--shots", type=int, default=4, help="retrieved shots of the llm-shots arm")
    parser.add_argument("--config", default="configs/qwen2.5-0.5b-lora.yaml")
    parser.add_argument("--prompt", default="cluener_zh_short")
    parser.add_argument("--format", default="mentions", choices=("mentions", "grouped"))
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"), help="LoRA training dtype")
    parser.add_argument("--baseline-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="extraction batch size (shots: a quarter)")
    parser.add_argument("--reuse-lora", action="append", default=[], metavar="N=DIR")
    parser.add_argument("--arms", default=",".join(ARMS), help="which of the arms to run")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    sizes = [int(n) for n in args.sizes.split(",")]
    arms = args.arms.split(",")
    reused = {int(n): Path(d) for n, d in (item.split("=", 1) for item in args.reuse_lora)}
    dev = first_lines(data / "dev.json", out / "dev.json", 0, args.dev_n)
    selection_dev = first_lines(data / "dev.json", out / "dev-selection.json", args.dev_n, None)
    llm_ner = [sys.executable, "-m", "llm_ner"]
    cpu = [] if torch.cuda.is_available() else ["--device", "cpu"]
    curve = out / "curve.jsonl"
    predictions: dict[str, Path] = {}

    def add_point(arm: str, round_number: int, labelled: Path, pred: Path, seconds: float | None) -> None:
        argv = [*llm_ner, "curve", "--gold", str(dev), "--pred", str(pred), "--labelled", str(labelled),
                "--arm", arm, "--round", str(round_number), "--output", str(curve)]  # fmt: skip
        if seconds is not None:
            argv += ["--train-seconds", str(seconds)]
        run_stage(f"curve-{arm}-{round_number}", argv, out, out / "never")  # cheap: always rescored

    def extract(name: str, model_args: list[str], batch_size: int) -> tuple[Path, dict]:
        pred = out / f"{name}.pred.json"
        argv = [*llm_ner, "extract", *model_args, "--input", str(dev), "--output", str(pred), "--quiet",
                "--batch-size", str(batch_size), *cpu]  # fmt: skip
        return pred, run_stage(name, argv, out, pred)

    empty = out / "train-0.json"
    empty.write_text("", encoding="utf-8")
    if {"llm-lora", "llm-shots"} & set(arms):
        pred, _ = extract("zero-shot", ["--model", args.model, "--prompt", args.prompt, "--format", args.format],
                          args.batch_size)  # fmt: skip
        for arm in ("llm-lora", "llm-shots"):
            if arm in arms:
                add_point(arm, 0, empty, pred, 0.0)
    for round_number, n in enumerate(sizes, 1):
        train = first_lines(data / "train.json", out / f"train-{n}.json", 0, n)
        if "llm-lora" in arms:
            run = out / f"lora-{n}"
            if n in reused:
                reuse_lora(run, reused[n])
            argv = [sys.executable, str(ROOT / "benchmarks" / "real_model.py"), "--model", args.model,
                    "--data", str(data), "--train-n", str(n), "--dev-n", "1", "--config", args.config,
                    "--prompt", args.prompt, "--format", args.format, "--dtype", args.dtype, "--no-zero-shot",
                    "--no-free", "--no-constrained", "--out", str(run)]  # fmt: skip
            run_stage(f"lora-{n}", argv, out, run / "train.stage.json")  # trains (or reuses) the adapter only
            seconds = json.loads((run / "train.stage.json").read_text())["seconds"]
            pred, _ = extract(f"lora-{n}-dev", ["--adapter", str(run / "adapter")], args.batch_size)
            add_point("llm-lora", round_number, train, pred, seconds)
            predictions[f"llm-lora-{n}"] = pred
        if "llm-shots" in arms:
            shots = ["--model", args.model, "--prompt", args.prompt, "--format", args.format, "--shots",
                     str(args.shots), "--shots-from", str(train), "--shot-selection", "similar"]  # fmt: skip
            pred, _ = extract(f"shots-{n}", shots, max(1, args.batch_size // 4))
            add_point("llm-shots", round_number, train, pred, 0.0)
            predictions[f"llm-shots-{n}"] = pred
        if "bilstm-crf" in arms:
            model_dir = out / f"bilstm-crf-{n}"
            figures = run_stage(
                f"bilstm-crf-{n}",
                [*llm_ner, "baseline", "train", "--arch", "bilstm-crf", "--train", str(train),
                 "--dev", str(selection_dev), "--out", str(model_dir), "--epochs", str(args.baseline_epochs),
                 "--quiet"],
                out, model_dir / "model.pt",
            )  # fmt: skip
            pred = out / f"bilstm-crf-{n}.pred.json"
            run_stage(
                f"bilstm-crf-{n}-dev",
                [*llm_ner, "baseline", "predict", "--model", str(model_dir), "--input", str(dev), "--output",
                 str(pred)],
                out, pred,
            )  # fmt: skip
            add_point("bilstm-crf", round_number, train, pred, figures["seconds"])
            predictions[f"bilstm-crf-{n}"] = pred

    largest = sizes[-1]
    systems = [f"--pred={name}={path}" for name, path in predictions.items() if name.endswith(f"-{largest}")]
    note = (
        f"Learning curve on the first {args.dev_n} CLUENER dev sentences: {args.model} with LoRA ({args.config}, "
        f"{args.dtype}) or with {args.shots} retrieved shots and no training, against a BiLSTM-CRF trained from "
        f"scratch ({args.baseline_epochs} epochs at most, its epoch chosen on the other dev sentences). "
        f"The systems side by side are those of the largest point ({largest} labelled sentences)."
    )
    run_stage(
        "report",
        [*llm_ner, "report", "--gold", str(dev), *systems, "--learning-curve", str(curve),
         "--out", str(out / "report"), "--note", note],
        out, out / "never",
    )  # fmt: skip
    print((out / "report" / "report.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
