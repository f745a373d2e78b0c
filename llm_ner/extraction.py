"""Batch extraction: run a fine-tuned model over many sentences and write exact spans.

Output is CLUENER JSON lines (``id``, ``text``, ``label`` with inclusive ends, ready for
`llm-ner evaluate`) plus, per record, the raw generation and the parse counters. Work is
appended batch by batch to ``OUTPUT.parts/rank-K.jsonl`` (flushed and synced), so an
interrupted run loses at most the batch in flight and a rerun skips finished ids; when all
sentences are done the parts are merged into OUTPUT in input order. Under
``accelerate launch --num_processes N`` each process takes every N-th sentence.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .answer_format import ANSWER_FORMATS, answer_to_scored_spans, answer_to_spans, get_format
from .backend import Answer, Backend, LocalBackend
from .confidence import scores_field
from .data import (
    SENTENCE_INPUT_FORMATS,
    Example,
    Span,
    example_to_cluener,
    read_inputs,
    split_long,
    write_jsonl_atomic,
    write_text_atomic,
)
from .errors import LlmNerError, ResumeMismatch, UsageError
from .openai_backend import OpenAIBackend, OpenAIOptions
from .options import CliOptions, device_name, fraction, non_negative_int, option, positive_int
from .parsing import ParseStats
from .prompting import DEFAULT_PROMPT, PromptTemplate, load_prompt, prompt_identity
from .run_dir import RUN_RECORD, RunRecord, adapter_base_model
from .shots import SHOT_SELECTIONS, ShotPool, TokenCounter, few_shot_messages, prompt_token_counter

DTYPES = ("auto", "float32", "bfloat16", "float16")

# ---------------------------------------------------------------------------------------------
# Options


@dataclass
class ModelOptions(CliOptions):
    """The model, prompt and decoding of a run: shared by `llm-ner extract` and `llm-ner serve`."""

    model: str | None = option(None, help="model: hub id or local directory (default: the adapter's base model)")
    adapter: str | None = option(None, help="LoRA adapter directory (a training output)")
    prompt: str | None = option(None, help="prompt YAML or name (default: the one saved at training time)")
    answer_format: str | None = option(
        None, flag="--format", choices=ANSWER_FORMATS, help="answer format (default: as trained)"
    )
    max_new_tokens: int | None = option(None, type=positive_int, help="answer length bound (default: from text length)")
    max_chars: int = option(
        256, type=positive_int, help="split longer texts at punctuation, spans shifted back (default: %(default)s)"
    )
    constrained: bool = option(
        False, help="constrained decoding: answers always parse, entities are substrings, labels known"
    )
    dtype: str = option(
        "auto",
        choices=DTYPES,
        help="auto: bf16 on GPU or on a CPU with bf16 instructions (AVX512-BF16, AMX), else float32",
    )
    device: str | None = option(None, type=device_name, help="cpu, cuda, cuda:1 (default: the process's GPU, else CPU)")
    load_in_4bit: bool = option(False, help="load the base model in 4-bit (bitsandbytes)")
    shots: int = option(
        0,
        type=non_negative_int,
        metavar="K",
        help="few-shot: before each sentence, K labelled sentences of --shots-from as user/assistant turns in the "
        "run's answer format (default: %(default)s, zero-shot)",
    )
    shots_from: str | None = option(
        None,
        metavar="FILE",
        help="the labelled sentences shots come from (CLUENER JSON lines or BIO/BIOES/BMES; labels must be the "
        "prompt's). A shot whose text equals the sentence asked about is never used, so a run over the shots "
        "file itself does not see its answers",
    )
    shot_selection: str = option(
        "similar",
        choices=SHOT_SELECTIONS,
        help="similar: the K most similar sentences (cosine of TF-IDF character 1-2-grams, ties to the earlier "
        "line), the most similar nearest the question; random: K drawn per sentence from --shot-seed and its text "
        "(resumed and sharded runs draw the same); fixed: the first K of the file (default: %(default)s)",
    )
    shot_seed: int = option(
        0, type=non_negative_int, metavar="N", help="seed of --shot-selection random (default: %(default)s)"
    )
    max_prompt_tokens: int | None = option(
        None,
        type=positive_int,
        metavar="N",
        help="drop shots, the least similar (lowest ranked) first, until a prompt has at most N tokens: counted "
        "with the model's tokenizer; with --backend openai, bounded as UTF-8 bytes + 16 per message (never fewer "
        "than a byte-level BPE tokenizer such as Qwen's counts; a Chinese character counts 3)",
    )

    def __post_init__(self) -> None:
        if self.shots and not self.shots_from:
            raise UsageError("--shots needs --shots-from (the labelled sentences to take them from)")
        if self.shots_from and not self.shots:
            raise UsageError("--shots-from needs --shots K (how many shots per sentence)")
        if self.max_prompt_tokens is not None and not self.shots:
            raise UsageError("--max-prompt-tokens bounds the prompt by dropping shots: it needs --shots")

    def settings(self, served_model: str | None = None) -> RunSettings:
        """The run's settings (prompt and format from training unless given) and, with ``shots``, the
        shot pool; ``served_model``: the name a server answers to, standing in for ``model`` when no model
        is given."""
        served = served_model is not None and not self.model
        model = served_model if served else self.model
        settings = resolve_settings(model, self.adapter, self.prompt, self.answer_format, self.constrained, served)
        if self.shots:
            if not Path(self.shots_from).is_file():
                raise UsageError(f"--shots-from {self.shots_from}: no such file")
            schema = settings.prompt.schema
            pool = ShotPool.load(self.shots_from, schema.keys if schema else None, self.shot_selection, self.shot_seed)
            settings.shot_pool, settings.shots, settings.max_prompt_tokens = pool, self.shots, self.max_prompt_tokens
            settings.notes.append(
                f"{self.shots} {self.shot_selection} shots per sentence from {self.shots_from} "
                f"({len(pool)} labelled sentences)"
            )
        return settings

    def local_backend(self, settings: RunSettings, device: str | None, **fields) -> LocalBackend:
        """Load the settings' model here (``fields``: batch_size, token_scores of `LocalBackend`)."""
        return LocalBackend.load(
            settings.model,
            settings.adapter,
            dtype=self.dtype,
            device=device,
            load_in_4bit=self.load_in_4bit,
            constrained_labels=settings.prompt.schema.keys if self.constrained else None,
            max_new_tokens=self.max_new_tokens,
            **fields,
        )


@dataclass
class ExtractOptions(CliOptions):
    """The input, output and batching of `llm-ner extract` (the model: `ModelOptions`)."""

    input: str | Path = option(
        required=True,
        help='plain text (one sentence a line), JSON lines with "text" (and "id"), CLUENER or BIO files',
    )
    output: str | Path = option(required=True, help="CLUENER JSON lines for `llm-ner evaluate`")
    input_format: str = option("auto", choices=SENTENCE_INPUT_FORMATS)
    batch_size: int = option(64, type=positive_int, help="sentences (or pieces) per batch (default: %(default)s)")
    limit: int | None = option(None, type=positive_int, help="only the first N sentences")
    restart: bool = option(False, help="discard earlier results instead of resuming")
    lenient: bool = option(False, help="skip bad input records instead of stopping")
    quiet: bool = option(False, help="no progress bar")
    max_parse_failures: float | None = option(
        None,
        type=fraction,
        metavar="X",
        help="exit with status 1 when more than this share (0-1) of the answers could not be parsed; the "
        "records are written all the same (default: only when no answer could be parsed)",
    )


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
    shot_pool: ShotPool | None = None  # few-shot: where the ``shots`` per sentence come from
    shots: int = 0
    max_prompt_tokens: int | None = None

    def conversations(self, texts: Sequence[str], count_tokens: TokenCounter | None = None) -> list[list[dict]]:
        """The conversation of each text: the prompt, and the text's shots (within ``max_prompt_tokens``
        as ``count_tokens`` counts) when the run has them."""
        if self.shot_pool is None or not self.shots:
            return [self.prompt.messages(text, self.answer_format) for text in texts]
        chosen = self.shot_pool.select_many(texts, self.shots)
        return [
            few_shot_messages(self.prompt, text, self.answer_format, shots, self.max_prompt_tokens, count_tokens)
            for text, shots in zip(texts, chosen)
        ]


def resolve_settings(
    model: str | None,
    adapter: str | None = None,
    prompt: str | None = None,
    answer_format: str | None = None,
    constrained: bool = False,
    served: bool = False,
) -> RunSettings:
    """Use the prompt and format saved at training time unless given explicitly; `UsageError` for
    constrained decoding of a format it does not support (also when the format comes from training).
    ``served``: ``model`` names a server's model (vLLM names it by its path there), not a directory here."""
    record = None
    for candidate in (adapter, model):
        if candidate and Path(candidate).is_dir():
            record = RunRecord.find(candidate)
            if record is not None:
                break
    if adapter and not model:
        model = adapter_base_model(adapter)  # pass --model to name the base when the adapter does not
    if not model:
        raise UsageError("--model is required (hub id or local directory)")
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1  # hub ids are org/name
    if looks_like_path and not served and not Path(model).expanduser().is_dir():
        raise UsageError(f"--model {model}: no such directory (a hub id looks like org/name)")
    notes = []
    if prompt:
        try:
            template = load_prompt(prompt)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"--prompt: {exc}") from None
        source = "command line"
    elif record is not None:
        template = record.load_prompt()
        source = f"training run {record.directory}"
    else:
        template = load_prompt(DEFAULT_PROMPT)
        source = "defaults"
        notes.append(f"no training metadata ({RUN_RECORD}) found; using prompt {DEFAULT_PROMPT}")
    fmt = answer_format or (record.answer_format if record is not None else None) or "mentions"
    if constrained and not (fmt in ANSWER_FORMATS and get_format(fmt).constrained):
        raise UsageError(f"--constrained supports the mentions answer format only (this run's format: {fmt})")
    return RunSettings(model, adapter, template, fmt, source, notes)


# ---------------------------------------------------------------------------------------------
# Resumable output


def read_json_lines(path: Path, repair: bool = False) -> Iterator:
    """The complete JSON lines of a file, streamed; with ``repair`` a torn last line is cut off the file."""
    good_end = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # no newline: a line torn by a kill
            try:
                value = json.loads(line)
            except ValueError:
                break
            good_end += len(line)
            yield value
    if repair and good_end < path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_end)


def _read_records(path: Path, repair: bool = False) -> list[dict]:
    """Complete JSON lines of a file (none if it is missing); with ``repair`` a torn last line is cut off."""
    return list(read_json_lines(path, repair)) if path.is_file() else []


RUN_FILE = "run.json"


def file_identity(path: Path, max_hash_bytes: int = 64 << 20) -> str:
    """sha256 of a small file; size and modification time of a large one (weights of a real model)."""
    stat = path.stat()
    if stat.st_size <= max_hash_bytes:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"size:{stat.st_size} mtime_ns:{stat.st_mtime_ns}"


def directory_identity(path: str | None) -> str | None:
    """A content identity of a local model or adapter directory (None for a hub id)."""
    if not path or not Path(path).is_dir():
        return None
    names = ("*.json", "*.safetensors", "*.bin", "*.pt")
    files = sorted({f for pattern in names for f in Path(path).glob(pattern) if f.is_file()})
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}={file_identity(f)}\n".encode())
    return "sha256:" + digest.hexdigest()[:16]


def run_fingerprint(settings: RunSettings, **options) -> dict:
    """The settings an output's records depend on, compared key by key on a resume.

    Another backend adds its own keys (e.g. a server's base URL and served model name).
    """
    return {
        "backend": "transformers",
        "model": settings.model,
        "model_files": directory_identity(settings.model),
        "adapter": settings.adapter,
        "adapter_files": directory_identity(settings.adapter),
        "prompt": f"{settings.prompt.name} {prompt_identity(settings.prompt)}",
        "answer_format": settings.answer_format,
        **options,
    }


# How a refused resume ends: the two ways out.
RESTART_HINT = "use --restart to discard them, or choose another --output"


def settings_differences(earlier: dict, now: dict) -> list[str]:
    """Key by key, how two run fingerprints differ: what a refused resume names."""
    return [
        f"{key}: {earlier.get(key)!r} then, {now.get(key)!r} now"
        for key in sorted(set(earlier) | set(now))
        if earlier.get(key) != now.get(key)
    ]


class ResumableOutput:
    """Per-process part files beside the output, merged into it in input order at the end.

    The run's fingerprint is kept in ``OUTPUT.parts/run.json`` while it runs and in
    ``OUTPUT.run.json`` beside the finished output; earlier results are reused only when it is equal
    and every earlier record's text equals the input's text of that id.
    """

    def __init__(self, output: str | Path, rank: int = 0):
        self.output = Path(output)
        self.parts = self.output.with_name(self.output.name + ".parts")
        self.part = self.parts / f"rank-{rank}.jsonl"
        self.run_file = self.output.with_name(self.output.name + "." + RUN_FILE)

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("rank-*.jsonl")) if self.parts.is_dir() else []

    def done_ids(self) -> set[str]:
        return set(self.done_records())

    def done_records(self) -> dict[str, dict]:
        """Finished records by id (a torn last line of this process's part file is cut off)."""
        records = _read_records(self.output)
        for part in self._part_files():
            records += _read_records(part, repair=part == self.part)
        return {str(r["id"]): r for r in records if isinstance(r, dict) and "id" in r}

    def check(self, fingerprint: dict, texts: dict[str, str]) -> None:
        """Refuse earlier results made with other settings or from another input (`ResumeMismatch`)."""
        sources = []
        if self.output.exists():
            sources.append((self.output, self.run_file))
        if self._part_files():
            sources.append((self.parts, self.parts / RUN_FILE))
        for results, run_file in sources:
            try:
                earlier = json.loads(run_file.read_text(encoding="utf-8"))["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise ResumeMismatch(
                    f"{results} exists but was not written by `llm-ner extract` with a run record "
                    f"({run_file} missing or unreadable); {RESTART_HINT}"
                ) from None
            differences = settings_differences(earlier, fingerprint)
            if differences:
                raise ResumeMismatch(
                    f"{results} was made with other settings ({'; '.join(differences)}); {RESTART_HINT}"
                )
        stray, changed = [], []
        for record_id, record in self.done_records().items():
            if record_id not in texts:
                stray.append(record_id)
            elif record.get("text") != texts[record_id]:
                changed.append(record_id)
        if changed:
            raise ResumeMismatch(
                f"{self.output}: earlier records have another text than the input for {len(changed)} ids "
                f"(first: id {changed[0]!r}): made from another input; {RESTART_HINT}"
            )
        if stray:
            raise ResumeMismatch(
                f"{self.output}: {len(stray)} earlier records have ids that are not in the input "
                f"(first: id {stray[0]!r}): made from another input; {RESTART_HINT}"
            )

    def start(self, fingerprint: dict) -> None:
        """Record the fingerprint beside the part files before any record is appended."""
        self.parts.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.parts / RUN_FILE, {"settings": fingerprint})

    def append(self, records: Sequence[dict]) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        with open(self.part, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())

    def _remove_parts(self) -> None:
        if self.parts.is_dir():
            for part in self.parts.glob("rank-*.jsonl"):
                part.unlink()
            (self.parts / RUN_FILE).unlink(missing_ok=True)
            self.parts.rmdir()

    def clear(self) -> None:
        """Forget earlier results: remove the output, its run record and the part files."""
        self.output.unlink(missing_ok=True)
        self.run_file.unlink(missing_ok=True)
        self._remove_parts()

    def merge(self, order: Sequence[str]) -> int:
        """Write OUTPUT with every finished record in input order; remove the parts."""
        by_id = self.done_records()
        run = self.parts / RUN_FILE
        if run.is_file():  # checked equal to the output's run record (if any) before the run
            _write_json_atomic(self.run_file, json.loads(run.read_text(encoding="utf-8")))
        count = write_jsonl_atomic((by_id[i] for i in order if i in by_id), self.output)
        self._remove_parts()
        return count


def _write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", path)


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
    backend: Backend,
    examples: Sequence[Example],
    settings: RunSettings,
    output: str | Path,
    batch_size: int = 64,
    max_chars: int = ModelOptions.max_chars,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
) -> ParseStats:
    """Extract entities for this process's share of ``examples`` into the part files.

    ``backend`` answers each batch of ``batch_size`` pieces: a model here (`LocalBackend`) or a
    server (`OpenAIBackend`), with the same batches, part files and parser.
    Call `ResumableOutput.merge` afterwards (on one process) to write the final file.
    """
    from tqdm.auto import tqdm

    store = ResumableOutput(output, rank)
    done = store.done_ids()
    mine = [ex for i, ex in enumerate(examples) if i % world == rank and ex.id not in done]
    totals = ParseStats()
    # Pieces of long sentences join the others in length-sorted batches of ``batch_size`` pieces (low
    # padding, bounded memory); a sentence's record is written once all its pieces are answered.
    pieces_of = {ex.id: split_long(ex.text, max_chars) for ex in mine}
    work = [(ex, k) for ex in mine for k in range(len(pieces_of[ex.id]))]
    work.sort(key=lambda item: -len(pieces_of[item[0].id][item[1]][1]))
    answers_of: dict[str, list[tuple[str, tuple | None] | None]] = {
        ex.id: [None] * len(pieces_of[ex.id]) for ex in mine
    }
    bar = tqdm(
        total=len(mine),
        unit="sent",
        desc=f"extract[{rank}]" if world > 1 else "extract",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for start in range(0, len(work), batch_size):
            batch = work[start : start + batch_size]
            texts = [pieces_of[ex.id][k][1] for ex, k in batch]
            answered = answer_pieces(backend, settings, texts)
            records = []
            for (ex, k), piece_answer in zip(batch, answered):
                answers_of[ex.id][k] = piece_answer
                if all(a is not None for a in answers_of[ex.id]):
                    done = answers_of.pop(ex.id)
                    token_scores = None if any(s is None for _, s in done) else [s for _, s in done]
                    record, stats = make_record(
                        ex, pieces_of[ex.id], [a for a, _ in done], settings.prompt, token_scores
                    )
                    totals += stats
                    records.append(record)
            if records:
                store.append(records)
                bar.update(len(records))
    finally:
        bar.close()
    return totals


def answer_pieces(backend: Backend, settings: RunSettings, texts: Sequence[str]) -> list[Answer]:
    """(answer, token scores or None) for each text, asked in the run's prompt and answer format (with its
    shots: a prompt budget is counted with the backend's tokenizer if it has one, else bounded from above)."""
    count_tokens = None
    if settings.max_prompt_tokens is not None:
        count_tokens = prompt_token_counter(getattr(backend, "tokenizer", None))
    return backend.answer(settings.conversations(texts, count_tokens), list(texts))


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


def extraction_fingerprint(
    settings: RunSettings, model_options: ModelOptions, openai_options: OpenAIOptions | None = None
) -> dict:
    """The fingerprint of an extraction run (`run_fingerprint` with the decoding options, the shots if any
    and, for a server, which server and model answered): every engine that writes an output uses this one."""
    extra: dict = {}
    if openai_options is not None:  # a server's answers depend on which server and model answered
        extra = {"backend": "openai", "base_url": openai_options.base_url, "served_model": openai_options.served_model}
    if model_options.shots:  # only then: a zero-shot fingerprint stays as before, so its outputs still resume
        extra.update(
            shots=model_options.shots,
            shots_from=file_identity(Path(model_options.shots_from)),
            shot_selection=model_options.shot_selection,
            max_prompt_tokens=model_options.max_prompt_tokens,
        )
        if model_options.shot_selection == "random":
            extra["shot_seed"] = model_options.shot_seed
    return run_fingerprint(
        settings,
        constrained=bool(model_options.constrained),
        max_new_tokens=model_options.max_new_tokens,
        max_chars=model_options.max_chars,
        load_in_4bit=bool(model_options.load_in_4bit),
        **extra,
    )


def make_backend(
    model_options: ModelOptions,
    settings: RunSettings,
    openai_options: OpenAIOptions | None = None,
    device: str | None = None,
    **fields,
) -> Backend:
    """The backend that answers a run: a client of the server of ``openai_options`` (not yet checked:
    call its ``check``), else the model loaded here on ``device`` (``fields``: of `LocalBackend`)."""
    if openai_options is not None:
        answer_format = get_format(settings.answer_format)
        schema = answer_format.json_schema(settings.prompt.schema) if model_options.constrained else None
        return OpenAIBackend.from_options(openai_options, model_options.max_new_tokens, schema)
    return model_options.local_backend(settings, device, **fields)


def run_extraction(
    model_options: ModelOptions, extract_options: ExtractOptions, openai_options: OpenAIOptions | None = None
) -> int:
    """`llm-ner extract`: load, shard, extract, merge; 0, or 130 when interrupted (resumable).

    ``openai_options``: ask that OpenAI-compatible server instead of loading the model here.
    """
    from accelerate import PartialState

    from .generation import check_device

    remote = openai_options is not None
    state = PartialState(cpu=model_options.device == "cpu" or remote)
    device = None
    if not remote:  # checked before --restart can discard anything
        import torch

        device = model_options.device or (f"cuda:{state.local_process_index}" if torch.cuda.is_available() else "cpu")
        device = check_device(device, model_options.load_in_4bit)
    # The openai backend loads no model: the served model's name stands in for --model.
    settings = model_options.settings(openai_options.served_model if remote else None)
    backend: Backend | None = None
    if remote:  # the server and its model checked before --restart can discard anything
        backend = make_backend(model_options, settings, openai_options=openai_options)
        backend.check()
    examples = read_inputs(extract_options.input, extract_options.input_format, lenient=extract_options.lenient)
    texts = {ex.id: ex.text for ex in examples}
    all_ids = [ex.id for ex in examples]
    if extract_options.limit:
        examples = examples[: extract_options.limit]
    fingerprint = extraction_fingerprint(settings, model_options, openai_options)
    store = ResumableOutput(extract_options.output, state.process_index)
    if not extract_options.restart:
        store.check(fingerprint, texts)  # every process, so a refusal stops them all
    if state.is_main_process:
        for note in settings.notes:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"prompt {settings.prompt.name} ({settings.source}), format {settings.answer_format}, "
            f"{len(examples)} sentences",
            file=sys.stderr,
        )
        if extract_options.restart:
            store.clear()
        store.start(fingerprint)
    state.wait_for_everyone()
    if backend is None:
        backend = make_backend(model_options, settings, device=device)
    interrupted = False
    stats = ParseStats()
    try:
        stats = extract(
            backend,
            examples,
            settings,
            extract_options.output,
            batch_size=max(extract_options.batch_size, openai_options.concurrency)
            if remote
            else extract_options.batch_size,
            max_chars=model_options.max_chars,
            rank=state.process_index,
            world=state.num_processes,
            progress=not extract_options.quiet,
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        backend.close()
    if interrupted:
        done = len(ResumableOutput(extract_options.output).done_ids())
        print(f"interrupted: {done}/{len(examples)} sentences saved; rerun the same command to resume", file=sys.stderr)
        return 130
    state.wait_for_everyone()
    unusable = None
    if state.is_main_process:
        written = ResumableOutput(extract_options.output).merge(all_ids)  # earlier records beyond --limit are kept
        print(
            f"this run: {summarize(stats)}" + (" (process 0 only)" if state.num_processes > 1 else ""), file=sys.stderr
        )
        print(f"wrote {written} records to {extract_options.output}", file=sys.stderr)
        unusable = parse_failure_error(extract_options.output, extract_options.max_parse_failures)
    state.wait_for_everyone()
    state.destroy_process_group()  # see training.train: an open group can abort the exit
    if unusable is not None:
        raise unusable  # after the merge: the records are kept for a look at the raw answers
    return 0


def parse_failure_error(output: str | Path, max_share: float | None = None) -> LlmNerError | None:
    """The error (exit status 1) of a finished output whose answers could not be parsed: more than
    ``max_share`` of them (`--max-parse-failures`), or all of them when None. Counted over every record
    of the file (all processes, resumed records too): the file is what gets evaluated."""
    from .report.inputs import parse_counters, parse_failure_line

    counts = parse_counters(output) or {}
    failures, answers = counts.get("parse_failures", 0), counts.get("answers", 0)
    if not answers or (failures < answers if max_share is None else failures <= max_share * answers):
        return None
    allowed = "every answer failed" if max_share is None else f"more than --max-parse-failures {max_share:g}"
    return LlmNerError(
        f"{output}: {parse_failure_line(counts)}; {allowed}. Check that the model is fine-tuned for this prompt "
        "and answer format (--prompt, --format; an adapter's own are used by default)"
    )
