"""Dynamic int8 against float32 for extraction on this CPU (issue 19, item 4).

    python benchmarks/cpu_int8.py --adapter runs/real-model/adapter --input runs/real-model/dev.json \\
        --limit 100 --out runs/cpu-int8

The LoRA adapter is merged into its base model (``merge_and_unload``) and the run is `llm-ner extract`'s
own code (`run_extraction`, float32, free decoding unless ``--constrained``), once as it is and once with
every ``nn.Linear`` (or every one but the output layer) replaced by PyTorch's dynamically quantized int8 Linear
(``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantized per batch, fbgemm/oneDNN
kernels). Each variant: seconds (model load and merge included, page cache warm), sentences per second,
span micro-F1 against the input's gold spans, and how many answers equal the float32 ones.
Results: OUT/results.json. Speed needs no trained weights; F1 and agreement need the real model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import llm_ner.generation as generation
from llm_ner.data import load_examples
from llm_ner.extraction import ExtractOptions, ModelOptions, run_extraction
from llm_ner.metrics import evaluate

# int8-body leaves the output layer (tied to the embeddings, 151 936 rows) in float32.
VARIANTS = ("float32", "int8", "int8-body")


def loader(variant: str):
    """`load_model` with the adapter merged and, unless ``variant`` is float32, Linear layers made dynamic int8:
    all of them (int8), or those of the transformer body only (int8-body)."""
    original = generation.load_model

    def load(*args, **kwargs):
        model, tokenizer = original(*args, **kwargs)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        if variant == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif variant == "int8-body":
            model.model = torch.ao.quantization.quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8)
        return model.eval(), tokenizer

    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="a LoRA training output (its base model is read from it)")
    parser.add_argument("--input", required=True, help="CLUENER dev sentences with gold spans")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--constrained", action="store_true")
    parser.add_argument("--out", default="runs/cpu-int8")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gold, _ = load_examples(args.input)
    gold = gold[: args.limit]
    labels = sorted({s.label for ex in gold for s in ex.spans})
    original = generation.load_model
    results: dict = {"setup": {**vars(args), "threads": torch.get_num_threads()}, "variants": {}}
    answers: dict[str, list[str]] = {}
    for variant in VARIANTS:
        output = out / f"{variant}.pred.json"
        output.unlink(missing_ok=True)
        generation.load_model = loader(variant)
        start = time.perf_counter()
        try:
            code = run_extraction(
                ModelOptions(adapter=args.adapter, dtype="float32", device="cpu", constrained=args.constrained),
                ExtractOptions(
                    input=args.input, output=output, batch_size=args.batch_size, limit=args.limit, quiet=True
                ),
            )
        finally:
            generation.load_model = original
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
        answers[variant] = [r.get("raw", "") for r in records]
        pred, _ = load_examples(output, "cluener", allow_empty=True)
        f1 = evaluate(gold, pred, labels)["span"]["micro avg"]["f1-score"]
        results["variants"][variant] = {
            "exit": code,
            "seconds": round(seconds, 1),
            "sentences_per_second": round(len(records) / seconds, 3),
            "f1": round(f1, 4),
            "answers_equal_to_float32": sum(a == b for a, b in zip(answers[variant], answers["float32"])),
        }
        print(variant, results["variants"][variant], file=sys.stderr, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
