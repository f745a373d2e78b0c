"""What a run uses: the model, adapter, prompt and answer format (from training unless given) and, with shots,
the shot pool (`RunSettings`, from `run_settings`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..answer_format import ANSWER_FORMATS, get_format
from ..errors import UsageError
from ..prompting import DEFAULT_PROMPT, PromptTemplate, load_prompt
from ..shots import ShotCounts, ShotPool, TokenCounter, check_prompt_budget, few_shot_messages, prompt_token_counter
from ..training.run_dir import ADAPTER_CONFIG, RUN_RECORD, RunRecord, adapter_base_model
from .options import ModelOptions


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

    def conversations(
        self,
        texts: Sequence[str],
        count_tokens: TokenCounter | None = None,
        sources: Sequence[str] | None = None,
        counts: ShotCounts | None = None,
    ) -> list[list[dict]]:
        """The conversation of each text: the prompt, and the text's shots (within ``max_prompt_tokens``
        as ``count_tokens`` counts) when the run has them. ``sources``: the record each text was cut from
        (no shot shows it its answer: `shots.shows_own_gold`); ``counts`` records the shots each prompt got."""
        if self.shot_pool is None or not self.shots:
            return [self.prompt.messages(text, self.answer_format) for text in texts]
        chosen = self.shot_pool.select_many(texts, self.shots, sources)
        return [
            few_shot_messages(
                self.prompt, text, self.answer_format, shots, self.max_prompt_tokens, count_tokens, counts
            )
            for text, shots in zip(texts, chosen)
        ]

    def check_prompt_budget(self, tokenizer=None) -> None:
        """`UsageError` for a ``max_prompt_tokens`` below the zero-shot prompt, counted with ``tokenizer``
        (a local model's) or, without one (a server's model), bounded from above."""
        if self.shot_pool is not None and self.max_prompt_tokens is not None:
            count_tokens = prompt_token_counter(tokenizer)
            check_prompt_budget(
                self.prompt, self.answer_format, self.max_prompt_tokens, count_tokens, tokenizer is not None
            )

    def check_prompt_budget_early(self, served: bool) -> None:
        """`check_prompt_budget` before a model loads or earlier results are discarded: a local model's
        tokenizer loaded alone (``served``: a server's model, bounded)."""
        if self.shot_pool is None or self.max_prompt_tokens is None:
            return
        from ..generation import load_tokenizer

        self.check_prompt_budget(None if served else load_tokenizer(self.model, self.adapter))


def check_model_folder(model: str | None, option: str = "--model") -> None:
    """`UsageError` for a local folder that holds no model: transformers loads a folder with a
    ``config.json`` (or a LoRA adapter's, onto its base) and would stop on any other with a traceback.
    A name that is not a local folder (a hub id) is left to the loader."""
    folder = Path(model).expanduser() if model else None
    if (
        folder is not None
        and folder.is_dir()
        and not any((folder / n).is_file() for n in ("config.json", ADAPTER_CONFIG))
    ):
        raise UsageError(f"{option} {model}: no config.json there, so not a model folder")


def check_model_name(model: str) -> None:
    """`UsageError` for a ``--model`` that looks like a path (hub ids are org/name) but is no directory here."""
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1
    if looks_like_path and not Path(model).expanduser().is_dir():
        raise UsageError(f"--model {model}: no such directory (a hub id looks like org/name)")


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
    if not served:
        check_model_name(model)
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


def run_settings(options: ModelOptions, served_model: str | None = None) -> RunSettings:
    """The settings of a run of ``options``: the prompt and format from training unless given and, with
    ``shots``, the shot pool; ``served_model``: the name a server answers to, standing in for ``model``
    when no model is given."""
    served = served_model is not None and not options.model
    model = served_model if served else options.model
    settings = resolve_settings(
        model, options.adapter, options.prompt, options.answer_format, options.constrained, served
    )
    if options.shots:
        if not Path(options.shots_from).exists():  # a pipe is fine: the input opener reads it once
            raise UsageError(f"--shots-from {options.shots_from}: no such file")
        schema = settings.prompt.schema
        pool = ShotPool.load(
            options.shots_from, schema.keys if schema else None, options.shot_selection, options.shot_seed
        )
        settings.shot_pool, settings.shots, settings.max_prompt_tokens = pool, options.shots, options.max_prompt_tokens
        if len(pool) >= options.shots:
            settings.notes.append(
                f"{options.shots} {options.shot_selection} shots per sentence from {options.shots_from} "
                f"({len(pool)} labelled sentences)"
            )
        else:  # the run's end says how many each prompt got
            settings.notes.append(
                f"at most {len(pool)} {options.shot_selection} shots per sentence from {options.shots_from}: "
                f"it holds {len(pool)} labelled sentences (--shots {options.shots})"
            )
    return settings
