"""Per-step cost of constrained decoding with the real Qwen tokenizer (151 936 logits per row).

    python benchmarks/constraint_step.py                           # ours, real Qwen2.5 tokenizer
    python benchmarks/constraint_step.py --before e063ab0           # also the constraint of that commit
    PYTHONPATH=/tmp/xgr python benchmarks/constraint_step.py --xgrammar   # also xgrammar (pip install xgrammar)

No model: batches of CLUENER dev sentences are decoded by a seeded random policy over the tokens
our constraint allows (so answers are varied and reach the token bound), and every constraint
sees the same token ids at every step. Per step and batch we time
- host: reading the new tokens and finding the allowed token ids of every row (CPU work that a
  GPU step waits for);
- mask: applying them to a (batch, 151 936) float32 score tensor on this CPU (a device kernel on GPU);
- for xgrammar: `accept_token` + `fill_next_token_bitmask` per row (host) and
  `apply_token_bitmask_inplace` (mask), and the grammar compile time per sentence (the
  substring rule makes every sentence its own grammar).
Medians over steps; the variants run interleaved within each step, in one process.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from harness import load_constraint_module

ROOT = Path(__file__).resolve().parents[1]


def sentence_ebnf(text: str, labels: list[str]) -> str:
    """Our answer grammar for one sentence in xgrammar's EBNF: entity = any substring."""
    pieces = [json.dumps(ch, ensure_ascii=False)[1:-1] for ch in text]
    rules = [
        'root ::= "[" ("]" | item ("," item)* "]")',
        'item ::= "{\\"text\\":\\"" entity "\\",\\"label\\":\\"" label "\\"}"',
        "label ::= " + " | ".join(json.dumps(label, ensure_ascii=False) for label in labels),
        "entity ::= " + " | ".join(f"p{i}" for i in range(len(pieces))),
    ]
    for i, piece in enumerate(pieces):
        literal = json.dumps(piece, ensure_ascii=False)
        rules.append(f"p{i} ::= {literal}" + (f" p{i + 1}?" if i + 1 < len(pieces) else ""))
    return "\n".join(rules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="default: ../shared/tokenizers/qwen2.5")
    parser.add_argument("--dev-file", help="CLUENER dev (default: $LLM_NER_DATA/dev.json)")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--before", metavar="REV", help="also time llm_ner/constrained.py of this git revision")
    parser.add_argument("--xgrammar", action="store_true", help="also time xgrammar on the same grammar")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from llm_ner.data import read_cluener
    from llm_ner.data_sources import data_dir
    from llm_ner.generation import stop_token_ids
    from llm_ner.generation.constrained import MentionsConstraint
    from llm_ner.prompting import load_prompt
    from llm_ner.tiny import embedding_rows, real_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or real_tokenizer_dir("qwen2.5"))
    labels = list(load_prompt().schema.keys)
    examples, _ = read_cluener(args.dev_file or data_dir() / "dev.json")
    texts = [ex.text for ex in examples[: args.sentences]]
    vocab = embedding_rows(tokenizer)  # 151 936 for the real Qwen tokenizers
    stops = stop_token_ids(tokenizer)

    start = time.perf_counter()
    ours = MentionsConstraint.for_tokenizer(tokenizer, labels)
    setup = {"ours": time.perf_counter() - start}
    before = None
    if args.before:
        module = load_constraint_module(args.before)
        start = time.perf_counter()
        before = module.MentionsConstraint.for_tokenizer(tokenizer, labels)
        setup["before"] = time.perf_counter() - start
    if args.xgrammar:
        import xgrammar

        start = time.perf_counter()
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=stops)
        compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        setup["xgrammar"] = time.perf_counter() - start

    times: dict[str, list[float]] = {}
    per_sentence: dict[str, list[float]] = {}

    def record(name: str, seconds: float, table=times) -> None:
        table.setdefault(name, []).append(seconds)

    rng = random.Random(0)
    token_bytes = None
    rejected = 0  # tokens of our answers that xgrammar's grammar refused (0: the same language)
    for first in range(0, len(texts), args.batch_size):
        batch = texts[first : first + args.batch_size]
        size = len(batch)
        start = time.perf_counter()
        constraint = ours(batch, 0)
        constraint.max_new_tokens = args.max_new_tokens
        record("ours", (time.perf_counter() - start) / size, per_sentence)
        token_bytes = constraint.grammar.trie.token_bytes
        old = before(batch, 0) if before else None
        matchers = None
        if args.xgrammar:
            matchers = []
            for text in batch:
                start = time.perf_counter()
                compiled = compiler.compile_grammar(sentence_ebnf(text, labels))
                record("xgrammar", time.perf_counter() - start, per_sentence)
                matchers.append(xgrammar.GrammarMatcher(compiled))
            bitmask = xgrammar.allocate_token_bitmask(size, vocab)
        input_ids = torch.zeros((size, 0), dtype=torch.long)
        scores = torch.randn(size, vocab)
        finished = [False] * size
        for step in range(args.max_new_tokens):
            start = time.perf_counter()
            allowed = constraint.allowed_per_row(input_ids)
            record("ours host", time.perf_counter() - start)
            start = time.perf_counter()
            constraint.apply(scores, allowed)
            record("ours mask", time.perf_counter() - start)
            if old is not None:
                start = time.perf_counter()
                old(input_ids, scores)
                record("before (host + mask)", time.perf_counter() - start)
                start = time.perf_counter()
                for row in range(size):  # the allowed-token walk again (the state is already read)
                    old.allowed(row)
                record("before host (walks only)", time.perf_counter() - start)
            if matchers is not None:
                start = time.perf_counter()
                if step:
                    for row, matcher in enumerate(matchers):
                        if not matcher.is_terminated():
                            rejected += not matcher.accept_token(int(input_ids[row, -1]))
                for row, matcher in enumerate(matchers):
                    if not matcher.is_terminated():
                        matcher.fill_next_token_bitmask(bitmask, row)
                record("xgrammar host", time.perf_counter() - start)
                masked = scores.clone()
                start = time.perf_counter()
                xgrammar.apply_token_bitmask_inplace(masked, bitmask)
                record("xgrammar mask", time.perf_counter() - start)
            chosen = []
            for row in range(size):
                if finished[row]:
                    chosen.append(stops[0])
                    continue
                options = allowed[row]
                token = int(options[rng.randrange(len(options))])
                if b"]" in token_bytes.get(token, b"") and rng.random() < 0.9:  # long answers
                    token = int(options[rng.randrange(len(options))])
                finished[row] = token in stops
                chosen.append(token)
            input_ids = torch.cat([input_ids, torch.tensor(chosen).unsqueeze(1)], dim=1)
            if all(finished):
                break

    result = {
        "tokenizer": str(args.tokenizer or real_tokenizer_dir("qwen2.5")),
        "batch_size": args.batch_size,
        "sentences": len(texts),
        "setup_s": setup,
        "median_ms_per_step": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "median_ms_per_sentence_setup": {k: 1000 * statistics.median(v) for k, v in per_sentence.items()},
        "steps": len(times["ours host"]),
        "xgrammar_rejected_tokens": rejected if args.xgrammar else None,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
