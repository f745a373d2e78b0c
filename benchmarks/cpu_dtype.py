"""float32 against bfloat16 on this CPU, for a LoRA training step and for batched extraction (issue 19).

    python benchmarks/cpu_dtype.py --model ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct \\
        --adapter runs/real-model/adapter --out runs/cpu-dtype

Training: the model loaded in each dtype, LoRA r=16 on every linear layer (as configs/qwen2.5-0.5b-lora.yaml),
AdamW, ``--train-batch`` chat-formatted train sentences with the loss on the answer only; bfloat16 runs the
forward pass under ``torch.autocast("cpu", torch.bfloat16)``, as the Trainer's ``bf16: true`` does. One warm-up
step, then the mean of ``--steps`` timed steps. Extraction: `llm-ner extract` of the first ``--extract-n`` dev
sentences in one batch with the adapter, after a 4-sentence run that warms the page cache and the kernels
(loading the model from the warm cache stays in the time).
The two dtypes alternate within one run, so the ratio holds under the same load. With ``--f1-n`` the first N
dev sentences are extracted in each dtype and scored: whether bfloat16 keeps F1 within 0.01.
Results: OUT/results.json. Random weights give the same timing as real ones; F1 needs the real model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float32", "bfloat16")


def training_step_seconds(model_dir: str, dtype: str, batch: list[tuple[list[int], int]], steps: int) -> dict:
    """Mean seconds of a LoRA step (forward, backward, AdamW) in ``dtype``, and the last loss."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.long)
    attention = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
    times, loss = [], None
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step warms up the kernels
            times.append(time.perf_counter() - start)
    return {"seconds_per_step": round(sum(times) / len(times), 2), "last_loss": round(float(loss.detach()), 4)}


def extraction_seconds(args, dtype: str, dev: Path, limit: int, out: Path) -> dict:
    """`llm-ner extract` of the first ``limit`` dev sentences in one batch: seconds and span micro-F1."""
    from llm_ner.cli import main as cli
    from llm_ner.data import load_examples
    from llm_ner.metrics import evaluate

    output = out / f"extract-{dtype}-{limit}.json"
    argv = ["extract", "--model", args.model, "--input", str(dev), "--output", str(output), "--limit", str(limit)]
    argv += ["--dtype", dtype, "--batch-size", str(min(limit, args.batch_size)), "--quiet", "--restart"]
    argv += ["--max-parse-failures", "1"]
    argv += ["--adapter", args.adapter] if args.adapter else []
    argv += ["--prompt", args.prompt] if args.prompt else []
    start = time.perf_counter()
    assert cli(argv) == 0, argv
    seconds = time.perf_counter() - start
    gold = load_examples(dev)[0][:limit]
    pred, _ = load_examples(output, "cluener", allow_empty=True)
    labels = sorted({s.label for ex in gold for s in ex.spans})
    f1 = evaluate(gold, pred, labels)["span"]["micro avg"]["f1-score"]
    return {"seconds": round(seconds, 1), "sentences_per_second": round(limit / seconds, 3), "f1": round(f1, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", help="a LoRA adapter (a training run) for extraction and F1")
    parser.add_argument("--prompt", help="default: the adapter's")
    parser.add_argument("--data", default=os.environ.get("LLM_NER_DATA", str(ROOT.parent / "shared/data/cluener")))
    parser.add_argument("--out", default="runs/cpu-dtype")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--extract-n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--f1-n", type=int, default=0, help="also extract and score the first N dev sentences")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from llm_ner.data import load_examples
    from llm_ner.generation import chat_prompt_ids
    from llm_ner.prompting import load_prompt, to_conversation

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = Path(args.data) / "dev.json"
    results: dict = {"model": args.model, "adapter": args.adapter, "threads": torch.get_num_threads(), "runs": {}}
    if not args.skip_training:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        prompt = load_prompt(args.prompt or "cluener_zh_short")
        batch = []
        for example in load_examples(Path(args.data) / "train.json")[0][: args.train_batch]:
            record = to_conversation(example, prompt)
            prompt_ids = chat_prompt_ids(tokenizer, record["prompt"])
            full = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True)
            full = list(full["input_ids"] if hasattr(full, "keys") else full)
            batch.append((full, len(prompt_ids)))
        for dtype in DTYPES:
            results["runs"].setdefault(dtype, {})["training"] = training_step_seconds(
                args.model, dtype, batch, args.steps
            )
            print(dtype, results["runs"][dtype], flush=True)
    for dtype in DTYPES:
        extraction_seconds(args, dtype, dev, min(4, args.extract_n), out)  # loads, warms the kernels
        results["runs"].setdefault(dtype, {})["extraction"] = extraction_seconds(args, dtype, dev, args.extract_n, out)
        print(dtype, results["runs"][dtype], flush=True)
    if args.f1_n:
        for dtype in DTYPES:
            results["runs"][dtype]["f1_run"] = extraction_seconds(args, dtype, dev, args.f1_n, out)
            print(dtype, results["runs"][dtype]["f1_run"], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
