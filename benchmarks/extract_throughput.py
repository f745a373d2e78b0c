"""Extraction throughput: the tutorials' one-at-a-time recipe versus our batched engine, in one process.

    python benchmarks/extract_throughput.py                        # random weights, real Qwen2.5 vocabulary
    python benchmarks/extract_throughput.py --shape Qwen2.5-0.5B-Instruct --sentences 64 --skip-one-at-a-time
    python benchmarks/extract_throughput.py --model runs/tiny-cpu  # the CPU demo's trained model

Without --model, a random-weight model (hidden 512, 4 layers, or --shape) on the real Qwen2.5
tokenizer (151 936 embedding rows; --tokenizer tiny: one built here) is built and every answer is
forced to --answer-tokens tokens (random weights never stop), so every setup generates the same
number of tokens and the timing is that model shape's; constrained answers then end in filler
after their closing bracket, which the parser skips.

(a) one-at-a-time: per sentence `apply_chat_template` + `generate(max_new_tokens=512)`, as in the
    public Qwen NER tutorials (parsing with our parser, not `eval`);
(b) ours: length-sorted left-padded batches, an answer bound from the sentence length;
(c) ours with --constrained decoding.
Same model, the same CLUENER dev sentences (default 256), greedy decoding; sentences per second.
With random weights the numbers are the real shape's speed, not its quality.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from harness import one_at_a_time, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained model directory (answers stop by themselves)")
    parser.add_argument("--adapter")
    parser.add_argument("--hidden-size", type=int, default=512, help="random model width (without --model)")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--shape", help="random weights of a real shape instead, e.g. Qwen2.5-0.5B-Instruct")
    parser.add_argument("--shapes-file", help="default: ../shared/qwen_shapes.json")
    parser.add_argument(
        "--tokenizer",
        help="tokenizer directory (default: ../shared/tokenizers/qwen2.5, qwen3 for a Qwen3 --shape; "
        "'tiny': one built here)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--answer-tokens",
        type=int,
        default=32,
        help="fixed answer length (without --model); 0: answers end by themselves within --max-new-tokens",
    )
    parser.add_argument("--max-new-tokens", type=int, default=48, help="the bound with --answer-tokens 0")
    parser.add_argument("--prompt", help="prompt (default: as trained; cluener_zh_short for the random model)")
    parser.add_argument("--dev-file", help="CLUENER dev (default: $LLM_NER_DATA/dev.json)")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-sizes", default="32", help="comma-separated batch sizes for (b) and (c)")
    parser.add_argument("--skip-one-at-a-time", action="store_true")
    parser.add_argument("--before", metavar="REV", help="also time (c) with llm_ner/constrained.py of a git revision")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from llm_ner.answer_format import answer_to_spans
    from llm_ner.constrained import MentionsConstraint
    from llm_ner.data import read_cluener
    from llm_ner.data_sources import data_dir
    from llm_ner.extraction import resolve_settings
    from llm_ner.generation import generate_answers, load_model
    from llm_ner.parsing import ParseStats

    fixed = None
    described = args.model or args.adapter
    with tempfile.TemporaryDirectory() as tmp:
        if args.model or args.adapter:
            settings = resolve_settings(args.model, args.adapter, args.prompt)
        else:
            from harness import build_model_dir, describe_model

            path = build_model_dir(args, Path(tmp))
            described = f"{args.shape or 'random weights'} ({describe_model(path)})"
            settings = resolve_settings(str(path), prompt=args.prompt or "cluener_zh_short")
            fixed = args.answer_tokens
        model, tokenizer = load_model(settings.model, settings.adapter)
    if fixed is None:  # a trained model: answers end by themselves
        kwargs, limit, answers_note = {}, 512, ""
    elif fixed == 0:
        kwargs, limit = {"max_new_tokens": args.max_new_tokens}, args.max_new_tokens
        answers_note = f", answers bounded by {args.max_new_tokens} tokens"
    else:
        kwargs, limit = {"max_new_tokens": fixed, "min_new_tokens": fixed}, fixed
        answers_note = f", answers fixed at {fixed} tokens"
    examples, _ = read_cluener(args.dev_file or data_dir() / "dev.json")
    examples = examples[: args.sentences]
    texts = [ex.text for ex in examples]
    conversations = [settings.prompt.messages(t, settings.answer_format) for t in texts]
    constraints = {"(c) constrained": MentionsConstraint.for_tokenizer(tokenizer, settings.prompt.schema.keys)}
    if args.before:
        from harness import load_constraint_module

        old = load_constraint_module(args.before).MentionsConstraint
        constraints[f"(c) @{args.before}"] = old.for_tokenizer(tokenizer, settings.prompt.schema.keys)

    def failures(answers):
        stats = ParseStats()
        for text, answer in zip(texts, answers):
            stats += answer_to_spans(text, answer, settings.prompt.schema)[1]
        return stats

    results = {}
    generate_answers(model, tokenizer, conversations[:4], texts=texts[:4], batch_size=4)  # warm-up
    if not args.skip_one_at_a_time:
        answers, seconds = timed(lambda: one_at_a_time(model, tokenizer, conversations, limit, fixed or None))
        results["(a) one-at-a-time"] = {"seconds": seconds, "stats": failures(answers).as_dict()}
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        answers, seconds = timed(
            lambda size=size: generate_answers(model, tokenizer, conversations, texts=texts, batch_size=size, **kwargs)
        )
        results[f"(b) batched bs={size}"] = {"seconds": seconds, "stats": failures(answers).as_dict()}
        for label, factory in constraints.items():
            answers, seconds = timed(
                lambda size=size, factory=factory: generate_answers(
                    model,
                    tokenizer,
                    conversations,
                    texts=texts,
                    batch_size=size,
                    logits_processor_factory=factory,
                    **kwargs,
                )
            )
            results[f"{label} bs={size}"] = {"seconds": seconds, "stats": failures(answers).as_dict()}

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"\nmodel: {described}{answers_note}; prompt {settings.prompt.name}; device: {device}; "
        f"{len(texts)} CLUENER dev sentences"
    )
    print(f"{'setup':<30}{'sent/s':>9}{'seconds':>9}{'parse fail':>11}{'repaired':>9}{'halluc.':>9}")
    for name, r in results.items():
        r["sentences_per_s"] = len(texts) / r["seconds"]
        print(
            f"{name:<30}{r['sentences_per_s']:>9.1f}{r['seconds']:>9.1f}{r['stats']['parse_failures']:>11}"
            f"{r['stats']['repaired']:>9}{r['stats']['hallucinated']:>9}"
        )
    base = results.get("(a) one-at-a-time")
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        b, c = results[f"(b) batched bs={size}"], results[f"(c) constrained bs={size}"]
        line = f"bs={size}: (c)/(b) time {c['seconds'] / b['seconds']:.2f}x"
        if args.before:
            line += f"; (c)@{args.before}/(b) {results[f'(c) @{args.before} bs={size}']['seconds'] / b['seconds']:.2f}x"
        if base:
            line = f"bs={size}: (b)/(a) {b['sentences_per_s'] / base['sentences_per_s']:.1f}x; " + line
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": device, "results": results}, indent=2))


if __name__ == "__main__":
    main()
