"""Batch extraction: run a fine-tuned model over many sentences and write exact spans.

Output is CLUENER JSON lines (``id``, ``text``, ``label`` with inclusive ends, ready for
`llm-ner evaluate`) plus, per record, the raw generation and the parse counters. Work is
appended batch by batch to ``OUTPUT.parts/rank-K.jsonl`` (flushed and synced), so an
interrupted run loses at most the batch in flight and a rerun skips finished ids; when all
sentences are done the parts are merged into OUTPUT in input order. Under
``accelerate launch --num_processes N`` each process takes every N-th sentence.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .confidence import scores_field
from .data import DataError, Example, Span, example_to_cluener, guess_format, load_examples
from .generation import PROMPT_COPY, read_run_metadata
from .parsing import ParseStats, answer_to_scored_spans, answer_to_spans
from .prompting import DEFAULT_PROMPT, PromptTemplate, load_prompt

INPUT_FORMATS = ("auto", "text", "jsonl", "cluener", "bio", "bioes", "bmes")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])")
_CLAUSE_END = re.compile(r"(?<=[，,、：:])")


# ---------------------------------------------------------------------------------------------
# Inputs


def read_inputs(path: str | Path, input_format: str = "auto", lenient: bool = False) -> list[Example]:
    """Sentences to extract from: plain text (one per line), JSON lines with a ``text`` field
    (an ``id`` is kept; CLUENER labels are read but not needed) or a BIO-style file."""
    path = Path(path)
    if input_format == "auto":
        input_format = "jsonl" if guess_format(path) == "cluener" else _guess_text_or_tags(path)
    if input_format in ("jsonl", "cluener"):
        examples, report = load_examples(path, "cluener", lenient=lenient)
    elif input_format == "text":
        examples = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(path, None, f"not valid UTF-8: {exc}") from None
        for line in lines:
            if line.strip():
                examples.append(Example(str(len(examples)), line.strip()))
        if not examples:
            raise DataError(path, None, "empty file: no sentences")
        return examples
    else:
        examples, report = load_examples(path, input_format, lenient=lenient)
    if report.skipped or report.warnings:
        report.print()
    return examples


def _guess_text_or_tags(path: Path) -> str:
    """``bio`` when the first lines look like ``CHAR TAG``, else plain ``text``."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [line.rstrip("\n") for _, line in zip(range(20), handle) if line.strip()]
    tag = re.compile(r"^.+[ \t](O|[BIMES][-_]\S+)$")
    return "bio" if lines and all(tag.match(line) for line in lines) else "text"


# ---------------------------------------------------------------------------------------------
# Long sentences


def split_long(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Pieces of at most ``max_chars`` characters with their offsets, cut after sentence
    punctuation first, then after clause punctuation, and only then anywhere."""
    if len(text) <= max_chars:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []

    def cut(offset: int, segment: str, patterns: Sequence[re.Pattern]) -> None:
        if len(segment) <= max_chars:
            pieces.append((offset, segment))
            return
        if not patterns:
            for start in range(0, len(segment), max_chars):
                pieces.append((offset + start, segment[start : start + max_chars]))
            return
        parts = [p for p in patterns[0].split(segment) if p]
        if len(parts) == 1:
            cut(offset, segment, patterns[1:])
            return
        # Greedily join consecutive parts while they fit.
        current, current_offset, position = "", offset, offset
        for part in parts:
            if current and len(current) + len(part) > max_chars:
                cut(current_offset, current, patterns[1:])
                current, current_offset = "", position
            current += part
            position += len(part)
        if current:
            cut(current_offset, current, patterns[1:])

    cut(0, text, [_SENTENCE_END, _CLAUSE_END])
    return pieces


# ---------------------------------------------------------------------------------------------
# Run settings


@dataclass
class RunSettings:
    """What extraction uses: model, adapter, prompt and answer format (from training if saved)."""

    model: str
    adapter: str | None
    prompt: PromptTemplate
    answer_format: str
    source: str = "defaults"
    notes: list[str] = field(default_factory=list)


def resolve_settings(
    model: str | None, adapter: str | None = None, prompt: str | None = None, answer_format: str | None = None
) -> RunSettings:
    """Use the prompt and format saved at training time unless given explicitly."""
    metadata = None
    for candidate in (adapter, model):
        if candidate and Path(candidate).is_dir():
            metadata = read_run_metadata(candidate)
            if metadata:
                break
    if adapter and not model:
        config_path = Path(adapter) / "adapter_config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{adapter}: no adapter_config.json; pass --model too")
        model = json.loads(config_path.read_text(encoding="utf-8"))["base_model_name_or_path"]
    if not model:
        raise ValueError("--model is required (hub id or local directory)")
    notes = []
    if prompt:
        template = load_prompt(prompt)
        source = "command line"
    elif metadata:
        template = load_prompt(Path(metadata["_dir"]) / metadata.get("prompt", PROMPT_COPY))
        source = f"training run {metadata['_dir']}"
    else:
        template = load_prompt(DEFAULT_PROMPT)
        source = "defaults"
        notes.append(f"no training metadata (llm_ner.json) found; using prompt {DEFAULT_PROMPT}")
    fmt = answer_format or (metadata or {}).get("answer_format") or "mentions"
    return RunSettings(model, adapter, template, fmt, source, notes)


# ---------------------------------------------------------------------------------------------
# Resumable output


def _read_records(path: Path, repair: bool = False) -> list[dict]:
    """Complete JSON lines of a file; with ``repair`` a torn last line is cut off the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    records, good_end, position = [], 0, 0
    for line in raw.split(b"\n")[:-1] if raw.endswith(b"\n") else raw.split(b"\n"):
        end = position + len(line) + 1
        if end > len(raw) or not raw[position:end].endswith(b"\n"):
            break  # no newline: a line torn by a kill
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        good_end, position = end, end
    if repair and good_end < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return records


class ResumableOutput:
    """Per-process part files beside the output, merged into it in input order at the end."""

    def __init__(self, output: str | Path, rank: int = 0):
        self.output = Path(output)
        self.parts = self.output.with_name(self.output.name + ".parts")
        self.part = self.parts / f"rank-{rank}.jsonl"

    def done_ids(self) -> set[str]:
        records = _read_records(self.output)
        for part in sorted(self.parts.glob("rank-*.jsonl")) if self.parts.is_dir() else []:
            records += _read_records(part, repair=part == self.part)
        return {str(r["id"]) for r in records if "id" in r}

    def append(self, records: Sequence[dict]) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        with open(self.part, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())

    def clear(self) -> None:
        """Forget earlier results: remove the output and the part files."""
        self.output.unlink(missing_ok=True)
        if self.parts.is_dir():
            for part in self.parts.glob("rank-*.jsonl"):
                part.unlink()
            self.parts.rmdir()

    def merge(self, order: Sequence[str]) -> int:
        """Write OUTPUT with every finished record in input order; remove the parts."""
        by_id = {str(r["id"]): r for r in _read_records(self.output)}
        for part in sorted(self.parts.glob("rank-*.jsonl")) if self.parts.is_dir() else []:
            for record in _read_records(part):
                by_id[str(record["id"])] = record
        tmp = self.output.with_name(f".{self.output.name}.tmp")
        count = 0
        with open(tmp, "w", encoding="utf-8") as handle:
            for record_id in order:
                if record_id in by_id:
                    handle.write(json.dumps(by_id[record_id], ensure_ascii=False) + "\n")
                    count += 1
        os.replace(tmp, self.output)
        if self.parts.is_dir():
            for part in self.parts.glob("rank-*.jsonl"):
                part.unlink()
            self.parts.rmdir()
        return count


# ---------------------------------------------------------------------------------------------
# Extraction


def make_record(
    example: Example,
    pieces: list[tuple[int, str]],
    answers: list[str],
    prompt: PromptTemplate,
    token_scores: list | None = None,
) -> tuple[dict, ParseStats]:
    """The output record of one sentence from the answers of its pieces.

    ``token_scores[k]`` = (char ranges of the tokens, their log-probabilities) of answer k adds the
    entity ``scores`` and the ``answer_score`` (see `llm_ner.confidence`).
    """
    stats = ParseStats()
    spans: set[Span] = set()
    scores: dict[Span, float] = {}
    for k, ((offset, piece), answer) in enumerate(zip(pieces, answers)):
        if token_scores is not None:
            ranges, logprobs = token_scores[k]
            piece_spans, piece_stats, piece_scores = answer_to_scored_spans(
                piece, answer, ranges, logprobs, prompt.schema
            )
            scores.update({Span(s.start + offset, s.end + offset, s.label): v for s, v in piece_scores.items()})
        else:
            piece_spans, piece_stats = answer_to_spans(piece, answer, prompt.schema)
        stats += piece_stats
        spans.update(Span(s.start + offset, s.end + offset, s.label) for s in piece_spans)
    predicted = Example(example.id, example.text, sorted(spans))
    record = example_to_cluener(predicted)
    if token_scores is not None:
        record["scores"] = scores_field(predicted, scores)
        logprobs = [value for _, values in token_scores for value in values]
        record["answer_score"] = round(math.exp(sum(logprobs) / len(logprobs)), 6) if logprobs else None
    record["raw"] = answers[0] if len(answers) == 1 else answers
    record["parse"] = {k: v for k, v in stats.as_dict().items() if v}
    return record, stats


def extract(
    model,
    tokenizer,
    examples: Sequence[Example],
    settings: RunSettings,
    output: str | Path,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    constrained: bool = False,
    max_chars: int = 256,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
) -> ParseStats:
    """Extract entities for this process's share of ``examples`` into the part files.

    Call `ResumableOutput.merge` afterwards (on one process) to write the final file.
    """
    from tqdm.auto import tqdm

    from .generation import generate_answers, token_char_ranges

    store = ResumableOutput(output, rank)
    done = store.done_ids()
    mine = [ex for i, ex in enumerate(examples) if i % world == rank and ex.id not in done]
    totals = ParseStats()
    # Whole length-sorted batches keep padding low; records are written after every batch.
    pieces_of = {ex.id: split_long(ex.text, max_chars) for ex in mine}
    by_length = sorted(range(len(mine)), key=lambda i: -len(mine[i].text))
    bar = tqdm(
        total=len(mine),
        unit="sent",
        desc=f"extract[{rank}]" if world > 1 else "extract",
        disable=not progress,
        dynamic_ncols=True,
    )
    processor_factory = None
    if constrained:
        from .constrained import MentionsConstraint

        processor_factory = MentionsConstraint.for_tokenizer(tokenizer, settings.prompt.schema.keys)
    try:
        for start in range(0, len(by_length), batch_size):
            batch = [mine[i] for i in by_length[start : start + batch_size]]
            texts = [piece for ex in batch for _, piece in pieces_of[ex.id]]
            conversations = [settings.prompt.messages(piece, settings.answer_format) for piece in texts]
            token_logprobs: list = []
            answers = generate_answers(
                model,
                tokenizer,
                conversations,
                texts=texts,
                batch_size=len(texts),
                max_new_tokens=max_new_tokens,
                logits_processor_factory=processor_factory,
                token_logprobs=token_logprobs,
            )
            token_scores = [
                (token_char_ranges(tokenizer, ids, answer), logprobs)
                for (ids, logprobs), answer in zip(token_logprobs, answers)
            ]
            records, cursor = [], 0
            for ex in batch:
                n = len(pieces_of[ex.id])
                record, stats = make_record(
                    ex,
                    pieces_of[ex.id],
                    answers[cursor : cursor + n],
                    settings.prompt,
                    token_scores[cursor : cursor + n],
                )
                cursor += n
                totals += stats
                records.append(record)
            store.append(records)
            bar.update(len(batch))
    finally:
        bar.close()
    return totals


def summarize(stats: ParseStats) -> str:
    """One line of parse counters for the end of a run."""
    parts = [f"{stats.answers} answers", f"{stats.aligned} entities"]
    for name in (
        "parse_failures",
        "hallucinated",
        "unknown_label",
        "duplicates",
        "invalid_items",
        "repaired",
        "normalized",
    ):
        value = getattr(stats, name)
        if value:
            parts.append(f"{value} {name.replace('_', ' ')}")
    return ", ".join(parts)


def run_extraction(args) -> int:
    """`llm-ner extract`: load, shard, extract, merge (arguments from the CLI parser)."""
    from accelerate import PartialState

    from .generation import load_model

    state = PartialState(cpu=args.device == "cpu")
    settings = resolve_settings(args.model, args.adapter, args.prompt, args.format)
    examples = read_inputs(args.input, args.input_format, lenient=args.lenient)
    if args.limit:
        examples = examples[: args.limit]
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise DataError(args.input, None, "duplicate ids in the input")
    if state.is_main_process:
        for note in settings.notes:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"prompt {settings.prompt.name} ({settings.source}), format {settings.answer_format}, "
            f"{len(examples)} sentences",
            file=sys.stderr,
        )
    if args.restart and state.is_main_process:
        ResumableOutput(args.output).clear()
    state.wait_for_everyone()
    device = args.device or (f"cuda:{state.local_process_index}" if _cuda() else "cpu")
    model, tokenizer = load_model(
        settings.model, settings.adapter, dtype=args.dtype, device=device, load_in_4bit=args.load_in_4bit
    )
    interrupted = False
    stats = ParseStats()
    try:
        stats = extract(
            model,
            tokenizer,
            examples,
            settings,
            args.output,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            constrained=args.constrained,
            max_chars=args.max_chars,
            rank=state.process_index,
            world=state.num_processes,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        done = len(ResumableOutput(args.output).done_ids())
        print(f"interrupted: {done}/{len(examples)} sentences saved; rerun the same command to resume", file=sys.stderr)
        return 130
    state.wait_for_everyone()
    if state.is_main_process:
        written = ResumableOutput(args.output).merge(ids)
        print(
            f"this run: {summarize(stats)}" + (" (process 0 only)" if state.num_processes > 1 else ""), file=sys.stderr
        )
        print(f"wrote {written} records to {args.output}", file=sys.stderr)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
