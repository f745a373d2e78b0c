"""Resuming a training run honestly: the settings that decide what a run learns, compared with those the
checkpoint's run record holds before anything is loaded or written (a mismatch is refused in the words
`llm-ner extract` uses), and the record's segments (each stretch of training: when, from which step). Every
checkpoint holds a copy of the record as it was saved (`record_checkpoint`), which a resume compares with.

A resume is ``--resume_from_checkpoint DIR`` (a ``checkpoint-N`` folder) or ``--resume_from_checkpoint true``,
the last checkpoint of ``--output_dir`` (as `transformers.Trainer` takes ``True``).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from ..errors import DataError, UsageError
from ..fingerprints import file_identity, made_with_other_settings, without_run_record
from ..prompting import PromptTemplate, prompt_identity
from .config import NERDataArguments
from .run_dir import RUN_RECORD, RunRecord

TRAINER_STATE = "trainer_state.json"  # what transformers writes into every checkpoint

# How a refused training resume ends: the two ways out.
RESTART_HINT = "train without --resume_from_checkpoint to start over, or choose another --output_dir"

# The options compared on a resume, beside the prompt, answer format, base model and training data
# (`training_settings`). Left out as harmless to what is learnt: logging, saving and evaluation (steps,
# strategies, eval_file, F1 options), dtype/bf16 (the precision of the same steps), shared_prefix, padding-free
# and packing (the same loss, tested), the number of processes, and model_files (a re-downloaded model).
TRAINING_KEYS = (
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "optim",
    "optim_args",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "label_smoothing_factor",
    "neftune_noise_alpha",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "data_seed",
    "max_length",
)
MODEL_KEYS = (
    "model_revision",
    "use_peft",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_modules_to_save",
    "lora_task_type",
    "use_rslora",
    "use_dora",
    "load_in_4bit",
    "load_in_8bit",
    "bnb_4bit_quant_type",
    "use_bnb_nested_quant",
)
DATA_KEYS = ("max_train_samples", "train_shots")


def training_settings(data_args: NERDataArguments, training_args, model_args, prompt: PromptTemplate) -> dict:
    """The settings that decide what a run learns, as JSON values, compared key by key on a resume:
    the prompt (name and content, labels included), answer format, base model, the training file's content,
    ``DATA_KEYS``, ``TRAINING_KEYS`` and ``MODEL_KEYS`` (what is left out, and why: ``TRAINING_KEYS``)."""
    settings = {
        "prompt": f"{prompt.name} {prompt_identity(prompt)}",
        "answer_format": data_args.answer_format,
        "base_model": model_args.model_name_or_path,
        "train_file": file_identity(Path(data_args.train_file)),
        **{key: getattr(data_args, key) for key in DATA_KEYS},
        **{key: getattr(training_args, key, None) for key in TRAINING_KEYS},
        **{key: getattr(model_args, key, None) for key in MODEL_KEYS},
    }
    return json.loads(json.dumps(settings, default=str))  # as the record reads back: lists, enums as text


def checkpoint_to_resume(training_args) -> str | None:
    """The checkpoint folder ``resume_from_checkpoint`` names (``true``: the last one of ``output_dir``), None
    without one; `UsageError` when there is no such checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    named = training_args.resume_from_checkpoint
    if named is None or named is False or str(named).lower() == "false":
        return None
    if named is True or str(named).lower() == "true":
        output_dir = training_args.output_dir
        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise UsageError(f"--resume_from_checkpoint true: no checkpoint-N folder in {output_dir} to resume")
        return last
    if not (Path(named) / TRAINER_STATE).is_file():
        raise UsageError(
            f"--resume_from_checkpoint {named}: not a checkpoint (no {TRAINER_STATE}); name a checkpoint-N "
            "folder of an earlier run, or true for the last one of --output_dir"
        )
    return str(named)


def checkpoint_step(checkpoint: str | Path) -> int:
    """The step a checkpoint was saved at (its ``trainer_state.json``)."""
    path = Path(checkpoint) / TRAINER_STATE
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(path, None, "no global_step (not a checkpoint's trainer state)") from None


def earlier_segments(checkpoint: str | None, settings: dict) -> list[dict]:
    """The segments of the run ``checkpoint`` belongs to (none for a fresh run), after checking that its run
    record holds ``settings``: `ResumeMismatch` when they differ or the record has none."""
    if checkpoint is None:
        return []
    try:
        record = RunRecord.find(checkpoint)
    except DataError:
        record = None
    if record is None or not isinstance(record.training_settings, dict):
        where = Path(checkpoint).parent / RUN_RECORD
        raise without_run_record(Path(checkpoint), where, command="llm-ner train", hint=RESTART_HINT)
    refusal = made_with_other_settings(Path(checkpoint), record.training_settings, settings, hint=RESTART_HINT)
    if refusal is not None:
        raise refusal
    return [dict(segment) for segment in record.training_segments if isinstance(segment, dict)]


def new_segment(checkpoint: str | None) -> dict:
    """The record of a stretch of training starting now: from step 0, or from ``checkpoint``'s step."""
    return {
        "started": _now(),
        "from_step": checkpoint_step(checkpoint) if checkpoint else 0,
        "checkpoint": checkpoint,
    }


def end_segment(output_dir: str | Path, step: int) -> None:
    """Write the step the run's last segment reached, and when, into ``output_dir``'s record."""
    record = RunRecord.load(output_dir)
    if record.training_segments:
        record.training_segments[-1].update(to_step=step, ended=_now())
        record.save(output_dir)


def record_checkpoint(output_dir: str | Path, checkpoint: str | Path, step: int) -> None:
    """Copy ``output_dir``'s record into a checkpoint just saved at ``step``, its last segment ending there:
    a resume compares with the run that made the checkpoint, even after a later run into the same
    ``output_dir`` rewrote the record there; the prompt copy makes the checkpoint a run directory too."""
    if not (Path(output_dir) / RUN_RECORD).is_file() or not Path(checkpoint).is_dir():
        return
    record = RunRecord.load(output_dir)
    segments = [dict(segment) for segment in record.training_segments]
    if segments:
        segments[-1].update(to_step=step, ended=_now())
    record.copy_to(checkpoint, training_segments=segments)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
