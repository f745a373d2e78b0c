"""Training throughput: our default setup versus the public tutorials' recipe, in one process.

    python benchmarks/train_throughput.py --batch-size 4          # CPU: hidden 128, 2 layers, real Qwen2.5 vocab
    python benchmarks/train_throughput.py --shape Qwen2.5-0.5B-Instruct --steps 30   # real shape, GPU

- naive: `transformers.Trainer` + `DataCollatorForSeq2Seq` (every batch padded to its longest
  sample, random order), full-vocabulary logits at every position, as in the public Qwen NER
  tutorials;
- ours: `llm_ner.training`'s SFTTrainer setup (completion-only loss through TRL's fused LM head,
  which projects only answer positions onto the vocabulary; length-grouped batches);
- ours+padfree (with --padding-free): the same plus TRL's padding-free batching (one flattened
  row per batch). Exact with SDPA (transformers builds a block-diagonal mask from position_ids),
  but that mask is (tokens in batch)^2, so it pays only with varlen flash attention on GPU.

Same model weights, data, batch size and number of steps; trained tokens per second counts the
non-padding tokens of the batches. Peak memory is the GPU allocator's peak on CUDA, else the
process's resident-memory peak above its level before the run. The model has random weights and
the real Qwen2.5 tokenizer (Qwen3's for a Qwen3 --shape; 151 936 embedding rows, as the real
checkpoints; ../shared/tokenizers) unless --tokenizer tiny; random weights of a real shape give the
real model's speed, not its quality.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from harness import PeakMemory, build_model_dir, describe_model, naive_data


def _same_settings(args) -> dict:
    """Training settings both setups share: batch size, steps, learning rate, precision, seed."""
    return dict(
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-4,
        logging_steps=args.steps,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def run_naive(model_dir, records, args, workdir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    dataset, counting_collator, counter = naive_data(AutoTokenizer.from_pretrained(model_dir), records)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=_dtype(), attn_implementation="sdpa")
    training_args = TrainingArguments(
        output_dir=str(workdir / "naive"),
        **_same_settings(args),
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=counting_collator)
    return _timed(trainer, counter)


def run_ours(model_dir, records, args, workdir, padding_free: bool):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from llm_ner.training.trainer import NERSFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    training_args = SFTConfig(
        output_dir=str(workdir / "ours"),
        **_same_settings(args),
        train_sampling_strategy="group_by_length",
        padding_free=padding_free,
        max_length=None,
        model_init_kwargs={"dtype": _dtype(), "attn_implementation": "sdpa"},
    )
    trainer = NERSFTTrainer(
        model=str(model_dir), args=training_args, train_dataset=Dataset.from_list(records), processing_class=tokenizer
    )
    counter = {"trainer": trainer}
    return _timed(trainer, counter)


def _dtype():
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def _timed(trainer, counter):
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = trainer.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    tokens = counter["trainer"]._total_train_tokens if "trainer" in counter else counter["tokens"]
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "peak_memory_mib": memory.used / 2**20,
        "train_loss": result.training_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: random weights on the real Qwen2.5 tokenizer)")
    parser.add_argument(
        "--shape", help="random weights of a real shape from qwen_shapes.json, e.g. Qwen2.5-0.5B-Instruct"
    )
    parser.add_argument("--shapes-file", help="default: ../shared/qwen_shapes.json")
    parser.add_argument(
        "--tokenizer",
        help="tokenizer directory (default: ../shared/tokenizers/qwen2.5, qwen3 for a Qwen3 --shape; "
        "'tiny': one built here)",
    )
    parser.add_argument("--train-file", default=None, help="CLUENER file (default: $LLM_NER_DATA/train.json)")
    parser.add_argument("--prompt", default="cluener_zh")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--padding-free", action="store_true", help="also time TRL's padding-free batching")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from llm_ner.data_sources import data_dir
    from llm_ner.prompting import load_prompt
    from llm_ner.training import NERDataArguments, load_split

    train_file = args.train_file or str(data_dir() / "train.json")
    data_args = NERDataArguments(train_file=train_file, prompt=args.prompt)
    # Enough sentences for every run to draw fresh batches: steps x batch size.
    _, records, _ = load_split(train_file, data_args, load_prompt(args.prompt), limit=args.steps * args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = build_model_dir(args, workdir)
        described = describe_model(model_dir)
        results = {
            "naive": run_naive(model_dir, records, args, workdir),
            "ours": run_ours(model_dir, records, args, workdir, padding_free=False),
        }
        if args.padding_free:
            results["ours+padfree"] = run_ours(model_dir, records, args, workdir, padding_free=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"\nmodel: {args.shape or args.model or 'random weights'} ({described}); device: {device}; "
        f"{args.steps} steps x batch {args.batch_size}; prompt {args.prompt}"
    )
    print(f"{'setup':<14}{'tokens/s':>12}{'ratio':>8}{'peak MiB':>10}{'seconds':>9}{'loss':>8}")
    base = results["naive"]["tokens_per_s"]
    for name, r in results.items():
        print(
            f"{name:<14}{r['tokens_per_s']:>12.0f}{r['tokens_per_s'] / base:>8.2f}{r['peak_memory_mib']:>10.0f}"
            f"{r['seconds']:>9.1f}{r['train_loss']:>8.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": device, "results": results}, indent=2))


if __name__ == "__main__":
    main()
