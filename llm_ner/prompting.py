"""Prompting: prompt templates from YAML, chat messages, training records.

A prompt file (``prompts/*.yaml``) holds the label schema (key, Chinese name, definition of each
type; `labels.LabelSchema`) and Jinja2 templates for the system and user messages, with an
instruction per answer format (`answer_format`), so a new dataset or wording is a YAML file, not
code. See ``prompts/README.md`` for the fields.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from .answer_format import get_format
from .data import Example, check_value
from .errors import DataError
from .labels import LabelSchema, LabelType

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

    def messages(self, text: str, answer_format: str = "mentions") -> list[dict[str, str]]:
        """The system and user messages for one sentence."""
        get_format(answer_format)  # an unknown name is a UsageError, not a prompt without instructions
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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        check_value(raw)  # nesting, cycles and lone surrogates: what no prompt text can be
    except yaml.YAMLError as exc:
        raise DataError(path, None, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise DataError(path, None, "YAML nested too deeply to read") from None
    except ValueError as exc:  # not UTF-8, an integer of too many digits, a lone surrogate, ...
        raise DataError(path, None, str(exc)) from None
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
    for key in ("name", "description", "system", "user"):
        if isinstance(raw.get(key), (list, dict)):
            raise DataError(path, None, f"'{key}' must be text, not a {type(raw[key]).__name__}")
    schema = None
    if "labels" in raw:
        schema = _parse_labels(raw["labels"], path)
    elif "labels_from" in raw:
        schema = load_prompt(path.parent / raw["labels_from"]).schema
    instructions = raw.get("format_instructions", {}) or {}
    if not isinstance(instructions, dict):
        raise DataError(path, None, "'format_instructions' must be a mapping {answer format: text}")
    for key in instructions:
        get_format(key)
    return PromptTemplate(
        name=str(raw.get("name", path.stem)),
        schema=schema,
        system=str(raw.get("system", "")),
        user=str(raw["user"]),
        format_instructions={k: str(v) for k, v in instructions.items()},
        description=str(raw.get("description", "")),
        source=str(path),
    )


def to_conversation(example: Example, prompt: PromptTemplate, answer_format: str = "mentions") -> dict:
    """TRL's conversational prompt-completion record for one example."""
    order = prompt.schema.keys if prompt.schema else None
    return {
        "id": example.id,
        "prompt": prompt.messages(example.text, answer_format),
        "completion": [{"role": "assistant", "content": get_format(answer_format).render(example, order)}],
    }
