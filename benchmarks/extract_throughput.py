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

--looping N: answers of real lengths instead of fixed ones. Every answer is forced to the gold mentions
answer then end-of-turn, except every N-th, which loops on its first mention (as a model after a short
LoRA does) up to the answer bound. Timed: (before) one static batch per --batch-sizes, waiting for its
longest row; (after) `generate_answers` as it is now: a looping answer ends at its first repeat and
finished rows leave the batch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from harness import one_at_a_time, timed


class StaticForcedAnswers:
    """Forces each row's answer: its token ids, then end-of-turn. No `select`: its batch stays whole, as
    every batch did before; ``bounds_repeats`` turns off the repeat watch, which did not exist then."""

    bounds_repeats = True

    def __init__(self, answers: list[list[int]], stop: int, width: int):
        self.answers, self.stop, self.width, self.done = answers, stop, width, [0] * len(answers)

    def __call__(self, input_ids, scores):
        generated = input_ids.shape[1] - self.width
        scores[:] = float("-inf")
        for row, answer in enumerate(self.answers):
            step = self.done[row] + generated
            scores[row, answer[step] if step < len(answer) else self.stop] = 0.0
        return scores


class ForcedAnswers(StaticForcedAnswers):
    """The same, following its rows through `select` (finished rows leave the batch), repeats watched."""

    bounds_repeats = False

    def select(self, rows, generated, prompt_width):
        self.answers = [self.answers[r] for r in rows]
        self.done = [self.done[r] + len(generated[r]) for r in rows]
        self.width = prompt_width


def looping_comparison(args, model, tokenizer, settings, examples) -> None:
    """(before) static batches that wait for their longest row vs (after) `generate_answers` now."""
    from llm_ner.answer_format import answer_to_spans, format_answer
    from llm_ner.generation import default_max_new_tokens, generate_answers, stop_token_ids

    stop = stop_token_ids(tokenizer, model)[0]
    forced = {}
    for index, ex in enumerate(examples):
        gold = format_answer(ex)
        if index % args.looping == 0 and ex.spans:
            first = gold[1 : gold.index("}") + 1]
            gold = gold[:-1] + ("," + first) * 200
        ids = tokenizer(gold, add_special_tokens=False)["input_ids"]
        forced[ex.text] = ids[: default_max_new_tokens(len(ex.text))]
    texts = [ex.text for ex in examples]
    conversations = [settings.prompt.messages(t, settings.answer_format) for t in texts]
    lengths = sorted(len(tokenizer.decode(forced[t])) for t in texts)
    print(f"forced answers: median {lengths[len(lengths) // 2]} characters, longest {lengths[-1]}")
    for size in [int(s) for s in args.batch_sizes.split(",")]:
        for name, cls in (("before", StaticForcedAnswers), ("after", ForcedAnswers)):
            answers, seconds = timed(
                lambda cls=cls, size=size: generate_answers(
                    model,
                    tokenizer,
                    conversations,
                    texts=texts,
                    batch_size=size,
                    logits_processor_factory=lambda batch, width, cls=cls: cls([forced[t] for t in batch], stop, width),
                )
            )
            duplicates = sum(
                answer_to_spans(t, a, settings.prompt.schema)[1].duplicates for t, a in zip(texts, answers)
            )
            print(
                f"{name:<7} bs={size}: {len(texts) / seconds:.2f} sentences/s ({seconds:.1f} s), "
                f"answers {sum(map(len, answers))} characters, {duplicates} duplicate mentions"
            )


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
    parser.add_argument("--looping", type=int, metavar="N", help="forced real-length answers, every N-th looping")
    args = parser.parse_args()

    from llm_ner.answer_format import answer_to_spans
    from llm_ner.data import read_cluener
    from llm_ner.data_sources import data_dir
    from llm_ner.extraction import resolve_settings
    from llm_ner.generation import generate_answers, load_model
    from llm_ner.generation.constrained import MentionsConstraint
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
    if args.looping:
        looping_comparison(args, model, tokenizer, settings, examples)
        return
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
