"""Prompting: label schemas and prompt templates from YAML, chat messages, answer formats.

A prompt file (``prompts/*.yaml``) holds the label schema (key, Chinese name, definition of each
type) and Jinja2 templates for the system and user messages, so a new dataset or wording is a
YAML file, not code. See ``prompts/README.md`` for the fields.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from .data import Example
from .errors import DataError, UsageError

ANSWER_FORMATS = ("mentions", "grouped")
DEFAULT_PROMPT = "cluener_zh"

_PACKAGE_DIR = Path(__file__).resolve().parent
# A checkout keeps prompts at the repository root; a wheel carries them inside the package.
PROMPT_DIRS = (_PACKAGE_DIR / "prompts", _PACKAGE_DIR.parent / "prompts")


@dataclass(frozen=True)
class LabelType:
    """One entity type: the key used in answers and data, its Chinese name and definition."""

    key: str
    name: str = ""
    definition: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class LabelSchema:
    """The entity types of a dataset, in a fixed order."""

    types: list[LabelType]

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.types]

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def lookup(self) -> dict[str, str]:
        """Every accepted spelling (key, Chinese name, alias; case-folded) -> key."""
        table: dict[str, str] = {}
        for t in self.types:
            for spelling in (t.key, t.name, *t.aliases):
                if spelling:
                    table.setdefault(spelling.casefold(), t.key)
        return table

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelSchema:
        return cls([LabelType(key) for key in sorted(set(labels))])


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

    def messages(self, text: str, answer_format: str = "mentions") -> list[dict[str, str]]:
        """The system and user messages for one sentence."""
        check_format(answer_format)
        messages = []
        system = self._render(self.system, text, answer_format)
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": self._render(self.user, text, answer_format)})
        return messages


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


def check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise UsageError(f"unknown answer format {answer_format!r} (choose from {', '.join(ANSWER_FORMATS)})")


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
        types.append(
            LabelType(
                item["key"],
                str(item.get("name", "")),
                str(item.get("definition", "")).strip(),
                tuple(item.get("aliases", ())),
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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(path, None, f"invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(path, None, "expected a YAML mapping")
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
        raise DataError(path, None, f"unknown fields {sorted(unknown)}")
    if "user" not in raw:
        raise DataError(path, None, "a prompt needs a 'user' template")
    schema = None
    if "labels" in raw:
        schema = _parse_labels(raw["labels"], path)
    elif "labels_from" in raw:
        schema = load_prompt(path.parent / raw["labels_from"]).schema
    instructions = raw.get("format_instructions", {}) or {}
    for key in instructions:
        check_format(key)
    return PromptTemplate(
        name=str(raw.get("name", path.stem)),
        schema=schema,
        system=str(raw.get("system", "")),
        user=str(raw["user"]),
        format_instructions={k: str(v) for k, v in instructions.items()},
        description=str(raw.get("description", "")),
        source=str(path),
    )


# ---------------------------------------------------------------------------------------------
# Answers


def _dumps(value: object) -> str:
    # Compact JSON: fewer tokens to generate, and the exact string the parser reads back.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def format_answer(example: Example, answer_format: str = "mentions", label_order: Sequence[str] | None = None) -> str:
    """The assistant answer for an example.

    ``mentions``: ``[{"text":..,"label":..}, ...]`` in reading order, repeats kept.
    ``grouped``: ``{label: [unique strings in order of first appearance]}``, labels in
    ``label_order`` (schema order) when given, else in order of first appearance.
    """
    check_format(answer_format)
    if answer_format == "mentions":
        return _dumps([{"text": example.mention(s), "label": s.label} for s in example.spans])
    grouped: dict[str, list[str]] = {}
    for span in example.spans:
        strings = grouped.setdefault(span.label, [])
        mention = example.mention(span)
        if mention not in strings:
            strings.append(mention)
    if label_order is not None:
        rank = {key: i for i, key in enumerate(label_order)}
        grouped = dict(sorted(grouped.items(), key=lambda item: rank.get(item[0], len(rank))))
    return _dumps(grouped)


def to_conversation(example: Example, prompt: PromptTemplate, answer_format: str = "mentions") -> dict:
    """TRL's conversational prompt-completion record for one example."""
    order = prompt.schema.keys if prompt.schema else None
    return {
        "id": example.id,
        "prompt": prompt.messages(example.text, answer_format),
        "completion": [{"role": "assistant", "content": format_answer(example, answer_format, order)}],
    }


def unknown_labels(examples: Iterable[Example], schema: LabelSchema) -> set[str]:
    """Labels used in the data that the schema does not define."""
    keys = set(schema.keys)
    return {span.label for ex in examples for span in ex.spans} - keys
