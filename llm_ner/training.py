"""Training: LoRA / QLoRA / full supervised fine-tuning of Qwen models with TRL's SFTTrainer.

`train_sft.py` (and `llm-ner train`) parse three dataclasses with `trl.TrlParser` - our
`NERDataArguments`, TRL's `SFTConfig` and `ModelConfig` - and call `train`. The data is
converted on the fly from CLUENER/BIO files (or read from `llm-ner convert` output) into TRL's
conversational prompt-completion records, so the loss covers the assistant answer and its
end-of-turn token only. A converted file's prompt and answer format (its ``.meta.json`` sidecar) are
adopted for the run record and the F1 evaluation; arguments naming others are refused
(`resolve_prompt`). Every `eval_steps` the trainer also generates answers for a fixed dev
subset, parses them and logs span F1 (``eval_f1``), per-class F1 and the parse-failure rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .answer_format import ANSWER_FORMATS, answer_to_spans
from .data import INPUT_FORMATS, Example, JsonValueError, decode_json, load_examples
from .errors import DataError, UsageError
from .generation import (
    MIN_SHARED_PREFIX,
    cache_argument,
    chat_prompt_ids,
    cpu_computes_bf16,
    disable_thinking_by_default,
    generate_answers,
    merged_copy,
    prefix_cache,
)
from .metrics import span_scores
from .parsing import ParseStats
from .prompting import (
    DEFAULT_PROMPT,
    Conversion,
    PromptTemplate,
    conversion_sidecar,
    load_prompt,
    prompt_identity,
    read_conversion,
    to_conversation,
)
from .run_dir import RUN_RECORD, RunRecord, adapter_base_model
from .versions import PEFT_CHECKPOINTING_WARNING, check_versions

# Qwen3 must never think: every record carries this, and the saved template defaults to it.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}
DEFAULT_ANSWER_FORMAT = "mentions"  # NERDataArguments.answer_format when neither it nor a converted file says


@dataclass
class NERDataArguments:
    """Data and evaluation arguments of `train_sft.py` (beside TRL's SFTConfig and ModelConfig)."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: CLUENER JSON lines, a BIO/BIOES/BMES file, or `llm-ner convert` output."},
    )
    eval_file: str | None = field(
        default=None, metadata={"help": "Dev data (same formats); CLUENER/BIO is needed for F1 during training."}
    )
    input_format: str = field(
        default="auto", metadata={"help": "format of train_file/eval_file (auto guesses)", "choices": INPUT_FORMATS}
    )
    # None = not asked for: a converted file's own (its sidecar), else cluener_zh / mentions (`resolve_prompt`).
    prompt: str | None = field(
        default=None,
        metadata={
            "help": f"Prompt YAML path or shipped name (default: the converted train_file's, else {DEFAULT_PROMPT})."
        },
    )
    answer_format: str | None = field(
        default=None,
        metadata={
            "help": f"answer JSON layout (default: the converted train_file's, else {DEFAULT_ANSWER_FORMAT})",
            "choices": ANSWER_FORMATS,
        },
    )
    lenient: bool = field(default=False, metadata={"help": "Skip bad records (reported) instead of stopping."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N dev records for the loss."}
    )
    f1_eval_samples: int = field(
        default=200,
        metadata={"help": "Dev sentences (a fixed seeded sample) decoded for F1 at each evaluation; 0 = off."},
    )
    f1_eval_batch_size: int = field(default=32, metadata={"help": "Generation batch size of the F1 evaluation."})
    f1_eval_bf16_copy: bool = field(
        default=True,
        metadata={
            "help": "On a CPU with bf16 instructions, a float32 model decodes the F1 subset from a bf16 copy with "
            "the adapter merged, as `llm-ner extract` loads it there (about 3x faster); false: the model itself."
        },
    )
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "Compute the tokens every row of a batch starts with (the instructions) once per batch, with "
            "exact gradients, instead of once per row; false: whole rows (the slower reference)."
        },
    )
    f1_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Answer length bound of the F1 evaluation (default: from the sentence length)."}
    )
    train_shots: int = field(
        default=0,
        metadata={
            "help": "Retrieval-augmented fine-tuning: the K most similar other train sentences (TF-IDF, as "
            "`extract --shots K --shot-selection similar`) as worked examples in every training and eval prompt; "
            "extract then with --shots K --shots-from TRAIN_FILE. 0: none. Needs a CLUENER/BIO train_file."
        },
    )
    tiny_model_arch: str | None = field(
        default=None,
        metadata={
            "help": "qwen2 or qwen3: build a tiny random model at model_name_or_path if it does not exist (CPU demo)."
        },
    )
    tiny_model_shape: str | None = field(
        default=None, metadata={"help": 'JSON shape of the tiny model, e.g. {"hidden_size": 256, "num_layers": 4}.'}
    )

    def __post_init__(self) -> None:
        for name in ("train_shots", "f1_eval_samples"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("f1_eval_batch_size",):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be 1 or more, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------
# Data


def _is_conversation_file(path: str) -> bool:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = decode_json(line)
                except ValueError:  # JsonValueError too: then not a conversation file; its reader says why
                    return False
                return isinstance(first, dict) and "prompt" in first and "completion" in first
    return False


def load_split(
    path: str, data_args: NERDataArguments, prompt: PromptTemplate, limit: int | None = None
) -> tuple[list[Example] | None, list[dict], PromptTemplate]:
    """Examples (None for `convert` output) and prompt-completion records of one file."""
    if _is_conversation_file(path):
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = decode_json(line)
                except JsonValueError as exc:  # nesting, huge numbers, lone surrogates: one line, not a traceback
                    raise DataError(path, number, exc.reason) from None
                try:
                    records.append({"prompt": record["prompt"], "completion": record["completion"]})
                except (KeyError, TypeError):
                    raise DataError(path, number, "not a prompt-completion record (run `llm-ner convert`)") from None
        records = records[:limit]
        for record in records:
            record["chat_template_kwargs"] = CHAT_TEMPLATE_KWARGS
        return None, records, prompt
    labels = prompt.schema.keys if prompt.schema else None
    examples, report = load_examples(path, data_args.input_format, labels=labels, lenient=data_args.lenient)
    if report.skipped or report.warnings:
        report.print()
    examples = examples[:limit]
    if prompt.schema is None:
        prompt = prompt.with_labels(s.label for ex in examples for s in ex.spans)
    records = []
    for ex in examples:
        record = to_conversation(ex, prompt, data_args.answer_format or DEFAULT_ANSWER_FORMAT)
        records.append(
            {
                "prompt": record["prompt"],
                "completion": record["completion"],
                "chat_template_kwargs": CHAT_TEMPLATE_KWARGS,
            }
        )
    return examples, records, prompt


def add_retrieved_shots(
    examples: list[Example], records: list[dict], prompt: PromptTemplate, answer_format: str, pool, k: int
) -> None:
    """Put the ``k`` sentences of ``pool`` most similar to each example (never the example itself) into its
    record's prompt as worked examples, as `extract --shots K --shot-selection similar` does (in place)."""
    chosen = pool.select_many([ex.text for ex in examples], k)
    for example, record, shots in zip(examples, records, chosen):
        record["prompt"] = prompt.messages(example.text, answer_format, shots)


def _describe(conversion: Conversion) -> str:
    return f"prompt {conversion.prompt.name} ({conversion.prompt_identity})"


def resolve_prompt(data_args: NERDataArguments, warn=None) -> tuple[PromptTemplate, str]:
    """The run's prompt and answer format, read before any model loads.

    A converted train_file or eval_file (`llm-ner convert` output) with its sidecar brings the prompt and
    answer format its records were made with: they are adopted, and ``prompt`` / ``answer_format``
    arguments naming others (by content, not name) are refused with a `UsageError` naming both, as are a
    train and an eval file converted differently. Otherwise the arguments', by default cluener_zh and
    mentions. A converted file without a sidecar (older llm-ner), or rewritten since its sidecar was
    written, is used as it is with a warning (``warn``, default stderr) that its prompt was not checked.
    """
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    converted: list[tuple[str, str, Conversion]] = []
    unchecked: list[str] = []
    for option, path in (("train_file", data_args.train_file), ("eval_file", data_args.eval_file)):
        if not path or not Path(path).is_file() or not _is_conversation_file(path):
            continue
        conversion = read_conversion(path)
        if conversion is None:
            unchecked.append(f"{option} {path} has no {conversion_sidecar(path).name} (converted by an older llm-ner?)")
        elif not conversion.describes(path):
            unchecked.append(f"{option} {path} changed after {conversion_sidecar(path).name} was written")
        else:
            converted.append((option, path, conversion))

    asked = load_prompt(data_args.prompt) if data_args.prompt else None
    for option, path, conversion in converted:
        if asked is not None:
            wanted = asked if asked.schema else asked.with_labels(conversion.prompt.schema.keys)
            if prompt_identity(wanted) != conversion.prompt_identity:
                raise UsageError(
                    f"{option} {path} was converted with {_describe(conversion)}; the config or command line "
                    f"says prompt {data_args.prompt} ({prompt_identity(wanted)}): drop one, or convert again "
                    f"with --prompt {data_args.prompt}"
                )
        if data_args.answer_format and data_args.answer_format != conversion.answer_format:
            raise UsageError(
                f"{option} {path} was converted with --format {conversion.answer_format}; the config or command "
                f"line says answer_format {data_args.answer_format}: drop one, or convert again with "
                f"--format {data_args.answer_format}"
            )
    if len(converted) == 2:
        (_, train_path, train), (_, eval_path, dev) = converted
        if (train.prompt_identity, train.answer_format) != (dev.prompt_identity, dev.answer_format):
            raise UsageError(
                f"train_file {train_path} was converted with {_describe(train)}, --format {train.answer_format}; "
                f"eval_file {eval_path} with {_describe(dev)}, --format {dev.answer_format}: convert both alike"
            )

    if converted:
        prompt, answer_format = converted[0][2].prompt, converted[0][2].answer_format
    else:
        prompt, answer_format = asked or load_prompt(DEFAULT_PROMPT), data_args.answer_format or DEFAULT_ANSWER_FORMAT
    for reason in unchecked:
        warn(f"{reason}: its prompt could not be checked; the run records prompt {prompt.name}, {answer_format}")
    return prompt, answer_format


def f1_subset(examples: list[Example], size: int, seed: int) -> list[Example]:
    """A fixed, seeded sample of dev sentences for F1 during training (in file order)."""
    if size <= 0 or not examples:
        return []
    if size >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), size))
    return [examples[i] for i in chosen]


# ---------------------------------------------------------------------------------------------
# F1 during training


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


def logits_mask_supported() -> bool:
    """Whether the installed transformers takes a 2-D boolean ``logits_to_keep`` mask (5.21 on).

    Older versions index the sequence dimension with it and fail with ``IndexError``; they
    accept a 1-D index of positions, which `compute_loss` then uses instead.
    """
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).release >= (5, 21)


def check_lengths(trainer, records: dict[str, list[dict]], max_length: int | None) -> None:
    """Stop before training when ``max_length`` leaves a split no example; warn when it drops or cuts some.

    TRL cuts every tokenized example to ``max_length`` and silently drops those whose prompt alone
    fills it (no answer token left to learn): an eval set dropped whole used to train for hours and
    then fail in the final evaluation with ``IndexError: Invalid key: 0 is out of bounds for size 0``.
    ``records`` maps a split name to the records given to the trainer; the trainer's prepared datasets
    say what is left.
    """
    if max_length is None:
        return
    datasets = {"train": trainer.train_dataset, "eval": trainer.eval_dataset}
    for split, given in records.items():
        prepared = datasets.get(split)
        if not given or prepared is None or not hasattr(prepared, "__len__"):
            continue
        # Counted here, not from what TRL kept: older TRL (our floor, 1.8) keeps such examples, cut short.
        lengths = [len(chat_prompt_ids(trainer.processing_class, r["prompt"])) for r in given]
        dropped = sum(length >= max_length for length in lengths)
        if dropped == len(given):
            raise UsageError(
                f"max_length={max_length} leaves no {split} example: every prompt alone is at least that long "
                f"({min(lengths)} to {max(lengths)} tokens); raise max_length or use a shorter prompt"
            )
        if dropped and trainer.accelerator.is_main_process:
            print(
                f"warning: max_length={max_length} drops {dropped} of {len(given)} {split} examples "
                "(their prompt alone fills it)",
                file=sys.stderr,
            )
        if "input_ids" not in prepared.column_names or not trainer.accelerator.is_main_process:
            continue
        cut = sum(len(ids) >= max_length for ids in prepared["input_ids"])
        if cut:
            print(
                f"warning: {cut} of {len(prepared)} {split} examples reach max_length={max_length} "
                "(cut there, an answer loses its end)",
                file=sys.stderr,
            )


def checkpointed(model) -> bool:
    """Whether any layer of ``model`` recomputes its activations in the backward pass (gradient checkpointing);
    read from the layers, as transformers does, without its renamed, warning properties."""
    return any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules())


def padding_share(inputs: dict, model_inputs: dict) -> float:
    """The share of the positions a training pass computed that were padding: the batch's shared prefix
    counts once (one row), every row's rest once per row, padding is the mask's zeros (all in the rests)."""
    rows, width = inputs["input_ids"].shape
    prefix = width - model_inputs["input_ids"].shape[1]
    computed = prefix + rows * (width - prefix)
    return float(rows * width - int(inputs["attention_mask"].sum())) / computed


# What the model inputs of a collated SFT batch may hold for the shared-prefix eval loss (anything else,
# e.g. padding-free position ids, takes the plain path).
MODEL_INPUTS = {"input_ids", "attention_mask", "use_cache"}


def make_trainer_class():
    """SFTTrainer that adds generated-answer F1 to every evaluation (imports TRL lazily)."""
    import torch
    from accelerate.utils import gather_object
    from peft.helpers import disable_input_dtype_casting
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class SaveBeforeLastEvaluation(TrainerCallback):
        """At the last step, save the final model into ``output_dir`` before the trainer evaluates it (the
        trainer evaluates first, then writes the checkpoint): a long or failed evaluation never loses the
        training, and that evaluation is the final one (`final_metrics` does not run it again)."""

        def __init__(self, trainer) -> None:
            self.trainer = trainer
            self.saved_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps and control.should_evaluate and self.saved_at != state.global_step:
                self.trainer.save_model(args.output_dir)
                self.saved_at = state.global_step
            return control

        on_epoch_end = on_step_end

    class NERSFTTrainer(SFTTrainer):
        def __init__(
            self,
            *args,
            f1_examples=None,
            ner_prompt=None,
            answer_format="mentions",
            f1_batch_size=32,
            f1_max_new_tokens=None,
            f1_bf16_copy=True,
            shared_prefix=True,
            f1_shots=None,
            **kwargs,
        ):
            super().__init__(*args, **kwargs)
            self.final_save = SaveBeforeLastEvaluation(self)
            self.add_callback(self.final_save)
            self.logits_mask_supported = logits_mask_supported()
            self.f1_examples = f1_examples or []
            self.ner_prompt = ner_prompt
            self.answer_format = answer_format
            self.f1_batch_size = f1_batch_size
            self.f1_max_new_tokens = f1_max_new_tokens
            self.f1_bf16_copy = f1_bf16_copy
            self.shared_prefix = shared_prefix
            self.f1_shots = f1_shots  # (ShotPool, k): the retrieved shots of a train_shots run, else None
            self.noted: set[str] = set()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """Cross-entropy over answer tokens only, projecting only those positions onto the vocabulary.

            The same loss as full logits (tested), without the (batch, length, vocab) tensor of the
            prompt positions, which are most of every sequence. TRL's fused head does this on Triton
            devices only; this path is plain PyTorch and works everywhere.
            """
            labels = inputs.get("labels")
            if return_outputs or labels is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != -100  # position t predicts token t + 1
            targets = labels[:, 1:][keep[:, :-1]]
            model_inputs = {"use_cache": False, **{k: v for k, v in inputs.items() if k != "labels"}}
            # Under accelerate's autocast wrapper, PEFT's cast of each LoRA input to the float32 weights' dtype
            # is undone by autocast at once: an exact round trip that copied every LoRA input twice (6% of a
            # bf16 training step of the 0.5B on CPU). Without autocast a bf16 input needs it, and a checkpointed
            # layer recomputed in the backward pass (outside this block) must cast as its forward did.
            inner = self.accelerator.unwrap_model(model)
            uncast = hasattr(inner, "_original_forward") and not checkpointed(inner)
            with disable_input_dtype_casting(inner, active=uncast):
                # The instructions every row starts with, computed once (training and evaluation).
                model_inputs, keep = self.with_shared_prefix(model, model_inputs, keep)
                if self.logits_mask_supported:
                    outputs = model(**model_inputs, logits_to_keep=keep)
                    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1]).float()
                else:
                    # Older transformers take only a 1-D index: keep every column that any row needs,
                    # then pick each row's own positions (the same logits, so the same loss).
                    columns = keep.any(dim=0).nonzero().squeeze(1)
                    outputs = model(**model_inputs, logits_to_keep=columns)
                    logits = outputs.logits[keep[:, columns]].float()
            total = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
            count = targets.numel() if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if self.model.training else "eval"
            with torch.no_grad():
                correct = self.accelerator.gather_for_metrics((logits.argmax(-1) == targets).sum()).sum()
                valid = self.accelerator.gather_for_metrics(torch.tensor(targets.numel(), device=total.device)).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid.clamp(min=1)).item())
            if mode == "train":
                if "attention_mask" in inputs:
                    tokens = inputs["attention_mask"].sum()
                    self._metrics[mode]["padding_share"].append(padding_share(inputs, model_inputs))
                else:  # padding-free: one flattened row
                    tokens = torch.tensor(inputs["input_ids"].numel(), device=total.device)
                self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens).sum().item())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

        def with_shared_prefix(self, model, inputs: dict, keep):
            """``inputs`` without the leading tokens every row shares (where no row has a target), which
            come in as one row's KV cache instead; ``keep`` cut alike. Unchanged when that prefix is short.

            A batch then computes its instructions once, not once per row: with ``cluener_zh_short`` 98 of a
            mean 129 prompt tokens, with ``cluener_zh`` 496 of 527. In training the prefix is computed with
            gradients and its keys and values are expanded to the rows, so the backward pass sums every row's
            gradient into it: the loss and gradients of whole rows (tested). One difference remains where
            ``lora_dropout`` > 0: the rows share one dropout draw over the prefix positions.
            """
            ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
            if not self.shared_prefix:
                return inputs, keep
            if ids is None or mask is None or ids.dim() != 2 or len(ids) < 2 or set(inputs) - MODEL_INPUTS:
                if model.training and ids is not None and len(ids) > 1:
                    self.note_once("padding-free batches are computed whole: the shared prefix is not reused")
                return inputs, keep
            shared = (ids == ids[:1]).all(dim=0) & (mask == 1).all(dim=0) & ~keep.any(dim=0)
            length = min(int(shared.long().cumprod(dim=0).sum()), ids.shape[1] - 1)
            if length < MIN_SHARED_PREFIX:
                if model.training:
                    self.note_once(
                        f"the rows of a training batch share fewer than {MIN_SHARED_PREFIX} leading tokens (retrieved "
                        "shots in the prompt?): such batches are computed whole"
                    )
                return inputs, keep
            inner = self.accelerator.unwrap_model(model)  # DDP's own forward runs once per backward: the rest's
            if model.training and checkpointed(inner):
                # A checkpointed layer drops the cache (and would extend it again when the backward replays it).
                self.note_once(
                    "gradient checkpointing recomputes each layer without a KV cache: the shared prefix is not "
                    "reused in training (gradient_checkpointing: false trains faster where memory allows)"
                )
                return inputs, keep
            cache = prefix_cache(inner, ids[0, :length].tolist(), grad=torch.is_grad_enabled())
            for layer in cache.layers:  # one row of the prefix seen by every row (a view, not a copy)
                layer.keys = layer.keys.expand(len(ids), -1, -1, -1)
                layer.values = layer.values.expand(len(ids), -1, -1, -1)
            rest = {"input_ids": ids[:, length:], "attention_mask": mask, "use_cache": True}
            return {**rest, cache_argument(model): cache}, keep[:, length:]

        def note_once(self, message: str) -> None:
            """Say ``message`` once per run (on the main process): why batches take the slower path."""
            if message not in self.noted:
                self.noted.add(message)
                if self.accelerator.is_main_process:
                    print(f"note: {message}", file=sys.stderr)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            """The eval loss through `compute_loss` (answer positions only, the shared prefix once) when
            only the loss is asked for, as in every evaluation without ``compute_metrics``."""
            if not prediction_loss_only or inputs.get("labels") is None:
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach().mean(), None, None

        def evaluation_loop(
            self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
        ):
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
            if self.f1_examples:
                output.metrics.update(self.generated_f1(metric_key_prefix))
            return output

        def f1_conversations(self, examples: list[Example]) -> list[list[dict]]:
            """The prompts of the F1 sentences: with the retrieved shots of a ``train_shots`` run, as extraction."""
            if self.f1_shots is None:
                return [self.ner_prompt.messages(ex.text, self.answer_format) for ex in examples]
            pool, k = self.f1_shots
            chosen = pool.select_many([ex.text for ex in examples], k)
            return [self.ner_prompt.messages(ex.text, self.answer_format, shots) for ex, shots in zip(examples, chosen)]

        def generated_f1(self, prefix: str = "eval") -> dict:
            """Decode the F1 subset (sharded over processes, a progress bar on the main one) and score it."""
            from tqdm.auto import tqdm

            rank, world = self.accelerator.process_index, self.accelerator.num_processes
            shard = self.f1_examples[rank::world]
            # Generation runs under the trainer's mixed precision, entered here with torch.autocast, so
            # every forward generate() calls gets the same precision (PEFT's base model lacks the
            # mixed-precision wrapper of the model around it). Not accelerator.autocast(): in accelerate
            # 1.4 (our floor) it stays entered when its body raises. The shared-prefix cache is reused
            # in full precision only: under autocast, transformers 5.2's static cache takes its dtype
            # from the rotated keys (float32) and then refuses the bf16 values.
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))
            device_type = self.accelerator.device.type
            precision = torch.autocast(device_type, dtype=dtype) if dtype else contextlib.nullcontext()
            model = self.accelerator.unwrap_model(self.model)
            if (
                dtype is None
                and device_type == "cpu"
                and self.f1_bf16_copy
                and model.dtype == torch.float32
                and cpu_computes_bf16()
            ):
                model = merged_copy(model, torch.bfloat16)  # what extraction loads on this CPU
            answers: list[str] = []
            if shard:
                with (
                    tqdm(
                        total=len(shard),
                        desc=f"{prefix} F1 generation",
                        unit="sent",
                        disable=not self.accelerator.is_main_process,
                        dynamic_ncols=True,
                    ) as bar,
                    precision,
                ):
                    answers = generate_answers(
                        model,
                        self.processing_class,
                        self.f1_conversations(shard),
                        texts=[ex.text for ex in shard],
                        batch_size=self.f1_batch_size,
                        max_new_tokens=self.f1_max_new_tokens,
                        progress=bar.update,
                        reuse_prefix=dtype is None,
                    )
            pairs = gather_object(list(zip([ex.id for ex in shard], answers)))
            by_id = dict(pairs)
            return f1_metrics(self.f1_examples, [by_id[ex.id] for ex in self.f1_examples], self.ner_prompt, prefix)

    return NERSFTTrainer


# ---------------------------------------------------------------------------------------------
# Run metadata


def save_run_metadata(
    output_dir: str, prompt: PromptTemplate, data_args: NERDataArguments, model_args, training_args
) -> None:
    """Write the prompt, answer format and resolved config beside the model (`run_dir`)."""
    record = RunRecord(
        prompt_name=prompt.name,
        answer_format=data_args.answer_format,
        base_model=model_args.model_name_or_path,
        peft=bool(model_args.use_peft),
        load_in_4bit=bool(model_args.load_in_4bit),
    )
    config = {
        "data": dataclasses.asdict(data_args),
        "model": dataclasses.asdict(model_args),
        "training": json.loads(training_args.to_json_string()),
    }
    record.save(output_dir, prompt=prompt, train_config=config)


# ---------------------------------------------------------------------------------------------
# The run


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
    On a CPU it is bf16 weights with bf16 autocast where the CPU has bf16 instructions (`cpu_computes_bf16`:
    2.3x faster per step than float32, at the F1 of float32 in the same-data comparison of benchmarks/README.md),
    else float32 weights and no autocast (bf16 is emulated there, and slower): ``training_args`` is set so.
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

    from .tiny import build_tiny_model, default_texts

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


def train(data_args: NERDataArguments, training_args, model_args, callbacks=None):
    """Fine-tune, evaluate and save; returns the trainer (used by tests)."""
    check_versions()  # before any model loads: a named floor, not an IndexError at step 1
    import warnings

    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import get_peft_config, get_quantization_config

    warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
    if not data_args.train_file:
        raise UsageError("train_file is required (CLUENER/BIO file or `llm-ner convert` output)")
    if not model_args.model_name_or_path:
        raise UsageError("model_name_or_path is required (hub id or local directory)")

    # The prompt before any model is built or loaded: a mismatch with a converted file stops here.
    quiet = training_args.process_index != 0  # one warning, not one per process
    prompt, answer_format = resolve_prompt(data_args, warn=(lambda _: None) if quiet else None)
    data_args = dataclasses.replace(data_args, prompt=data_args.prompt or prompt.name, answer_format=answer_format)

    if data_args.tiny_model_arch and not Path(model_args.model_name_or_path).exists():
        # main_process_first is per machine: machines without a shared disk each need their own copy.
        with training_args.main_process_first(desc="building the tiny model"):
            if not Path(model_args.model_name_or_path).exists():
                build_tiny_model_in_place(model_args.model_name_or_path, data_args, training_args.seed)

    train_examples, train_records, prompt = load_split(
        data_args.train_file, data_args, prompt, data_args.max_train_samples
    )
    eval_examples, eval_records = None, None
    if data_args.eval_file:
        eval_examples, eval_records, _ = load_split(data_args.eval_file, data_args, prompt, data_args.max_eval_samples)
    shots = None
    if data_args.train_shots:
        if train_examples is None:
            raise UsageError(
                "train_shots needs a CLUENER/BIO train_file: `llm-ner convert` output holds finished prompts"
            )
        from .shots import ShotPool

        shots = (ShotPool(train_examples, "similar", source=data_args.train_file), data_args.train_shots)
        add_retrieved_shots(train_examples, train_records, prompt, data_args.answer_format, *shots)
        if eval_examples is not None:
            add_retrieved_shots(eval_examples, eval_records, prompt, data_args.answer_format, *shots)
    if eval_records is None and training_args.eval_strategy != "no":
        raise UsageError("eval_strategy is set but no eval_file was given")

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    disable_thinking_by_default(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

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

    trainer_class = make_trainer_class()
    trainer = trainer_class(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(eval_records) if eval_records else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=quantization_config,
        callbacks=callbacks,
        f1_examples=f1_subset(eval_examples or [], data_args.f1_eval_samples, training_args.seed),
        ner_prompt=prompt,
        answer_format=data_args.answer_format,
        f1_batch_size=data_args.f1_eval_batch_size,
        f1_max_new_tokens=data_args.f1_max_new_tokens,
        f1_bf16_copy=data_args.f1_eval_bf16_copy,
        shared_prefix=data_args.shared_prefix,
        f1_shots=shots,
    )
    check_lengths(trainer, {"train": train_records, "eval": eval_records}, training_args.max_length)
    if trainer.accelerator.is_main_process:
        save_run_metadata(training_args.output_dir, prompt, data_args, model_args, training_args)

    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # Saved before any final evaluation: at the last step when the trainer evaluates there, else now;
    # again when the trainer loaded the best checkpoint at the end.
    if trainer.final_save.saved_at != trainer.state.global_step or training_args.load_best_model_at_end:
        trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(f"model saved to {training_args.output_dir}", file=sys.stderr)
    if trainer.eval_dataset is not None:
        metrics = final_metrics(trainer)
        trainer.save_metrics("eval", metrics)
        if trainer.accelerator.is_main_process:
            summary = {
                k: round(v, 4)
                for k, v in metrics.items()
                if k in ("eval_loss", "eval_f1", "eval_precision", "eval_recall", "eval_parse_failure_rate")
            }
            print(f"final evaluation: {summary}", file=sys.stderr)
    # Under torchrun, a process leaving with its gloo/NCCL group alive can abort at exit ("terminate
    # called without an active exception") after everything was saved; end the group first.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return trainer


def merge_adapter(adapter_dir: str, out_dir: str, dtype: str = "float32") -> Path:
    """Merge a LoRA adapter into its base weights and save a plain model directory.

    The base is loaded unquantized (a QLoRA adapter merges into full-precision weights), the
    tokenizer keeps its thinking-off template default, and the run metadata travels along.
    """
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    adapter_base_model(adapter_dir)  # `UsageError` for a folder that is not an adapter, before loading anything
    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=getattr(torch, dtype))
    merged = model.merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    disable_thinking_by_default(tokenizer)
    tokenizer.save_pretrained(out)
    if (Path(adapter_dir) / RUN_RECORD).is_file():
        RunRecord.load(adapter_dir).copy_to(out, merged_from=str(adapter_dir), peft=False, load_in_4bit=False)
    return out


def make_parser():
    check_versions()  # an old TRL/transformers would fail below on a missing class or config field
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((NERDataArguments, SFTConfig, ModelConfig))


def parse_arguments(argv: list[str] | None = None):
    """(data, training, model) arguments: a YAML ``--config`` plus command-line overrides."""
    import warnings

    with warnings.catch_warnings():
        # TRL's SFTConfig defaults gradient_checkpointing (and our configs use that name, which older
        # transformers need); transformers 5.2x renamed it activation_checkpointing and warns on every run.
        warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)
        parser = make_parser()
        argv = list(argv) if argv is not None else sys.argv[1:]
        check_config(argv, parser)
        return parser.parse_args_and_config(args=argv)


def check_config(argv: list[str], parser) -> None:
    """Read the ``--config`` YAML of ``argv`` as TRL will and stop with one line where TRL would raise
    a traceback: `DataError` (FILE:LINE) for a file that is unreadable, not YAML, not a mapping, or
    names an option none of ``parser``'s dataclasses has; `UsageError` for ``--config`` without a file."""
    import yaml

    if "--config" not in argv:
        return
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise UsageError("--config needs a YAML file")
    path = Path(argv[index + 1])
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8 (byte {exc.start})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(path, mark.line + 1 if mark else None, f"invalid YAML: {problem}") from None
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a {type(config).__name__}"
        raise DataError(path, None, f"expected a YAML mapping of option: value, got {got}")
    known = {action.dest for action in parser._actions} | {"env"}  # TRL reads env: itself
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise DataError(path, None, f"unknown option {', '.join(unknown)} (`llm-ner train --help` lists them)")


def main(argv: list[str] | None = None, callbacks=None):
    """Entry point of `train_sft.py` and `llm-ner train` (YAML --config plus CLI overrides)."""
    data_args, training_args, model_args = parse_arguments(argv)
    return train(data_args, training_args, model_args, callbacks=callbacks)
