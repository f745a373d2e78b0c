"""Few-shot prompting (issue 22): zero-shot against K similar and K random shots from train.

    python benchmarks/few_shot.py --model ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct --out runs/few-shot
    python benchmarks/few_shot.py --tiny --limit 40 --out runs/few-shot-tiny     # plumbing only

The first ``--limit`` dev sentences (default 300) are extracted by `llm-ner extract` once per row
(default rows: zero-shot, 4 and 8 similar, 4 and 8 random shots from train.json), each into
OUT/ROW.json (resumable: a finished row is reused). Each row gets: span micro-F1 with a 95% bootstrap
interval (sentences resampled), its paired difference from zero-shot with that interval, the parse
failures, seconds per sentence (model load included, so compare rows of one run) and the mean prompt
tokens per sentence (the model's tokenizer, the prompt as sent: shots and template included).
Results: OUT/results.json and OUT/results.md. ``--tiny`` builds a tiny random-weight Qwen3 first:
it proves the plumbing (every row runs, parses, is scored), not quality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"zero": (0, "similar"), "4-similar": (4, "similar"), "8-similar": (8, "similar")}
ROWS |= {"4-random": (4, "random"), "8-random": (8, "random"), "4-fixed": (4, "fixed")}
DEFAULT_ROWS = "zero,4-similar,8-similar,4-random,8-random"


def prompt_tokens(model_options, texts: list[str], tokenizer) -> float:
    """Mean prompt tokens per sentence of a row, as `Annotator.answer` builds the prompts."""
    from llm_ner.extraction import run_settings
    from llm_ner.generation import chat_prompt_ids
    from llm_ner.shots import prompt_token_counter

    settings = run_settings(model_options)
    count = prompt_token_counter(tokenizer)
    conversations = settings.conversations(texts, count)
    return sum(len(chat_prompt_ids(tokenizer, c)) for c in conversations) / len(texts)


def run_row(name: str, args, model: str, dev_input: Path, train: Path, out: Path, texts, tokenizer) -> dict:
    from llm_ner.cli import main as cli
    from llm_ner.extraction import ModelOptions

    shots, selection = ROWS[name]
    options = {"model": model, "prompt": args.prompt, "answer_format": "mentions", "constrained": args.constrained}
    options |= {"max_new_tokens": args.max_new_tokens, "dtype": args.dtype}
    if shots:
        options |= {"shots": shots, "shots_from": str(train), "shot_selection": selection, "shot_seed": 0}
        options |= {"max_prompt_tokens": args.max_prompt_tokens}
    model_options = ModelOptions(**options)
    argv = ["extract", "--model", model, "--input", str(dev_input), "--output", str(out / f"{name}.json")]
    argv += ["--prompt", args.prompt, "--format", "mentions", "--batch-size", str(args.batch_size), "--quiet"]
    argv += ["--dtype", args.dtype, "--max-parse-failures", "1"]
    argv += ["--constrained"] if args.constrained else []
    argv += ["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else []
    if shots:
        argv += ["--shots", str(shots), "--shots-from", str(train), "--shot-selection", selection]
        argv += ["--max-prompt-tokens", str(args.max_prompt_tokens)] if args.max_prompt_tokens else []
    timing = out / f"{name}.seconds"
    if not (out / f"{name}.json").is_file() or not timing.is_file():
        print(f"== {name}: llm-ner {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        code = cli(argv)
        if code != 0:
            raise SystemExit(f"{name}: llm-ner extract exited with {code}")
        timing.write_text(f"{time.perf_counter() - start:.3f}\n")
    return {
        "shots": shots,
        "selection": selection if shots else None,
        "seconds_per_sentence": round(float(timing.read_text()) / len(texts), 3),
        "prompt_tokens_per_sentence": round(prompt_tokens(model_options, texts, tokenizer), 1),
    }


def score_rows(gold, out: Path, names: list[str], rows: dict) -> None:
    from llm_ner.data import load_examples
    from llm_ner.metrics import match_predictions
    from llm_ner.report import bootstrap_interval, paired_bootstrap, per_sentence_counts
    from llm_ner.report.inputs import parse_counters

    counts = {}
    for name in names:
        pred, _ = load_examples(out / f"{name}.json", "cluener", allow_empty=True)
        aligned, _ = match_predictions(gold, pred)
        counts[name] = per_sentence_counts(gold, aligned)
        rows[name]["micro_f1"] = bootstrap_interval(counts[name], seed=0)
        rows[name]["parse"] = parse_counters(out / f"{name}.json") or {}
    if "zero" in counts:
        for name in names:
            if name != "zero":
                rows[name]["vs_zero_shot"] = paired_bootstrap(counts[name], counts["zero"], seed=0)


def markdown(results: dict) -> str:
    lines = [
        f"model: {results['model']}; {results['sentences']} dev sentences; prompt {results['prompt']}; "
        f"{'constrained' if results['constrained'] else 'free'} decoding; budget {results['max_prompt_tokens']}; "
        f"{results.get('dtype', 'float32')}",
        "",
        "| shots | span micro-F1 [95% CI] | minus zero-shot [95% CI] | parse failures | s / sentence "
        "| prompt tokens / sentence |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, row in results["rows"].items():
        f1 = row["micro_f1"]
        diff = row.get("vs_zero_shot")
        versus = f"{diff['difference']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff else ""
        lines.append(
            f"| {name} | {f1['f1']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}] | {versus} | "
            f"{row['parse'].get('parse_failures', 0)} / {row['parse'].get('answers', 0)} | "
            f"{row['seconds_per_sentence']:.2f} | {row['prompt_tokens_per_sentence']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", help="a model directory (e.g. the real model of ../shared/tools/real-qwen.sh)")
    group.add_argument("--tiny", action="store_true", help="build and use a tiny random-weight Qwen3 (plumbing)")
    parser.add_argument("--data", default=os.environ.get("LLM_NER_DATA", str(ROOT.parent / "shared/data/cluener")))
    parser.add_argument("--out", default="runs/few-shot")
    parser.add_argument("--limit", type=int, default=300, help="the first N dev sentences (default: %(default)s)")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--prompt", default="cluener_zh_short")
    parser.add_argument("--constrained", action="store_true")
    parser.add_argument("--max-prompt-tokens", type=int, help="the shots' token budget (default: none)")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")

    import torch
    from transformers import AutoTokenizer

    from llm_ner.data import load_examples

    torch.set_num_threads(os.cpu_count() or 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    gold, _ = load_examples(data / "dev.json")
    gold = gold[: args.limit]
    dev_input = out / "dev.json"
    dev_input.write_text(
        "".join(json.dumps({"id": ex.id, "text": ex.text}, ensure_ascii=False) + "\n" for ex in gold), encoding="utf-8"
    )
    if args.tiny:
        from llm_ner.tiny import build_tiny_model, default_texts

        model = str(out / "tiny-qwen3")
        if not Path(model, "config.json").is_file():
            build_tiny_model(Path(model), "qwen3", default_texts(), hidden_size=64)
        described = "tiny random-weight Qwen3 (hidden 64): plumbing, not quality"
    else:
        model = args.model
        described = Path(model).name
    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = [ex.text for ex in gold]
    rows = {name: run_row(name, args, model, dev_input, data / "train.json", out, texts, tokenizer) for name in names}
    score_rows(gold, out, names, rows)
    results = {
        "model": described,
        "sentences": len(gold),
        "prompt": args.prompt,
        "constrained": args.constrained,
        "max_prompt_tokens": args.max_prompt_tokens,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    (out / "results.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
