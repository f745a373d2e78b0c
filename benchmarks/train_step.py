"""Seconds per training sentence, one change at a time: the old recipe, then each of the speed-ups of issue 29.

    python benchmarks/train_step.py --model ~/.cache/llm-ner/qwen2.5-coder-0.5b-instruct      # the real 0.5B
    python benchmarks/train_step.py --shape Qwen2.5-0.5B-Instruct     # random weights of the real shape

The same 96 CLUENER train sentences (a seeded sample) in 6 length-sorted batches of 16, one forward and backward
pass each through our trainer's `compute_loss` (LoRA r 16 on every projection, bf16 weights under accelerate's
bf16 autocast, `cluener_zh_short`), after one warm-up pass; the rows, in this order, add one change each:

1. ``whole rows``: every row computed whole, LoRA dropout 0.05, SDPA attention, PEFT's cast of every LoRA input
   to float32 (the recipe before issue 29);
2. ``shared prefix``: the instructions every row starts with computed once per batch, with gradients;
3. ``no LoRA dropout``: ``lora_dropout 0`` (no random masks and copies);
4. ``LoRA inputs uncast``: no float32 round trip of the LoRA inputs under autocast;
5. ``eager attention``: eager instead of SDPA (the rule of `training.run.default_attention` for bf16 on a CPU);
6. ``float32 instead``: rows 2-3 in float32 weights without autocast and with SDPA (the rule for float32): what
   the training dtype costs once the instructions are computed once.

Each row also gives its loss on the first batch (the same computation, so equal up to bf16 rounding). Run it
alone: anything else on the CPU slows the passes unevenly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = tempfile.TemporaryDirectory(prefix="train_step_")  # the trainers' output_dir: nothing is saved
ROWS = ("whole rows", "shared prefix", "no LoRA dropout", "LoRA inputs uncast", "eager attention", "float32 instead")


def build_trainer(model_dir: str, records: list[dict], dropout: float, attention: str, bf16: bool = True):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from llm_ner.training.trainer import NERSFTTrainer

    return NERSFTTrainer(
        model=model_dir,
        args=SFTConfig(
            output_dir=SCRATCH.name, report_to="none", use_cpu=True, max_length=None, bf16=bf16,
            gradient_checkpointing=False,
            model_init_kwargs={"dtype": "bfloat16" if bf16 else "float32", "attn_implementation": attention},
        ),
        train_dataset=Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear"),
    )  # fmt: skip


def time_row(model_dir: str, records: list[dict], row: int) -> dict:
    """Seconds per sentence of one row (see the module docstring) and its first batch's loss."""
    import llm_ner.training.trainer as trainer_module

    dropout = 0.05 if row < 2 else 0.0
    attention = "eager" if row == 4 else "sdpa"
    trainer = build_trainer(model_dir, records, dropout, attention, bf16=row < 5)
    trainer.shared_prefix = row >= 1
    cast = row < 3  # (float32 has nothing to cast: no autocast)
    real_uncast = trainer_module.disable_input_dtype_casting
    if cast:  # PEFT's own behaviour: every LoRA input cast to the adapter's float32
        trainer_module.disable_input_dtype_casting = lambda model, active=True: contextlib.nullcontext()
    try:
        model = trainer.accelerator.prepare_model(trainer.model)
        model.train()
        features = sorted((trainer.train_dataset[i] for i in range(len(records))), key=lambda f: len(f["input_ids"]))
        batches = [
            trainer._prepare_inputs(trainer.data_collator(features[i : i + 16])) for i in range(0, len(features), 16)
        ]

        def step(batch) -> float:
            loss = trainer.compute_loss(model, batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
            return float(loss.detach())

        first_loss = step(batches[0])  # warm-up
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        seconds = time.perf_counter() - started
    finally:
        trainer_module.disable_input_dtype_casting = real_uncast
    return {
        "row": ROWS[row],
        "seconds_per_sentence": round(seconds / len(records), 4),
        "first_batch_loss": round(first_loss, 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model directory (default: random weights of --shape)")
    parser.add_argument("--shape", default="Qwen2.5-0.5B-Instruct", help="with no --model: this real shape")
    parser.add_argument("--train", default=str(ROOT.parent / "shared/data/cluener/train.json"))
    parser.add_argument("--sentences", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    from llm_ner.prompting import load_prompt
    from llm_ner.training import NERDataArguments, load_split

    torch.manual_seed(args.seed)
    model_dir = args.model
    if model_dir is None:  # random weights of the real shape beside the real Qwen2.5 tokenizer
        from llm_ner.tiny import build_tiny_model, read_shape, real_tokenizer_dir, shape_arguments

        real = read_shape(args.shape)
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"train_step_{args.shape}"
        if not (folder / "config.json").is_file():
            build_tiny_model(folder, real["model_type"], (), tokenizer_dir=real_tokenizer_dir("qwen2.5"),
                             vocab_size=real["vocab_size"], **shape_arguments(real))  # fmt: skip
        model_dir = str(folder)
    data_args = NERDataArguments(train_file=args.train)
    _, records, _ = load_split(args.train, data_args, load_prompt("cluener_zh_short"))
    records = random.Random(args.seed).sample(records, args.sentences)
    rows = [time_row(model_dir, records, row) for row in range(len(ROWS))]
    base = rows[0]["seconds_per_sentence"]
    print(f"{model_dir}, {args.sentences} train sentences in batches of 16, {os.cpu_count()} CPU cores\n")
    print("| change (cumulative) | s / sentence | vs whole rows | first batch loss |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['row']} | {row['seconds_per_sentence']:.3f} | {base / row['seconds_per_sentence']:.2f}x | "
              f"{row['first_batch_loss']} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
