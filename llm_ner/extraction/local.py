"""`llm-ner extract` on this machine: batches of pieces through the annotator into resumable part files.

Output is CLUENER JSON lines (``id``, ``text``, ``label`` with inclusive ends, ready for `llm-ner evaluate`)
plus, per record, the raw generation and the parse counters. Work is appended batch by batch to
``OUTPUT.parts/rank-K.jsonl`` (flushed and synced), so an interrupted run loses at most the batch in flight and
a rerun skips finished ids; when all sentences are done the parts are merged into OUTPUT in input order. Under
``accelerate launch --num_processes N`` each process takes every N-th sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..answer_format import get_format
from ..backends import Backend
from ..backends.openai import OpenAIBackend, OpenAIOptions
from ..data import Example, read_inputs
from ..errors import LlmNerError
from ..logs import progress_bar
from ..parsing import ParseStats
from .annotator import Annotator
from .options import ExtractOptions, ModelOptions
from .resume import ResumableOutput, extraction_fingerprint, interrupted_line
from .settings import RunSettings, run_settings

log = logging.getLogger(__name__)


def make_backend(
    model_options: ModelOptions,
    settings: RunSettings,
    openai_options: OpenAIOptions | None = None,
    device: str | None = None,
    **fields,
) -> Backend:
    """The backend that answers a run: a client of the server of ``openai_options`` (not yet checked:
    call its ``check``), else the model loaded here on ``device`` (``fields``: batch_size, token_scores of
    `LocalBackend`)."""
    if openai_options is not None:
        answer_format = get_format(settings.answer_format)
        schema = answer_format.json_schema(settings.prompt.schema) if model_options.constrained else None
        return OpenAIBackend.from_options(openai_options, model_options.max_new_tokens, schema)
    from ..backends import LocalBackend

    return LocalBackend.load(
        settings.model,
        settings.adapter,
        dtype=model_options.dtype,
        device=device,
        load_in_4bit=model_options.load_in_4bit,
        constrained_labels=settings.prompt.schema.keys if model_options.constrained else None,
        max_new_tokens=model_options.max_new_tokens,
        **fields,
    )


def extract(
    annotator: Annotator,
    examples: Sequence[Example],
    output: str | Path,
    batch_size: int = 64,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> ParseStats:
    """Extract entities for this process's share of ``examples`` (``shard`` = (rank, world)) into the part files.

    Pieces of long sentences join the others in length-sorted batches of ``batch_size`` pieces (low padding,
    bounded memory); a sentence's record is written once all its pieces are answered. Call
    `ResumableOutput.merge` afterwards (on one process) to write the final file.
    """
    rank, world = shard
    store = ResumableOutput(output, rank)
    done = store.done_ids()
    mine = [ex for i, ex in enumerate(examples) if i % world == rank and ex.id not in done]
    totals = ParseStats()
    pieces_of = {ex.id: annotator.pieces(ex.text) for ex in mine}
    work = [(ex, k) for ex in mine for k in range(len(pieces_of[ex.id]))]
    work.sort(key=lambda item: -len(pieces_of[item[0].id][item[1]][1]))
    answers_of: dict[str, list] = {ex.id: [None] * len(pieces_of[ex.id]) for ex in mine}
    with progress_bar(len(mine), "extract" if world == 1 else f"extract[{rank}]", progress) as bar:
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            answered = annotator.answer([pieces_of[ex.id][k][1] for ex, k in batch], [ex.text for ex, _ in batch])
            records = []
            for (ex, k), answer in zip(batch, answered):
                answers_of[ex.id][k] = answer
                if all(a is not None for a in answers_of[ex.id]):
                    record, stats = annotator.record(ex, answers_of.pop(ex.id))
                    totals += stats
                    records.append(record)
            if records:
                store.append(records)
                bar.update(len(records))
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


@dataclass
class _Run:
    """One `run_extraction`: its options, settings, the inputs and the process group it runs in."""

    model_options: ModelOptions
    extract_options: ExtractOptions
    openai_options: OpenAIOptions | None
    state: object  # accelerate's PartialState

    @property
    def remote(self) -> bool:
        return self.openai_options is not None

    def device(self) -> str | None:
        """The device of a model loaded here (checked before --restart can discard anything)."""
        if self.remote:
            return None
        import torch

        from ..generation import check_device

        index = self.state.local_process_index
        device = self.model_options.device or (f"cuda:{index}" if torch.cuda.is_available() else "cpu")
        return check_device(device, self.model_options.load_in_4bit)

    def prepare(self, settings: RunSettings, examples: Sequence[Example], all_examples: Sequence[Example]) -> None:
        """Refuse earlier results of other settings or inputs (every process, so a refusal stops them all), then
        on the main process say what runs, clear on --restart and record the fingerprint."""
        options = self.extract_options
        fingerprint = extraction_fingerprint(settings, self.model_options, self.openai_options)
        store = ResumableOutput(options.output, self.state.process_index)
        if not options.restart:
            store.check(fingerprint, {ex.id: ex.text for ex in all_examples})
        if self.state.is_main_process:
            for note in settings.notes:
                log.info("note: %s", note)
            log.info(
                "prompt %s (%s), format %s, %d sentences",
                settings.prompt.name,
                settings.source,
                settings.answer_format,
                len(examples),
            )
            if options.restart:
                store.clear()
            store.start(fingerprint)
        self.state.wait_for_everyone()

    def finish(self, stats: ParseStats, all_ids: Sequence[str]) -> None:
        """Merge the parts on the main process, report, and raise `parse_failure_error`'s error (after the merge:
        the records are kept for a look at the raw answers)."""
        unusable = None
        output = self.extract_options.output
        self.state.wait_for_everyone()  # every process's part file complete before the merge
        if self.state.is_main_process:
            written = ResumableOutput(output).merge(all_ids)  # earlier records beyond --limit are kept
            shared = " (process 0 only)" if self.state.num_processes > 1 else ""
            log.info("this run: %s%s", summarize(stats), shared)
            log.info("wrote %d records to %s", written, output)
            unusable = parse_failure_error(output, self.extract_options.max_parse_failures)
        self.state.wait_for_everyone()
        self.state.destroy_process_group()  # see training.run: an open group can abort the exit
        if unusable is not None:
            raise unusable


def run_extraction(
    model_options: ModelOptions, extract_options: ExtractOptions, openai_options: OpenAIOptions | None = None
) -> int:
    """`llm-ner extract`: load, shard, extract, merge; 0, or 130 when interrupted (resumable).

    ``openai_options``: ask that OpenAI-compatible server instead of loading the model here.
    """
    from accelerate import PartialState

    remote = openai_options is not None
    run = _Run(
        model_options, extract_options, openai_options, PartialState(cpu=model_options.device == "cpu" or remote)
    )
    device = run.device()
    # The openai backend loads no model: the served model's name stands in for --model.
    settings = run_settings(model_options, openai_options.served_model if remote else None)
    settings.check_prompt_budget_early(served=remote)  # before --restart can discard anything
    backend: Backend | None = None
    if remote:  # the server and its model checked before --restart can discard anything
        backend = make_backend(model_options, settings, openai_options=openai_options)
        backend.check()
    all_examples = read_inputs(extract_options.input, extract_options.input_format, lenient=extract_options.lenient)
    examples = all_examples[: extract_options.limit] if extract_options.limit else all_examples
    run.prepare(settings, examples, all_examples)
    annotator = Annotator(  # prompts over the budget: counted, reported at the end
        backend or make_backend(model_options, settings, device=device),
        settings,
        model_options.max_chars,
        warn_over_budget=False,
    )
    batch_size = extract_options.batch_size
    if remote:
        batch_size = max(batch_size, openai_options.concurrency)
    shard = (run.state.process_index, run.state.num_processes)
    try:
        stats = extract(annotator, examples, extract_options.output, batch_size, shard, not extract_options.quiet)
    except KeyboardInterrupt:
        log.warning(interrupted_line(len(ResumableOutput(extract_options.output).done_ids()), len(examples)))
        return 130
    finally:
        annotator.close()
    if settings.shot_pool is not None and run.state.is_main_process:
        counts = annotator.shot_counts
        line = counts.line(settings.shots, len(settings.shot_pool), settings.max_prompt_tokens)
        shared = " (process 0 only)" if run.state.num_processes > 1 else ""
        log.log(logging.WARNING if counts.over_budget else logging.INFO, "%s%s", line, shared)
    run.finish(stats, [ex.id for ex in all_examples])
    return 0


def parse_failure_error(output: str | Path, max_share: float | None = None) -> LlmNerError | None:
    """The error (exit status 1) of a finished output whose answers could not be parsed: more than
    ``max_share`` of them (`--max-parse-failures`), or all of them when None. Counted over every record
    of the file (all processes, resumed records too): the file is what gets evaluated."""
    from ..report.inputs import parse_counters, parse_failure_line

    counts = parse_counters(output) or {}
    failures, answers = counts.get("parse_failures", 0), counts.get("answers", 0)
    if not answers or (failures < answers if max_share is None else failures <= max_share * answers):
        return None
    allowed = "every answer failed" if max_share is None else f"more than --max-parse-failures {max_share:g}"
    return LlmNerError(
        f"{output}: {parse_failure_line(counts)}; {allowed}. Check that the model is fine-tuned for this prompt "
        "and answer format (--prompt, --format; an adapter's own are used by default)"
    )
