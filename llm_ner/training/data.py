"""Training data: CLUENER/BIO files (or `llm-ner convert` output) as TRL's conversational prompt-completion
records, the run's prompt and answer format (adopted from a converted file's sidecar, `resolve_prompt`), retrieved
shots (`train_shots`), the fixed F1 subset of the dev set, and the length checks before training starts."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from ..data import Example, JsonValueError, decode_json, load_examples, read_lines, read_lines_or_errors
from ..errors import DataError, UsageError
from ..generation.tokens import chat_prompt_ids
from ..prompting import (
    DEFAULT_PROMPT,
    Conversion,
    PromptTemplate,
    conversion_sidecar,
    load_prompt,
    prompt_identity,
    read_conversion,
    to_conversation,
)
from .config import CHAT_TEMPLATE_KWARGS, DEFAULT_ANSWER_FORMAT, NERDataArguments

log = logging.getLogger(__name__)


def _is_conversation_file(path: str) -> bool:
    for _, line in read_lines_or_errors(Path(path)):
        if isinstance(line, DataError):
            return False  # not UTF-8: not a conversation file; the data reader names the line
        if line.strip():
            try:
                first = decode_json(line)
            except ValueError:  # JsonValueError too: then not a conversation file; its reader says why
                return False
            return isinstance(first, dict) and "prompt" in first and "completion" in first
    return False


def load_split(
    path: str, data_args: NERDataArguments, prompt: PromptTemplate, limit: int | None = None
) -> tuple[list[Example] | None, list[dict], PromptTemplate]:
    """Examples (None for `convert` output) and prompt-completion records of one file."""
    if _is_conversation_file(path):
        records = []
        for number, line in read_lines(Path(path)):
            if not line.strip():
                continue
            try:
                record = decode_json(line)
            except JsonValueError as exc:  # nesting, huge numbers, lone surrogates: one line, not a traceback
                raise DataError(path, number, exc.reason) from None
            try:
                records.append({"prompt": record["prompt"], "completion": record["completion"]})
            except (KeyError, TypeError):
                raise DataError(path, number, "not a prompt-completion record (run `llm-ner convert`)") from None
        records = records[:limit]
        for record in records:
            record["chat_template_kwargs"] = CHAT_TEMPLATE_KWARGS
        return None, records, prompt
    labels = prompt.schema.keys if prompt.schema else None
    examples, report = load_examples(path, data_args.input_format, labels=labels, lenient=data_args.lenient)
    if report.skipped or report.warnings:
        report.print()
    examples = examples[:limit]
    if prompt.schema is None:
        prompt = prompt.with_labels(s.label for ex in examples for s in ex.spans)
    records = []
    for ex in examples:
        record = to_conversation(ex, prompt, data_args.answer_format or DEFAULT_ANSWER_FORMAT)
        records.append(
            {
                "prompt": record["prompt"],
                "completion": record["completion"],
                "chat_template_kwargs": CHAT_TEMPLATE_KWARGS,
            }
        )
    return examples, records, prompt


def add_retrieved_shots(
    examples: list[Example], records: list[dict], prompt: PromptTemplate, answer_format: str, pool, k: int
) -> None:
    """Put the ``k`` sentences of ``pool`` most similar to each example (never the example itself) into its
    record's prompt as worked examples, as `extract --shots K --shot-selection similar` does (in place)."""
    chosen = pool.select_many([ex.text for ex in examples], k)
    for example, record, shots in zip(examples, records, chosen):
        record["prompt"] = prompt.messages(example.text, answer_format, shots)


def _describe(conversion: Conversion) -> str:
    return f"prompt {conversion.prompt.name} ({conversion.prompt_identity})"


def resolve_prompt(data_args: NERDataArguments, warn=None) -> tuple[PromptTemplate, str]:
    """The run's prompt and answer format, read before any model loads.

    A converted train_file or eval_file (`llm-ner convert` output) with its sidecar brings the prompt and
    answer format its records were made with: they are adopted, and ``prompt`` / ``answer_format``
    arguments naming others (by content, not name) are refused with a `UsageError` naming both, as are a
    train and an eval file converted differently. Otherwise the arguments', by default cluener_zh and
    mentions. A converted file without a sidecar (older llm-ner), or rewritten since its sidecar was
    written, is used as it is with a warning (``warn``, default stderr) that its prompt was not checked.
    """
    warn = warn or (lambda message: log.warning(f"warning: {message}"))
    converted: list[tuple[str, str, Conversion]] = []
    unchecked: list[str] = []
    for option, path in (("train_file", data_args.train_file), ("eval_file", data_args.eval_file)):
        if not path or not Path(path).is_file() or not _is_conversation_file(path):
            continue
        conversion = read_conversion(path)
        if conversion is None:
            unchecked.append(f"{option} {path} has no {conversion_sidecar(path).name} (converted by an older llm-ner?)")
        elif not conversion.describes(path):
            unchecked.append(f"{option} {path} changed after {conversion_sidecar(path).name} was written")
        else:
            converted.append((option, path, conversion))

    asked = load_prompt(data_args.prompt) if data_args.prompt else None
    for option, path, conversion in converted:
        if asked is not None:
            wanted = asked if asked.schema else asked.with_labels(conversion.prompt.schema.keys)
            if prompt_identity(wanted) != conversion.prompt_identity:
                raise UsageError(
                    f"{option} {path} was converted with {_describe(conversion)}; the config or command line "
                    f"says prompt {data_args.prompt} ({prompt_identity(wanted)}): drop one, or convert again "
                    f"with --prompt {data_args.prompt}"
                )
        if data_args.answer_format and data_args.answer_format != conversion.answer_format:
            raise UsageError(
                f"{option} {path} was converted with --format {conversion.answer_format}; the config or command "
                f"line says answer_format {data_args.answer_format}: drop one, or convert again with "
                f"--format {data_args.answer_format}"
            )
    if len(converted) == 2:
        (_, train_path, train), (_, eval_path, dev) = converted
        if (train.prompt_identity, train.answer_format) != (dev.prompt_identity, dev.answer_format):
            raise UsageError(
                f"train_file {train_path} was converted with {_describe(train)}, --format {train.answer_format}; "
                f"eval_file {eval_path} with {_describe(dev)}, --format {dev.answer_format}: convert both alike"
            )

    if converted:
        prompt, answer_format = converted[0][2].prompt, converted[0][2].answer_format
    else:
        prompt, answer_format = asked or load_prompt(DEFAULT_PROMPT), data_args.answer_format or DEFAULT_ANSWER_FORMAT
    for reason in unchecked:
        warn(f"{reason}: its prompt could not be checked; the run records prompt {prompt.name}, {answer_format}")
    return prompt, answer_format


def f1_subset(examples: list[Example], size: int, seed: int) -> list[Example]:
    """A fixed, seeded sample of dev sentences for F1 during training (in file order)."""
    if size <= 0 or not examples:
        return []
    if size >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), size))
    return [examples[i] for i in chosen]


def check_lengths(trainer, records: dict[str, list[dict]], max_length: int | None) -> None:
    """Stop before training when ``max_length`` leaves a split no example; warn when it drops or cuts some.

    TRL cuts every tokenized example to ``max_length`` and silently drops those whose prompt alone
    fills it (no answer token left to learn): an eval set dropped whole used to train for hours and
    then fail in the final evaluation with ``IndexError: Invalid key: 0 is out of bounds for size 0``.
    ``records`` maps a split name to the records given to the trainer; the trainer's prepared datasets
    say what is left.
    """
    if max_length is None:
        return
    datasets = {"train": trainer.train_dataset, "eval": trainer.eval_dataset}
    for split, given in records.items():
        prepared = datasets.get(split)
        if not given or prepared is None or not hasattr(prepared, "__len__"):
            continue
        # Counted here, not from what TRL kept: older TRL (our floor, 1.8) keeps such examples, cut short.
        lengths = [len(chat_prompt_ids(trainer.processing_class, r["prompt"])) for r in given]
        dropped = sum(length >= max_length for length in lengths)
        if dropped == len(given):
            raise UsageError(
                f"max_length={max_length} leaves no {split} example: every prompt alone is at least that long "
                f"({min(lengths)} to {max(lengths)} tokens); raise max_length or use a shorter prompt"
            )
        if dropped and trainer.accelerator.is_main_process:
            log.warning(
                f"warning: max_length={max_length} drops {dropped} of {len(given)} {split} examples "
                "(their prompt alone fills it)"
            )
        if "input_ids" not in prepared.column_names or not trainer.accelerator.is_main_process:
            continue
        cut = sum(len(ids) >= max_length for ids in prepared["input_ids"])
        if cut:
            log.warning(
                f"warning: {cut} of {len(prepared)} {split} examples reach max_length={max_length} "
                "(cut there, an answer loses its end)"
            )
