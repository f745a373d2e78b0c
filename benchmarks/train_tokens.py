"""Tokens a training epoch computes: whole rows or the shared prefix once per pass, random or length-grouped
batches; padding as a share of what is computed. No model: the real tokenizer and the trainer's own sampler.

    python benchmarks/train_tokens.py --train ../shared/data/cluener/train.json \\
        --tokenizer ../shared/tokenizers/qwen2.5 --prompt cluener_zh_short --batch-size 16

Each training example is the chat-formatted prompt (`generation.chat_prompt_ids`) plus the answer and the
end-of-turn tokens, as TRL tokenizes a prompt-completion record. Batches come in the order transformers'
Trainer draws them with ``train_sampling_strategy`` ``random`` (a seeded permutation) or ``group_by_length``
(`LengthGroupedSampler`: seeded mega-batches of 50 batches, each sorted by length), ``--batch-size`` rows
a pass (times ``--accumulation`` passes per optimizer step, the sampler's batch). A pass pads its rows to
its longest. Whole rows compute every position of every row; the shared prefix computes the tokens all
rows start with once (one row) and each row's rest (`training.NERSFTTrainer.with_shared_prefix`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def example_ids(train: str, tokenizer, prompt_name: str, answer_format: str, limit: int | None) -> list[tuple]:
    """(prompt ids, answer length) of every training example, as the trainer tokenizes it."""
    from llm_ner.generation import chat_prompt_ids
    from llm_ner.prompting import load_prompt
    from llm_ner.training import NERDataArguments, load_split

    data_args = NERDataArguments(train_file=train, answer_format=answer_format)
    _, records, _ = load_split(train, data_args, load_prompt(prompt_name), limit)
    rows = []
    for record in records:
        prompt = chat_prompt_ids(tokenizer, record["prompt"])
        answer = tokenizer(record["completion"][0]["content"])["input_ids"]
        rows.append((prompt, len(answer) + 2))  # + <|im_end|> and the newline after it
    return rows


def batch_order(lengths: list[int], strategy: str, batch: int, seed: int) -> list[int]:
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed)
    if strategy == "group_by_length":
        return get_length_grouped_indices(lengths, batch, generator=generator)
    return torch.randperm(len(lengths), generator=generator).tolist()


def common_prefix(prompts: list[list[int]]) -> int:
    """Tokens all prompts start with, at least one before each row's first target (as the trainer cuts it)."""
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    length = 0
    while length < limit and all(p[length] == first[length] for p in prompts):
        length += 1
    return length


def count(rows: list[tuple], order: list[int], batch: int, shared: bool) -> dict:
    tokens = computed = padding = 0
    for start in range(0, len(order), batch):
        members = [rows[i] for i in order[start : start + batch]]
        lengths = [len(prompt) + answer for prompt, answer in members]
        width = max(lengths)
        prefix = common_prefix([prompt for prompt, _ in members]) if shared and len(members) > 1 else 0
        computed += prefix + len(members) * (width - prefix)
        padding += sum(width - length for length in lengths)
        tokens += sum(lengths)
    return {
        "tokens": tokens,
        "computed": computed,
        "computed_per_sentence": round(computed / len(rows), 1),
        "padding_share": round(padding / computed, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(ROOT.parent / "shared/data/cluener/train.json"))
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared/tokenizers/qwen2.5"))
    parser.add_argument("--prompt", default="cluener_zh_short")
    parser.add_argument("--format", default="mentions", choices=("mentions", "grouped"))
    parser.add_argument("--batch-size", type=int, default=16, help="rows a forward pass")
    parser.add_argument("--accumulation", type=int, default=1, help="passes an optimizer step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, help="the first N train sentences only")
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = example_ids(args.train, tokenizer, args.prompt, args.format, args.limit)
    lengths = [len(prompt) + answer for prompt, answer in rows]
    results = {}
    for strategy in ("random", "group_by_length"):
        order = batch_order(lengths, strategy, args.batch_size * args.accumulation, args.seed)
        for shared in (False, True):
            results[f"{strategy}, {'shared prefix' if shared else 'whole rows'}"] = count(
                rows, order, args.batch_size, shared
            )
    print(
        f"{len(rows)} sentences of {args.train}, prompt {args.prompt}, {args.format}, {args.batch_size} rows a pass; "
        f"{sum(lengths) / len(rows):.1f} tokens a sentence\n"
    )
    print("| batches | positions computed / sentence | padding share of computed |\n|---|---:|---:|")
    for name, figures in results.items():
        print(f"| {name} | {figures['computed_per_sentence']} | {100 * figures['padding_share']:.1f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
