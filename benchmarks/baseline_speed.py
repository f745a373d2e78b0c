"""BiLSTM-CRF on a long-sentence BIO corpus built from CLUENER: cost per character, and F1.

    python benchmarks/baseline_speed.py speed              # s/epoch per 1 000 chars, paragraphs vs sentences
    python benchmarks/baseline_speed.py f1                 # default settings, all paragraphs, <= 20 epochs
    python benchmarks/baseline_speed.py f1 --slice 1400    # the same on the first 1 400 paragraphs

The corpus: consecutive CLUENER sentences joined into paragraphs (1-10 sentences each, 40-350
characters, seeded), written as char-per-line BIO files (`paragraphs/{train,dev}.bio` under
``--out``) and read back with `llm_ner.data.load_examples`, as a user's BIO corpus would be.
Nested CLUENER spans, which BIO cannot write, are left out.

`speed` trains the same first ``--sentences`` CLUENER train sentences (same characters) one
sentence per piece and joined into paragraphs, one epoch at a time, interleaved (A, B, A, B, ...)
so a shared machine disturbs both alike, and prints the median seconds per epoch per 1 000
characters of each and their ratio. `f1` trains with the defaults of `llm-ner baseline train`
(batch size from the corpus size, early stopping on dev F1) and prints the best dev span
micro-F1 and the wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from llm_ner.baselines import BaselineConfig, train_baseline
from llm_ner.data import Example, Span, load_examples, read_cluener, write_bio
from llm_ner.data_sources import available_data_dir

ROOT = Path(__file__).resolve().parent.parent


def paragraphs(examples: list[Example], seed: int, low: int = 40, high: int = 350) -> list[Example]:
    """Consecutive sentences joined into paragraphs of 1-10 sentences and ``low``-``high`` characters
    (a sentence that would pass ``high`` starts the next paragraph); nested spans left out."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(examples):
        want, text, spans = rng.randint(1, 10), "", []
        while i < len(examples) and (len(text) < low or want > 0):
            ex = examples[i]
            if text and len(text) + len(ex.text) > high:
                break
            for s in ex.spans:
                shifted = Span(s.start + len(text), s.end + len(text), s.label)
                if not any(shifted.overlaps(k) for k in spans):
                    spans.append(shifted)
            text, want, i = text + ex.text, want - 1, i + 1
        out.append(Example(str(len(out)), text, sorted(spans, key=lambda s: s.start)))
    return out


def write_corpus(folder: Path, seed: int) -> Path:
    """Write ``folder/paragraphs/{train,dev}.bio`` from CLUENER; returns that folder."""
    source = available_data_dir()
    target = folder / "paragraphs"
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        examples, _ = read_cluener(source / f"{split}.json")
        write_bio(paragraphs(examples, seed), target / f"{split}.bio")
    return target


def speed(args: argparse.Namespace, work: Path) -> dict:
    source = available_data_dir()
    sentences, _ = read_cluener(source / "train.json")
    sentences = sentences[: args.sentences]
    joined = paragraphs(sentences, args.seed)
    write_bio(joined, work / "speed.bio")
    joined, _ = load_examples(work / "speed.bio", "bio")
    chars = sum(len(ex.text) for ex in sentences)
    assert chars == sum(len(ex.text) for ex in joined)
    variants = {"sentences": sentences, "paragraphs": joined}
    per_kchar: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, train in variants.items():
            config = BaselineConfig(arch="bilstm-crf", epochs=1, batch_size=args.batch_size, seed=args.seed + repeat)
            history = train_baseline(train, [], config, work / name, progress=False, log=lambda _: None)["history"]
            per_kchar[name].append(history[0]["epoch_seconds"] / chars * 1000)
            print(f"{name}: {per_kchar[name][-1]:.3f} s per epoch per 1 000 chars", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in per_kchar.items()}
    return {
        "sentences": len(sentences),
        "paragraphs": len(joined),
        "characters": chars,
        "batch_size": args.batch_size,
        "seconds_per_epoch_per_1000_chars": medians,
        "ratio_paragraphs_to_sentences": medians["paragraphs"] / medians["sentences"],
    }


def f1(args: argparse.Namespace, corpus: Path, work: Path) -> dict:
    train, _ = load_examples(corpus / "train.bio", "bio")
    dev, _ = load_examples(corpus / "dev.bio", "bio")
    if args.slice:
        train = train[: args.slice]
    config = BaselineConfig(arch="bilstm-crf", seed=args.seed)  # the defaults of `llm-ner baseline train`
    started = time.perf_counter()
    result = train_baseline(train, dev, config, work / "model", progress=False, log=lambda m: print(m, file=sys.stderr))
    return {
        "train_paragraphs": len(train),
        "train_characters": sum(len(ex.text) for ex in train),
        "dev_paragraphs": len(dev),
        "epochs_run": len(result["history"]),
        "best_epoch": result.get("best_epoch"),
        "best_dev_micro_f1": result["best"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("speed", "f1"))
    parser.add_argument("--out", help="folder for the BIO corpus and runs (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sentences", type=int, default=3000, help="speed: CLUENER train sentences used")
    parser.add_argument("--batch-size", type=int, default=64, help="speed: the same batch size for both")
    parser.add_argument("--repeats", type=int, default=3, help="speed: epochs of each variant, interleaved")
    parser.add_argument("--slice", type=int, help="f1: only the first N training paragraphs")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        result = speed(args, work) if args.what == "speed" else f1(args, write_corpus(work, args.seed), work)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
