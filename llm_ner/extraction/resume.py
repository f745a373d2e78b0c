"""Resumable output: the run fingerprint an output's records depend on, the part files an interrupted run
leaves, and the messages of a refused resume (one wording for every engine)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..backends.openai import OpenAIOptions
from ..data import naming_write_failures, write_jsonl_atomic, write_text_atomic
from ..errors import ResumeMismatch
from ..fingerprints import directory_identity, file_identity, made_with_other_settings, without_run_record
from ..prompting import prompt_identity
from .options import ModelOptions
from .settings import RunSettings


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


def extraction_fingerprint(
    settings: RunSettings, model_options: ModelOptions, openai_options: OpenAIOptions | None = None
) -> dict:
    """The fingerprint of an extraction run (`run_fingerprint` with the decoding options, the shots if any
    and, for a server, which server and model answered): every engine that writes an output uses this one."""
    extra: dict = {}
    if openai_options is not None:  # a server's answers depend on which server and model answered
        extra = {"backend": "openai", "base_url": openai_options.base_url, "served_model": openai_options.served_model}
        if openai_options.api_dialect != "openai":  # only then: earlier openai outputs still resume
            extra["api_dialect"] = openai_options.api_dialect
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


# How a refused resume ends: the two ways out.
RESTART_HINT = "use --restart to discard them, or choose another --output"


def other_texts(output: Path, count: int, first: str) -> ResumeMismatch:
    """The refusal of an ``output`` whose earlier records hold other texts than the input for ``count`` ids."""
    return ResumeMismatch(
        f"{output}: earlier records have another text than the input for {count} ids (first: id {first!r}): made "
        f"from another input; {RESTART_HINT}"
    )


def stray_ids(output: Path, count: int, first: str | None = None) -> ResumeMismatch:
    """The refusal of an ``output`` with ``count`` earlier records whose ids the input does not have."""
    named = f" (first: id {first!r})" if first is not None else ""
    return ResumeMismatch(
        f"{output}: {count} earlier records have ids that are not in the input{named}: made from another input; "
        f"{RESTART_HINT}"
    )


def finished_with_other_inputs(output: Path, missing: int) -> ResumeMismatch:
    """The refusal of a finished ``output`` that lacks ``missing`` sentences of the input."""
    return ResumeMismatch(
        f"{output} is a finished run of other inputs ({missing} sentences are not in it); {RESTART_HINT}"
    )


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
                raise without_run_record(results, run_file, "llm-ner extract", RESTART_HINT) from None
            refusal = made_with_other_settings(results, earlier, fingerprint, RESTART_HINT)
            if refusal is not None:
                raise refusal
        stray, changed = [], []
        for record_id, record in self.done_records().items():
            if record_id not in texts:
                stray.append(record_id)
            elif record.get("text") != texts[record_id]:
                changed.append(record_id)
        if changed:
            raise other_texts(self.output, len(changed), changed[0])
        if stray:
            raise stray_ids(self.output, len(stray), stray[0])

    def start(self, fingerprint: dict) -> None:
        """Record the fingerprint beside the part files before any record is appended."""
        self.parts.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.parts / RUN_FILE, {"settings": fingerprint})

    def _kept_note(self) -> str:
        """What a write failure leaves (said on the CLI's one line): the finished records, and how to go on."""
        return f"the sentences finished so far are kept in {self.parts}; rerun the same command to resume"

    def append(self, records: Sequence[dict]) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        # a torn last line (a full disk mid-write) is cut off when the run resumes, see `done_records`
        with naming_write_failures(self.part, self._kept_note()), open(self.part, "a", encoding="utf-8") as handle:
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
        with naming_write_failures(self.output, self._kept_note()):  # the parts go only once the output is written
            if run.is_file():  # checked equal to the output's run record (if any) before the run
                _write_json_atomic(self.run_file, json.loads(run.read_text(encoding="utf-8")))
            count = write_jsonl_atomic((by_id[i] for i in order if i in by_id), self.output)
        self._remove_parts()
        return count


def _write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", path)


def interrupted_line(saved: int, total: int) -> str:
    """What an interrupted run says of what it kept (every engine: the same words)."""
    return f"interrupted: {saved}/{total} sentences saved; rerun the same command to resume"
