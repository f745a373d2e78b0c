"""Label schemas: the entity types of a dataset, their Chinese names, definitions and aliases.

A prompt file declares the schema (`prompting.load_prompt`); answer formats use it to map the
label spellings a model writes back to schema keys and to constrain answers to its labels. It
imports nothing of llm-ner, so prompts and answer formats can both build on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
