"""A training run: data, model, trainer, train, save, evaluate (`train`, the body of `train_sft.py`).

`train_sft.py` (and `llm-ner train`) parse three dataclasses with `trl.TrlParser` - our `NERDataArguments`,
TRL's `SFTConfig` and `ModelConfig` (`config`) - and call `train`. The data is converted on the fly from
CLUENER/BIO files (or read from `llm-ner convert` output) into TRL's conversational prompt-completion records
(`data`), so the loss covers the assistant answer and its end-of-turn token only (`trainer`). Every
`eval_steps` the trainer also generates answers for a fixed dev subset and logs span F1 (`callbacks`). The run
directory records the prompt, answer format and resolved config (`run_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from ..errors import UsageError
from ..generation.loading import cpu_computes_bf16
from ..generation.tokens import disable_thinking_by_default
from ..prompting import PromptTemplate
from ..versions import PEFT_CHECKPOINTING_WARNING, check_versions
from .config import NERDataArguments, check_training_bounds, parse_arguments
from .data import add_retrieved_shots, check_lengths, f1_subset, load_split, resolve_prompt
from .model_card import write_model_card
from .resume import checkpoint_to_resume, earlier_segments, end_segment, new_segment, training_settings
from .run_dir import RunRecord

log = logging.getLogger(__name__)


def save_run_metadata(
    output_dir: str,
    prompt: PromptTemplate,
    data_args: NERDataArguments,
    model_args,
    training_args,
    settings: dict | None = None,
    segments: list[dict] | None = None,
) -> None:
    """Write the prompt, answer format and resolved config beside the model (`run_dir`), with the settings
    a resume compares and the run's segments (`resume`)."""
    record = RunRecord(
        prompt_name=prompt.name,
        answer_format=data_args.answer_format,
        base_model=model_args.model_name_or_path,
        peft=bool(model_args.use_peft),
        load_in_4bit=bool(model_args.load_in_4bit),
        training_settings=settings,
        training_segments=list(segments or []),
    )
    config = {
        "data": dataclasses.asdict(data_args),
        "model": dataclasses.asdict(model_args),
        "training": json.loads(training_args.to_json_string()),
    }
    record.save(output_dir, prompt=prompt, train_config=config)


def final_metrics(trainer) -> dict:
    """The evaluation of the model `train` saved, run at most once.

    The trainer's own evaluation at the last step already evaluated the final model; with
    ``load_best_model_at_end`` the saved model is the best checkpoint, evaluated when it was saved.
    Their logged metrics are returned; only a model no evaluation has seen is evaluated here.
    """
    state = trainer.state
    step = state.global_step
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    logged = [e for e in state.log_history if e.get("step") == step and any(k.startswith("eval_") for k in e)]
    if logged:
        return {k: v for k, v in logged[-1].items() if k.startswith("eval_")}
    return trainer.evaluate()


def resolve_training_dtype(model_args, training_args) -> str:
    """The dtype the model loads in for training; ``dtype: auto`` decides the precision on a CPU.

    On a GPU ``auto`` is the checkpoint's own dtype (bf16 for Qwen) and ``bf16``/``fp16`` stay as configured.
    On a CPU it is bf16 weights with bf16 autocast where the CPU has bf16 instructions (`cpu_computes_bf16`: on
    the same 2 240 CLUENER sentences the real 0.5B scored 0.645 against float32's 0.640 on all dev, with 10.7
    instead of 13.9 GiB peak memory; benchmarks/README.md), else float32 weights and no autocast (bf16 is
    emulated there, and slower): ``training_args`` is set so.
    Any other ``dtype`` is kept as given, as is an unset one on a GPU (``auto``) or a CPU (``float32``).
    """
    import torch

    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    if model_args.dtype != "auto" or not on_cpu:
        return model_args.dtype or ("float32" if on_cpu else "auto")
    bf16 = cpu_computes_bf16()
    training_args.bf16, training_args.fp16 = bf16, False
    # What TrainingArguments derived from bf16/fp16 when it was built, and the Trainer reads; an accelerate
    # launch config's mixed_precision (the environment) still wins, as it does over bf16: false.
    training_args.mixed_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "bf16" if bf16 else "no")
    return "bfloat16" if bf16 else "float32"


def default_attention(dtype: str, training_args) -> str:
    """The attention of a training run that names none: PyTorch's SDPA, except bf16 on a CPU, where eager
    attention trained the real 0.5B 12% faster (0.449 vs 0.511 s a sentence): SDPA's CPU kernel for bf16,
    its backward above all, is slower than eager's matrix products at these lengths (benchmarks/README.md)."""
    import torch

    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    bf16 = dtype == "bfloat16" or bool(training_args.bf16)
    return "eager" if on_cpu and bf16 else "sdpa"


def build_tiny_model_in_place(path: str, data_args: NERDataArguments, seed: int) -> None:
    """Build the tiny model of ``data_args`` at ``path``, in one step as other machines see it.

    Each machine's first process builds it (`train`); machines sharing a disk must not see a half-written
    model: the model is written into a private folder beside ``path`` and renamed into place. When another
    machine's rename came first, its model (seeded alike) stays and this one is dropped.
    """
    import shutil
    import tempfile

    from ..tiny import build_tiny_model, default_texts

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shape = json.loads(data_args.tiny_model_shape) if data_args.tiny_model_shape else {}
        build_tiny_model(staging, data_args.tiny_model_arch, default_texts(), seed=seed, **shape)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real error (permissions, a file in the way)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass
class TrainingData:
    """The records a run trains and evaluates on, the dev examples of its F1, and its retrieved shots."""

    train_records: list[dict]
    eval_records: list[dict] | None
    eval_examples: list | None
    prompt: PromptTemplate
    shots: tuple | None = None


def training_data(data_args: NERDataArguments, prompt: PromptTemplate, eval_needed: bool) -> TrainingData:
    """Read the train and eval files (`load_split`) and, with ``train_shots``, put each sentence's retrieved
    shots into its prompt; `UsageError` for an evaluation without an eval file."""
    train_examples, train_records, prompt = load_split(
        data_args.train_file, data_args, prompt, data_args.max_train_samples
    )
    eval_examples, eval_records = None, None
    if data_args.eval_file:
        eval_examples, eval_records, _ = load_split(data_args.eval_file, data_args, prompt, data_args.max_eval_samples)
    if eval_records is None and eval_needed:
        raise UsageError("eval_strategy is set but no eval_file was given")
    data = TrainingData(train_records, eval_records, eval_examples, prompt)
    if data_args.train_shots:
        if train_examples is None:
            raise UsageError(
                "train_shots needs a CLUENER/BIO train_file: `llm-ner convert` output holds finished prompts"
            )
        from ..shots import ShotPool

        data.shots = (ShotPool(train_examples, "similar", source=data_args.train_file), data_args.train_shots)
        add_retrieved_shots(train_examples, train_records, prompt, data_args.answer_format, *data.shots)
        if eval_examples is not None:
            add_retrieved_shots(eval_examples, eval_records, prompt, data_args.answer_format, *data.shots)
    return data


def load_tokenizer(model_args, training_args):
    """The model's tokenizer, thinking off by default, with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    disable_thinking_by_default(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_trainer(data: TrainingData, data_args: NERDataArguments, training_args, model_args, callbacks=None):
    """The `NERSFTTrainer` of a run: the model's load settings (dtype, attention, quantization, one copy per
    process for 4-bit), LoRA on every linear projection unless told otherwise, the F1 evaluation."""
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from trl import get_peft_config, get_quantization_config

    from .callbacks import F1Evaluation
    from .trainer import NERSFTTrainer

    quantization_config = get_quantization_config(model_args)
    dtype = resolve_training_dtype(model_args, training_args)
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation or default_attention(dtype, training_args),
        "dtype": dtype,
    }
    if quantization_config is not None and torch.cuda.is_available():
        # Quantized weights are placed at load time: one full copy per process.
        model_init_kwargs["device_map"] = {"": PartialState().local_process_index}
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs
    peft_config = get_peft_config(model_args)
    if peft_config is not None and not model_args.lora_target_modules:
        peft_config.target_modules = "all-linear"  # every linear projection, not only q/v
    f1 = F1Evaluation(
        f1_subset(data.eval_examples or [], data_args.f1_eval_samples, training_args.seed),
        data.prompt,
        data_args.answer_format,
        data_args.f1_eval_batch_size,
        data_args.f1_max_new_tokens,
        data_args.f1_eval_bf16_copy,
        data.shots,
    )
    return NERSFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=Dataset.from_list(data.train_records),
        eval_dataset=Dataset.from_list(data.eval_records) if data.eval_records else None,
        processing_class=load_tokenizer(model_args, training_args),
        peft_config=peft_config,
        quantization_config=quantization_config,
        callbacks=callbacks,
        f1=f1,
        shared_prefix=data_args.shared_prefix,
    )


def finish(trainer, training_args) -> None:
    """After training: the final model saved (unless the last evaluation already did), the final evaluation
    (run at most once, `final_metrics`) and its summary, the process group ended."""
    # Saved before any final evaluation: at the last step when the trainer evaluates there, else now;
    # again when the trainer loaded the best checkpoint at the end.
    if trainer.final_save.saved_at != trainer.state.global_step or training_args.load_best_model_at_end:
        trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        end_segment(training_args.output_dir, trainer.state.global_step)
        log.info(f"model saved to {training_args.output_dir}")
        write_model_card(training_args.output_dir)  # the Hub's README.md, in place of peft's empty template
    if trainer.eval_dataset is not None:
        metrics = final_metrics(trainer)
        trainer.save_metrics("eval", metrics)
        if trainer.accelerator.is_main_process:
            shown = ("eval_loss", "eval_f1", "eval_precision", "eval_recall", "eval_parse_failure_rate")
            log.info(f"final evaluation: { {k: round(v, 4) for k, v in metrics.items() if k in shown} }")
    # Under torchrun, a process leaving with its gloo/NCCL group alive can abort at exit ("terminate
    # called without an active exception") after everything was saved; end the group first.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def train(data_args: NERDataArguments, training_args, model_args, callbacks=None):
    """Fine-tune, evaluate and save; returns the trainer (used by tests)."""
    check_versions()  # before any model loads: a named floor, not an IndexError at step 1
    import warnings

    warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
    if not data_args.train_file:
        raise UsageError("train_file is required (CLUENER/BIO file or `llm-ner convert` output)")
    if not model_args.model_name_or_path:
        raise UsageError("model_name_or_path is required (hub id or local directory)")
    check_training_bounds(training_args, model_args)  # parse_arguments did; a library caller's too
    # The prompt before any model is built or loaded: a mismatch with a converted file stops here.
    quiet = training_args.process_index != 0  # one warning, not one per process
    prompt, answer_format = resolve_prompt(data_args, warn=(lambda _: None) if quiet else None)
    data_args = dataclasses.replace(data_args, prompt=data_args.prompt or prompt.name, answer_format=answer_format)
    checkpoint = checkpoint_to_resume(training_args)
    data = training_data(data_args, prompt, training_args.eval_strategy != "no")  # its readers say what is wrong
    # A resume with other settings stops here, before any model is built or loaded or the record rewritten.
    settings = training_settings(data_args, training_args, model_args, prompt)
    segments = [*earlier_segments(checkpoint, settings), new_segment(checkpoint)]
    if data_args.tiny_model_arch and not Path(model_args.model_name_or_path).exists():
        # main_process_first is per machine: machines without a shared disk each need their own copy.
        with training_args.main_process_first(desc="building the tiny model"):
            if not Path(model_args.model_name_or_path).exists():
                build_tiny_model_in_place(model_args.model_name_or_path, data_args, training_args.seed)
    trainer = build_trainer(data, data_args, training_args, model_args, callbacks)
    check_lengths(trainer, {"train": data.train_records, "eval": data.eval_records}, training_args.max_length)
    if trainer.accelerator.is_main_process:
        save_run_metadata(
            training_args.output_dir, data.prompt, data_args, model_args, training_args, settings, segments
        )
    from .callbacks import RecordInCheckpoints

    trainer.add_callback(RecordInCheckpoints())
    trainer.train(resume_from_checkpoint=checkpoint)
    finish(trainer, training_args)
    return trainer


def main(argv: list[str] | None = None, callbacks=None):
    """Entry point of `train_sft.py` and `llm-ner train` (YAML --config plus CLI overrides)."""
    data_args, training_args, model_args = parse_arguments(argv)
    return train(data_args, training_args, model_args, callbacks=callbacks)
