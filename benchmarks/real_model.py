"""The real pretrained model end to end on this machine: LoRA-train, extract, score (issue 19).

    bash ../shared/tools/real-qwen.sh          # builds ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct
    python benchmarks/real_model.py --model ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct \\
        --train-n 320 --dev-n 300 --out runs/real-model

The first ``--train-n`` train sentences are converted with ``--prompt``/``--format`` and LoRA-trained
with ``--config`` (train_sft.py, on the CPU unless torch sees a GPU); the first ``--dev-n`` dev
sentences are extracted free and ``--constrained`` with the adapter and, unless
``--no-zero-shot``, with the base model alone (the zero-shot row). Each system gets: span micro-F1
with a 95% bootstrap interval, per-class F1, the parse counters, the entity confidence's PR AUC
against shuffled scores (permutation p) over all entities and within sentences with several
predictions. Each stage runs as its own process: its seconds (per training sentence, per extracted
sentence) and its peak RSS. Results: OUT/results.json and OUT/results.md; each stage's log beside them.
Stages whose output exists are reused (delete OUT to start over).

The built model is a measuring stick (a coder model quantized twice, see the script's header), not a
dependency: its figures sit below a clean Qwen2.5-0.5B-Instruct's and compare only with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from llm_ner.confidence import held_out_threshold, ranking_test, read_scores
from llm_ner.data import load_examples
from llm_ner.generation import auto_dtype
from llm_ner.metrics import evaluate, match_predictions
from llm_ner.report import bootstrap_interval, per_sentence_counts
from llm_ner.report.inputs import parse_counters

ROOT = Path(__file__).resolve().parent.parent


def run_stage(name: str, argv: list[str], out: Path, done: Path) -> dict:
    """Run one stage as a child process (its log in OUT/NAME.log): seconds and peak RSS, or the
    figures of an earlier run when ``done`` exists."""
    record = out / f"{name}.stage.json"
    if done.exists() and record.is_file():
        return json.loads(record.read_text())
    print(f"== {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(out / f"{name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = (out / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{name} failed with exit {code}:\n{tail}")
    figures = {"seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}  # KiB on Linux
    record.write_text(json.dumps(figures))
    return figures


def score(gold_path: Path, pred_path: Path, shuffles: int) -> dict:
    """Span micro-F1 with its interval, per-class F1, parse counters, confidence ranking tests."""
    gold, _ = load_examples(gold_path)
    pred, _ = load_examples(pred_path, "cluener", allow_empty=True)
    aligned, _ = match_predictions(gold, pred)
    labels = sorted({s.label for ex in gold for s in ex.spans})
    span = evaluate(gold, pred, labels)["span"]
    scores = read_scores(pred_path)
    result = {
        "micro_f1": bootstrap_interval(per_sentence_counts(gold, aligned), seed=0),
        "precision": span["micro avg"]["precision"],
        "recall": span["micro avg"]["recall"],
        "per_class_f1": {label: round(s["f1-score"], 4) for label, s in span["per_class"].items()},
        "parse": parse_counters(pred_path) or {},
    }
    if scores:
        for key, within in (("confidence_all", False), ("confidence_within_sentence", True)):
            test = ranking_test(gold, aligned, scores, shuffles, seed=0, within_sentence=within)
            result[key] = {k: test[k] for k in ("sentences", "predictions", "auc", "shuffled_auc", "p")}
        result["held_out_threshold"] = held_out_threshold(gold, aligned, scores)
    return result


def _ranking(test: dict | None) -> str:
    if not test or not test["predictions"]:
        return "-"
    return f"{test['auc']:.3f} vs {test['shuffled_auc']:.3f} ({test['p']:.3g})"


def markdown(results: dict) -> str:
    setup = results["setup"]
    lines = [
        f"Model {setup['model']}; prompt {setup['prompt']}, format {setup['format']}, config {setup['config']}, "
        f"{setup['train_n']} train sentences ({setup['train_args']}), first {setup['dev_n']} dev sentences, "
        f"dtype {setup['dtype']}, {setup['machine']}.",
        "",
        "| system | span micro-F1 [95% CI] | P | R | parse failures | conf. PR AUC vs shuffled (p) | "
        "within sentences (p) | held-out threshold: F1 all -> kept | s / sentence | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if "train" in results:
        train = results["train"]
        lines.append(
            f"| (LoRA training) | | | | | | | | {train['seconds_per_sentence']:.2f} / train sentence "
            f"({train['seconds']:.0f} s) | {train['peak_rss_gib']} |"
        )
    for name, system in results["systems"].items():
        f1 = system["micro_f1"]
        conf = {key: _ranking(system.get(key)) for key in ("confidence_all", "confidence_within_sentence")}
        held = system.get("held_out_threshold")
        threshold = "-"
        if held:
            threshold = f"{held['f1_all']:.3f} -> {held['f1_thresholded']:.3f} (>= {held['threshold']:.3g})"
        lines.append(
            f"| {name} | {f1['f1']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}] | {system['precision']:.3f} | "
            f"{system['recall']:.3f} | {system['parse'].get('parse_failures', 0)} | {conf['confidence_all']} | "
            f"{conf['confidence_within_sentence']} | {threshold} | {system['seconds_per_sentence']:.2f} | "
            f"{system['peak_rss_gib']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the real model directory (real-qwen.sh)")
    parser.add_argument("--data", default=os.environ.get("LLM_NER_DATA", str(ROOT.parent / "shared/data/cluener")))
    parser.add_argument("--out", default="runs/real-model")
    parser.add_argument("--train-n", type=int, default=320)
    parser.add_argument("--dev-n", type=int, default=300)
    parser.add_argument("--config", default="configs/qwen2.5-0.5b-lora.yaml")
    parser.add_argument("--prompt", default="cluener_zh_short")
    parser.add_argument("--format", default="mentions", choices=("mentions", "grouped"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, help="instead of --epochs")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="training dtype")
    parser.add_argument(
        "--extract-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
        help="extraction dtype (default: `llm-ner extract`'s auto: bf16 on GPU or a CPU with bf16 instructions)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, help="extraction batch size")
    parser.add_argument("--shuffles", type=int, default=1000)
    parser.add_argument(
        "--train-shots", type=int, default=0,
        help="retrieval-augmented fine-tuning: K similar train sentences as shots in every training prompt "
        "(train_sft.py --train_shots), and the same retrieval from the train sentences at extraction",
    )  # fmt: skip
    parser.add_argument("--no-zero-shot", action="store_true")
    parser.add_argument("--no-free", action="store_true", help="extract --constrained only")
    parser.add_argument("--no-constrained", action="store_true", help="extract free only")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    train_file, dev_file = out / "train.json", out / "dev.json"
    for split, target, n in (("train", train_file, args.train_n), ("dev", dev_file, args.dev_n)):
        source = data / f"{split}.json"
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        target.write_text("".join(lines), encoding="utf-8")
    llm_ner = [sys.executable, "-m", "llm_ner"]
    cpu = [] if torch.cuda.is_available() else ["--device", "cpu"]
    run_stage(
        "convert",
        [*llm_ner, "convert", "--input", str(train_file), "--output", str(out / "train.jsonl"),
         "--prompt", args.prompt, "--format", args.format],
        out, out / "train.jsonl",
    )  # fmt: skip
    adapter = out / "adapter"
    length = ["--max_steps", str(args.max_steps)] if args.max_steps else ["--num_train_epochs", str(args.epochs)]
    extra = []
    if args.learning_rate:
        extra += ["--learning_rate", str(args.learning_rate)]
    if args.lora_r:
        extra += ["--lora_r", str(args.lora_r), "--lora_alpha", str(2 * args.lora_r)]
    device = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    train_args = [*length, *extra, "--dtype", args.dtype, "--bf16", str(args.dtype == "bfloat16").lower()]
    shots: list[str] = []
    if args.train_shots:  # the shots are retrieved while training reads the labelled sentences (not convert output)
        train_args += ["--train_shots", str(args.train_shots)]
        shots = ["--shots", str(args.train_shots), "--shots-from", str(train_file), "--shot-selection", "similar"]
    train = run_stage(
        "train",
        [sys.executable, "train_sft.py", "--config", args.config,
         "--train_file", str(train_file if args.train_shots else out / "train.jsonl"),
         "--model_name_or_path", args.model, "--output_dir", str(adapter), "--prompt", args.prompt,
         "--answer_format", args.format, "--eval_file", "", "--eval_strategy", "no", "--save_strategy", "no",
         "--load_best_model_at_end", "false", "--logging_steps", "5", *device, *train_args],
        out, adapter / "adapter_config.json",
    )  # fmt: skip
    train["seconds_per_sentence"] = train["seconds"] / args.train_n
    systems: dict[str, dict] = {}
    extract_dtype = args.extract_dtype
    if extract_dtype == "auto":  # recorded as resolved
        extract_dtype = str(auto_dtype("cuda" if torch.cuda.is_available() else "cpu")).removeprefix("torch.")
    runs = [("lora", ["--adapter", str(adapter), *shots])]
    if not args.no_zero_shot:
        runs.append(("zero-shot", ["--model", args.model, "--prompt", args.prompt, "--format", args.format]))
    for name, model_args in runs:
        for constrained in [c for c in (False, True) if not (args.no_constrained if c else args.no_free)]:
            system = f"{name} {'constrained' if constrained else 'free'}"
            pred = out / f"{system.replace(' ', '-')}.pred.json"
            figures = run_stage(
                system.replace(" ", "-"),
                [*llm_ner, "extract", *model_args, "--input", str(dev_file), "--output", str(pred), "--quiet",
                 "--batch-size", str(args.batch_size), "--dtype", extract_dtype,
                 *(["--constrained"] if constrained else []), *cpu],
                out, pred,
            )  # fmt: skip
            systems[system] = {
                **score(dev_file, pred, args.shuffles),
                **figures,
                "seconds_per_sentence": figures["seconds"] / args.dev_n,
            }
    machine = f"{os.cpu_count()} CPU cores" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    setup = {
        "model": args.model, "prompt": args.prompt, "format": args.format, "config": args.config,
        "train_n": args.train_n, "dev_n": args.dev_n, "train_args": " ".join(train_args), "dtype": args.dtype,
        "train_shots": args.train_shots,
        "extract_dtype": extract_dtype,
        "machine": machine,
    }  # fmt: skip
    results = {"setup": setup, "train": train, "systems": systems}
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
