"""What a training run does around its steps: the generated-answer F1 of every evaluation (`F1Evaluation`),
the final model saved before the last evaluation (`SaveBeforeLastEvaluation`), the run record copied into each
checkpoint (`RecordInCheckpoints`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..answer_format import answer_to_spans
from ..data import Example
from ..generation import cpu_computes_bf16, generate_answers, merged_copy
from ..logs import progress_bar
from ..metrics import span_scores
from ..parsing import ParseStats
from ..prompting import PromptTemplate


class SaveBeforeLastEvaluation(TrainerCallback):
    """At the last step, save the final model into ``output_dir`` before the trainer evaluates it (the trainer
    evaluates first, then writes the checkpoint): a long or failed evaluation never loses the training, and that
    evaluation is the final one (`run.final_metrics` does not run it again)."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.saved_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps and control.should_evaluate and self.saved_at != state.global_step:
            self.trainer.save_model(args.output_dir)
            self.saved_at = state.global_step
        return control

    on_epoch_end = on_step_end


class RecordInCheckpoints(TrainerCallback):
    """After each checkpoint is saved, the run record copied into it (`resume.record_checkpoint`)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from .resume import record_checkpoint

            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            record_checkpoint(args.output_dir, checkpoint, state.global_step)
        return control


def f1_metrics(gold: list[Example], answers: list[str], prompt: PromptTemplate, prefix: str = "eval") -> dict:
    """Span micro P/R/F1, per-class F1 and parse counters of generated answers."""
    stats = ParseStats()
    predicted = []
    for ex, answer in zip(gold, answers):
        spans, answer_stats = answer_to_spans(ex.text, answer, prompt.schema)
        stats += answer_stats
        predicted.append(spans)
    scores = span_scores([ex.spans for ex in gold], predicted, prompt.schema.keys if prompt.schema else None)
    metrics = {
        f"{prefix}_f1": scores.micro.f1,
        f"{prefix}_precision": scores.micro.precision,
        f"{prefix}_recall": scores.micro.recall,
        f"{prefix}_macro_f1": scores.macro.f1,
        f"{prefix}_parse_failure_rate": stats.parse_failures / max(1, stats.answers),
        f"{prefix}_hallucination_rate": stats.hallucinated / max(1, stats.mentions),
    }
    for label, score in scores.per_class.items():
        metrics[f"{prefix}_f1_{label}"] = score.f1
    return metrics


@dataclass
class F1Evaluation:
    """The generated-answer F1 of every evaluation: ``examples`` (a fixed dev subset) decoded in ``prompt`` and
    ``answer_format`` (with the retrieved ``shots`` = (ShotPool, k) of a ``train_shots`` run), ``batch_size`` rows
    a batch, answers bounded by ``max_new_tokens`` (default: from each sentence), on a CPU with bf16 instructions
    from a merged bf16 copy of a float32 model (``bf16_copy``, as extraction loads it there).

    Not a `TrainerCallback`: its metrics join the evaluation's before the trainer logs them and picks the best
    checkpoint by them (``metric_for_best_model: eval_f1``); the trainer's `evaluation_loop` calls it.
    """

    examples: list[Example]
    prompt: PromptTemplate
    answer_format: str = "mentions"
    batch_size: int = 32
    max_new_tokens: int | None = None
    bf16_copy: bool = True
    shots: tuple | None = None

    def conversations(self, examples: list[Example]) -> list[list[dict]]:
        """The prompts of the F1 sentences: with the retrieved shots of a ``train_shots`` run, as extraction."""
        if self.shots is None:
            return [self.prompt.messages(ex.text, self.answer_format) for ex in examples]
        pool, k = self.shots
        chosen = pool.select_many([ex.text for ex in examples], k)
        return [self.prompt.messages(ex.text, self.answer_format, shots) for ex, shots in zip(examples, chosen)]

    def model_to_decode(self, trainer, dtype):
        """The trained model, or on a CPU with bf16 instructions a bf16 copy of a float32 one, adapter merged."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        on_cpu = trainer.accelerator.device.type == "cpu"
        if dtype is None and on_cpu and self.bf16_copy and model.dtype == torch.float32 and cpu_computes_bf16():
            return merged_copy(model, torch.bfloat16)  # what extraction loads on this CPU
        return model

    def __call__(self, trainer, prefix: str = "eval") -> dict:
        """Decode the subset (sharded over the trainer's processes, a progress bar on the main one) and score it."""
        accelerator = trainer.accelerator
        shard = self.examples[accelerator.process_index :: accelerator.num_processes]
        # Generation runs under the trainer's mixed precision, entered here with torch.autocast, so every forward
        # generate() calls gets the same precision (PEFT's base model lacks the mixed-precision wrapper of the
        # model around it). Not accelerator.autocast(): in accelerate 1.4 (our floor) it stays entered when its
        # body raises. The shared-prefix cache is reused in full precision only: under autocast, transformers
        # 5.2's static cache takes its dtype from the rotated keys (float32) and then refuses the bf16 values.
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision))
        precision = torch.autocast(accelerator.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        model = self.model_to_decode(trainer, dtype)
        answers: list[str] = []
        if shard:
            bar = progress_bar(len(shard), f"{prefix} F1 generation", accelerator.is_main_process)
            with bar, precision:
                answers = generate_answers(
                    model,
                    trainer.processing_class,
                    self.conversations(shard),
                    texts=[ex.text for ex in shard],
                    progress=bar.update,
                    batch_size=self.batch_size,
                    max_new_tokens=self.max_new_tokens,
                    reuse_prefix=dtype is None,
                )
        by_id = dict(gather_object(list(zip([ex.id for ex in shard], answers))))
        return f1_metrics(self.examples, [by_id[ex.id] for ex in self.examples], self.prompt, prefix)
