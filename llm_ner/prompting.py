"""Prompting: prompt templates from YAML, chat messages, training records.

A prompt file (``prompts/*.yaml``) holds the label schema (key, Chinese name, definition of each
type; `labels.LabelSchema`) and Jinja2 templates for the system and user messages, with an
instruction per answer format (`answer_format`), so a new dataset or wording is a YAML file, not
code. See ``prompts/README.md`` for the fields.

`convert_file` writes training records (``llm-ner convert``) and, beside them, the sidecar
``OUTPUT.meta.json`` naming the prompt (with a full copy) and answer format they were made with, so
that training records the prompt the model really saw (`read_conversion`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from .answer_format import ANSWER_FORMATS, get_format
from .data import (
    INPUT_FORMATS,
    Example,
    LoadReport,
    check_output_path,
    check_value,
    load_examples,
    write_jsonl_atomic,
    write_text_atomic,
)
from .errors import DataError
from .labels import LabelSchema, LabelType
from .options import CliOptions, option

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "cluener_zh"

_PACKAGE_DIR = Path(__file__).resolve().parent
# A checkout keeps prompts at the repository root; a wheel carries them inside the package.
PROMPT_DIRS = (_PACKAGE_DIR / "prompts", _PACKAGE_DIR.parent / "prompts")


@dataclass
class PromptTemplate:
    """A prompt file: schema plus the Jinja2 templates of the system and user messages."""

    name: str
    schema: LabelSchema | None
    system: str
    user: str
    format_instructions: dict[str, str] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def with_labels(self, labels: Iterable[str]) -> PromptTemplate:
        """This template with a schema read from the data (for prompt files without labels)."""
        return PromptTemplate(
            self.name,
            LabelSchema.from_labels(labels),
            self.system,
            self.user,
            dict(self.format_instructions),
            self.description,
            self.source,
        )

    def _render(self, template: str, text: str, answer_format: str) -> str:
        if self.schema is None:
            raise ValueError(f"prompt {self.name!r} has no labels; call with_labels() first")
        variables = {"labels": [vars(t) for t in self.schema.types], "text": text, "format": answer_format}
        instruction = _compile(self.format_instructions.get(answer_format, ""))
        variables["format_instruction"] = instruction.render(**variables)
        return _compile(template).render(**variables).strip()

    def to_yaml(self) -> str:
        """A self-contained prompt YAML (labels inline) that `load_prompt` reads back identically."""
        labels = None
        if self.schema:
            labels = [
                {
                    k: v
                    for k, v in (
                        ("key", t.key),
                        ("name", t.name),
                        ("definition", t.definition),
                        ("aliases", list(t.aliases)),
                    )
                    if v
                }
                for t in self.schema.types
            ]
        document = {
            "name": self.name,
            "description": self.description,
            "labels": labels,
            "system": self.system,
            "user": self.user,
            "format_instructions": self.format_instructions,
        }
        document = {k: v for k, v in document.items() if v is not None}
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=1000)

    def messages(
        self, text: str, answer_format: str = "mentions", shots: Sequence[Example] = ()
    ) -> list[dict[str, str]]:
        """The system and user messages for one sentence; before its user turn, each of ``shots`` (labelled
        examples, in order) as a user turn (this template for its text) and the assistant's answer, exactly
        as training renders it (`render_answer`)."""
        get_format(answer_format)  # an unknown name is a UsageError, not a prompt without instructions
        messages = []
        system = self._render(self.system, text, answer_format)
        if system:
            messages.append({"role": "system", "content": system})
        for shot in shots:
            messages.append({"role": "user", "content": self._render(self.user, shot.text, answer_format)})
            messages.append({"role": "assistant", "content": self.render_answer(shot, answer_format)})
        messages.append({"role": "user", "content": self._render(self.user, text, answer_format)})
        return messages

    def render_answer(self, example: Example, answer_format: str = "mentions") -> str:
        """The assistant's answer for a labelled example: the training target, and a shot's answer."""
        return get_format(answer_format).render(example, self.schema.keys if self.schema else None)


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


def resolve_prompt_path(name_or_path: str | Path) -> Path:
    """A prompt file by path, or by name (``cluener_zh``) from the shipped prompt folders."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    for folder in PROMPT_DIRS:
        candidate = folder / stem
        if candidate.is_file():
            return candidate
    shipped = sorted({p.stem for d in PROMPT_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise FileNotFoundError(f"prompt {str(name_or_path)!r} not found (shipped prompts: {', '.join(shipped)})")


def _parse_labels(raw: object, source: Path) -> LabelSchema:
    if not isinstance(raw, list) or not raw:
        raise DataError(source, None, "'labels' must be a non-empty list")
    types = []
    for item in raw:
        if isinstance(item, str):
            item = {"key": item}
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise DataError(source, None, f"each label needs a 'key' string, got {item!r}")
        unknown = set(item) - {"key", "name", "definition", "aliases"}
        if unknown:
            raise DataError(source, None, f"label {item['key']!r} has unknown fields {sorted(unknown)}")
        aliases = item.get("aliases", ())
        if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, str) for a in aliases):
            raise DataError(source, None, f"label {item['key']!r}: 'aliases' must be a list of strings")
        types.append(
            LabelType(
                item["key"],
                str(item.get("name", "")),
                str(item.get("definition", "")).strip(),
                tuple(aliases),
            )
        )
    keys = [t.key for t in types]
    if len(set(keys)) != len(keys):
        raise DataError(source, None, f"duplicate label keys in {keys}")
    return LabelSchema(types)


def load_prompt(name_or_path: str | Path = DEFAULT_PROMPT) -> PromptTemplate:
    """Load a prompt YAML (``labels_from`` reuses the label list of another prompt file)."""
    path = resolve_prompt_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, None, str(exc)) from None
    return prompt_from_yaml(text, path)


def prompt_from_yaml(text: str, source: Path) -> PromptTemplate:
    """A prompt from the text of a prompt YAML; ``source`` names it in errors (and anchors ``labels_from``)."""
    try:
        raw = yaml.safe_load(text)
        check_value(raw)  # nesting, cycles and lone surrogates: what no prompt text can be
    except yaml.YAMLError as exc:
        raise DataError(source, None, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise DataError(source, None, "YAML nested too deeply to read") from None
    except ValueError as exc:  # an integer of too many digits, a lone surrogate, ...
        raise DataError(source, None, str(exc)) from None
    if not isinstance(raw, dict):
        raise DataError(source, None, "expected a YAML mapping")
    unknown = set(raw) - {
        "name",
        "description",
        "labels",
        "labels_from",
        "system",
        "user",
        "format_instructions",
    }
    if unknown:
        raise DataError(source, None, f"unknown fields {sorted(unknown)}")
    if "user" not in raw:
        raise DataError(source, None, "a prompt needs a 'user' template")
    for key in ("name", "description", "system", "user"):
        if isinstance(raw.get(key), (list, dict)):
            raise DataError(source, None, f"'{key}' must be text, not a {type(raw[key]).__name__}")
    schema = None
    if "labels" in raw:
        schema = _parse_labels(raw["labels"], source)
    elif "labels_from" in raw:
        schema = load_prompt(source.parent / raw["labels_from"]).schema
    instructions = raw.get("format_instructions", {}) or {}
    if not isinstance(instructions, dict):
        raise DataError(source, None, "'format_instructions' must be a mapping {answer format: text}")
    for key in instructions:
        get_format(key)
    return PromptTemplate(
        name=str(raw.get("name", source.stem)),
        schema=schema,
        system=str(raw.get("system", "")),
        user=str(raw["user"]),
        format_instructions={k: str(v) for k, v in instructions.items()},
        description=str(raw.get("description", "")),
        source=str(source),
    )


def prompt_identity(prompt: PromptTemplate) -> str:
    """sha256 of everything of a prompt that reaches the model."""
    content = {
        "system": prompt.system,
        "user": prompt.user,
        "format_instructions": prompt.format_instructions,
        "labels": [vars(t) for t in prompt.schema.types] if prompt.schema else None,
    }
    return "sha256:" + hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def to_conversation(example: Example, prompt: PromptTemplate, answer_format: str = "mentions") -> dict:
    """TRL's conversational prompt-completion record for one example."""
    return {
        "id": example.id,
        "prompt": prompt.messages(example.text, answer_format),
        "completion": [{"role": "assistant", "content": prompt.render_answer(example, answer_format)}],
    }


# ---------------------------------------------------------------------------------------------
# Converted files and their sidecar

CONVERSION_SIDECAR_SUFFIX = ".meta.json"


def conversion_sidecar(path: str | Path) -> Path:
    """The sidecar of a converted file: ``OUTPUT.meta.json`` beside it."""
    return Path(f"{path}{CONVERSION_SIDECAR_SUFFIX}")


def _file_sha256(path: str | Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Conversion:
    """What a converted file was made with, as its sidecar records it.

    The records stay TRL's plain prompt-completion lines; the sidecar holds the prompt (name, content
    hash, a self-contained YAML copy), the answer format, and the sha256 of the file it describes, so
    a file rewritten after conversion is told from the one it describes.
    """

    prompt: PromptTemplate
    answer_format: str
    records: int
    file_sha256: str
    input: str | None = None

    @property
    def prompt_identity(self) -> str:
        return prompt_identity(self.prompt)

    def to_dict(self) -> dict:
        """The JSON object of the sidecar."""
        return {
            "written_by": "llm-ner convert",
            "prompt_name": self.prompt.name,
            "prompt_sha256": self.prompt_identity,
            "answer_format": self.answer_format,
            "records": self.records,
            "file_sha256": self.file_sha256,
            "input": self.input,
            "prompt_yaml": self.prompt.to_yaml(),
        }

    def describes(self, path: str | Path) -> bool:
        """Whether ``path`` is still the file this sidecar was written with (not rewritten since)."""
        return _file_sha256(path) == self.file_sha256


def convert_file(
    input_path: str | Path,
    output: str | Path,
    prompt: PromptTemplate,
    answer_format: str = "mentions",
    input_format: str = "auto",
    lenient: bool = False,
) -> tuple[Conversion, LoadReport]:
    """Convert an NER file into TRL prompt-completion JSON lines at ``output`` and write the sidecar beside it.

    Both are written atomically, the output first: a run stopped between the two leaves an older sidecar
    whose ``file_sha256`` no longer matches, which `read_conversion`'s callers treat as no sidecar.
    A prompt without labels takes them from the data.
    """
    get_format(answer_format)  # an unknown format stops before anything is written
    labels = prompt.schema.keys if prompt.schema else None
    examples, report = load_examples(input_path, input_format, labels=labels, lenient=lenient)
    if prompt.schema is None:
        prompt = prompt.with_labels(s.label for ex in examples for s in ex.spans)
    count = write_jsonl_atomic((to_conversation(ex, prompt, answer_format) for ex in examples), output)
    conversion = Conversion(prompt, answer_format, count, _file_sha256(output), str(input_path))
    text = json.dumps(conversion.to_dict(), ensure_ascii=False, indent=2) + "\n"
    write_text_atomic(text, conversion_sidecar(output))
    return conversion, report


def read_conversion(path: str | Path) -> Conversion | None:
    """The sidecar of converted file ``path``; None when there is none (written by an llm-ner before
    sidecars). A sidecar that is not one is a `DataError` naming it."""
    sidecar = conversion_sidecar(path)
    if not sidecar.is_file():
        return None
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(sidecar, None, f"invalid JSON: {exc}") from None
    fields = {"prompt_yaml": str, "answer_format": str, "records": int, "file_sha256": str}
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), t) for k, t in fields.items()):
        raise DataError(sidecar, None, f"not a convert sidecar (a JSON object with {', '.join(fields)})")
    if raw["answer_format"] not in ANSWER_FORMATS:
        raise DataError(sidecar, None, f"unknown answer format {raw['answer_format']!r}")
    prompt = prompt_from_yaml(raw["prompt_yaml"], sidecar)
    return Conversion(prompt, raw["answer_format"], raw["records"], raw["file_sha256"], raw.get("input"))


@dataclass
class ConvertOptions(CliOptions):
    """`llm-ner convert`: an NER file -> chat instructions, with the prompt and answer format to render."""

    input: str = option(required=True, help="CLUENER JSON lines or char-per-line BIO/BIOES/BMES file")
    output: str = option(required=True, help="output JSON lines file")
    prompt: str = option(DEFAULT_PROMPT, help="prompt YAML path or shipped name (default: %(default)s; see prompts/)")
    answer_format: str = option(
        "mentions",
        flag="--format",
        choices=ANSWER_FORMATS,
        help="assistant answer: mentions = JSON list in reading order (exact spans); "
        "grouped = {label: [strings]} (default: %(default)s)",
    )
    input_format: str = option(
        "auto",
        choices=INPUT_FORMATS,
        help="input file format; auto picks cluener for JSON lines, else a tag "
        "scheme detected from the tags (default: %(default)s)",
    )
    lenient: bool = option(False, help="skip bad records (printed with their lines) instead of stopping")


def convert(options: ConvertOptions) -> Conversion:
    """`llm-ner convert`: write the chat instructions and their sidecar, say what was written."""
    started = time.perf_counter()
    check_output_path(options.output, {"--input": options.input, "--prompt": options.prompt})
    conversion, report = convert_file(
        options.input, options.output, load_prompt(options.prompt), options.answer_format, options.input_format,
        options.lenient,
    )  # fmt: skip
    report.print()
    log.info(
        f"wrote {conversion.records} {options.answer_format} conversations to {options.output} (prompt "
        f"{conversion.prompt.name} {conversion.prompt_identity}, recorded in {conversion_sidecar(options.output)}) "
        f"in {time.perf_counter() - started:.2f}s"
    )
    return conversion
