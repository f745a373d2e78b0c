"""The training run directory: what training writes beside the model, so that extraction, serving
and merging use the prompt and answer format the model was trained with.

Files: ``llm_ner.json`` (`RunRecord`: prompt, answer format, base model, how it was trained: the settings
compared on a resume and each stretch of training),
``prompt.yaml`` (a self-contained copy of the prompt, labels inline) and ``train_config.yaml``
(the resolved training configuration, for people). `RunRecord.save` writes them and
`RunRecord.load` reads the record back (as spaCy's ``to_disk``/``from_disk``); a checkpoint
directory finds the record of its run in its parent (`RunRecord.find`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data import JsonValueError, decode_json
from ..errors import DataError, UsageError
from ..prompting import PromptTemplate, load_prompt

RUN_RECORD = "llm_ner.json"
PROMPT_COPY = "prompt.yaml"
TRAIN_CONFIG = "train_config.yaml"
ADAPTER_CONFIG = "adapter_config.json"  # what peft writes into a LoRA adapter directory


def adapter_base_model(adapter: str | Path, option: str = "--adapter") -> str:
    """The base model a LoRA adapter directory was trained on (its ``adapter_config.json``);
    `UsageError` when the directory is not an adapter, `DataError` when its config names no base."""
    config_path = Path(adapter) / ADAPTER_CONFIG
    if not config_path.is_file():
        if not Path(adapter).is_dir():
            raise UsageError(f"{option} {adapter}: no such directory")
        if (Path(adapter) / "config.json").is_file():
            raise UsageError(
                f"{option} {adapter} holds a full model, not a LoRA adapter (no {ADAPTER_CONFIG}); "
                "extract and serve take it as --model"
            )
        raise UsageError(f"{option} {adapter}: no {ADAPTER_CONFIG} (not a LoRA adapter directory)")
    missing = "no base_model_name_or_path (the model the adapter was trained on)"
    try:
        base = json.loads(config_path.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (ValueError, KeyError, TypeError):
        raise DataError(config_path, None, missing) from None
    if not isinstance(base, str) or not base:
        raise DataError(config_path, None, missing)
    return base


@dataclass
class RunRecord:
    """The contents of ``llm_ner.json``. Keys missing from an older file take the defaults; keys this
    version does not know are kept in ``extra`` and written back."""

    prompt: str = PROMPT_COPY  # the prompt copy, relative to the run directory
    prompt_name: str = ""
    answer_format: str = "mentions"
    enable_thinking: bool = False
    base_model: str | None = None
    peft: bool = False
    load_in_4bit: bool = False
    merged_from: str | None = None  # the adapter directory a merged model was made from
    # What a training run learns from, as it started (`training.resume.training_settings`: compared on a
    # resume), and each stretch of training: started, from_step, checkpoint, then to_step and ended.
    training_settings: dict | None = None
    training_segments: list[dict] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    directory: Path | None = field(default=None, compare=False)  # where it was loaded from or saved; not a key

    def to_dict(self) -> dict:
        """The JSON object of ``llm_ner.json``, keys in the order training has always written them."""
        keys = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "directory")}
        for optional in ("merged_from", "training_settings", "training_segments"):  # older files' layout
            if not keys[optional]:
                del keys[optional]
        return {**keys, **self.extra}

    @classmethod
    def from_dict(cls, raw: dict, directory: Path | None = None) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "directory"}
        return cls(
            **{k: v for k, v in raw.items() if k in known},
            extra={k: v for k, v in raw.items() if k not in known},
            directory=directory,
        )

    def save(
        self, directory: str | Path, prompt: PromptTemplate | None = None, train_config: dict | None = None
    ) -> None:
        """Write ``llm_ner.json`` into ``directory`` (made if needed), with the copy of ``prompt`` and
        the training configuration when given."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if prompt is not None:
            (out / self.prompt).write_text(prompt.to_yaml(), encoding="utf-8")
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        (out / RUN_RECORD).write_text(text, encoding="utf-8")
        if train_config is not None:
            config = yaml.safe_dump(train_config, allow_unicode=True, sort_keys=True)
            (out / TRAIN_CONFIG).write_text(config, encoding="utf-8")
        self.directory = out

    @classmethod
    def load(cls, directory: str | Path) -> RunRecord:
        """The record in ``directory`` (`FileNotFoundError` when there is none; `DataError` when it is
        not a JSON object)."""
        directory = Path(directory)
        path = directory / RUN_RECORD
        try:
            raw = decode_json(path.read_bytes())  # not UTF-8, nested too deep, a lone surrogate...: one line
        except JsonValueError as exc:
            raise DataError(path, exc.line, exc.reason) from None
        if not isinstance(raw, dict):
            raise DataError(path, None, "expected a JSON object")
        return cls.from_dict(raw, directory)

    @classmethod
    def find(cls, path: str | Path) -> RunRecord | None:
        """The record in ``path`` or its parent (a checkpoint of the run); None when neither has one."""
        path = Path(path)
        for folder in (path, path.parent):
            if (folder / RUN_RECORD).is_file():
                return cls.load(folder)
        return None

    def load_prompt(self) -> PromptTemplate:
        """The prompt the model was trained with (the run's copy)."""
        if self.directory is None:
            raise ValueError("this run record was neither loaded nor saved: its prompt copy has no directory")
        return load_prompt(self.directory / self.prompt)

    def copy_to(self, directory: str | Path, **changes: object) -> RunRecord:
        """This record with ``changes`` written into ``directory``, with the run's prompt copy and
        training configuration (as `llm-ner merge` does for the merged model)."""
        record = dataclasses.replace(self, **{"extra": dict(self.extra), **changes})
        record.save(directory)
        if self.directory is not None:
            for name in (PROMPT_COPY, TRAIN_CONFIG):
                if (self.directory / name).is_file():
                    shutil.copy(self.directory / name, Path(directory) / name)
        return record
