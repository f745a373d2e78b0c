"""The trainer: TRL's `SFTTrainer` with the project's loss and evaluation.

The loss covers the answer tokens only and projects only those positions onto the vocabulary (`compute_loss`).
The tokens every row of a batch starts with (the instructions: 98 of ~155 with ``cluener_zh_short``) are computed
once per pass, with gradients, and each row's own tokens on their KV cache (`with_shared_prefix`): the loss and
LoRA gradients of whole rows (tests/test_shared_prefix.py), about 2.3x fewer tokens computed.
"""

from __future__ import annotations

import logging

import torch
from peft.helpers import disable_input_dtype_casting
from trl import SFTTrainer

from ..generation.shared_prefix import MIN_SHARED_PREFIX, cache_argument, prefix_cache
from .callbacks import F1Evaluation, SaveBeforeLastEvaluation

log = logging.getLogger(__name__)


def logits_mask_supported() -> bool:
    """Whether the installed transformers takes a 2-D boolean ``logits_to_keep`` mask (5.21 on).

    Older versions index the sequence dimension with it and fail with ``IndexError``; they
    accept a 1-D index of positions, which `compute_loss` then uses instead.
    """
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).release >= (5, 21)


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


class NERSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with our loss (answer positions only, the shared prefix once per batch, exact gradients),
    the eval loss through it, and the generated-answer F1 of ``f1`` (`callbacks.F1Evaluation`) in every
    evaluation."""

    def __init__(self, *args, f1: F1Evaluation | None = None, shared_prefix: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.final_save = SaveBeforeLastEvaluation(self)
        self.add_callback(self.final_save)
        self.logits_mask_supported = logits_mask_supported()
        self.f1 = f1 if f1 is not None and f1.examples else None
        self.shared_prefix = shared_prefix
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
        self.record_metrics(inputs, model_inputs, logits, targets)
        return loss

    def record_metrics(self, inputs: dict, model_inputs: dict, logits, targets) -> None:
        """TRL's token accuracy and token count of a pass, and (training) the padding share of what it computed."""
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            correct = self.accelerator.gather_for_metrics((logits.argmax(-1) == targets).sum()).sum()
            valid = self.accelerator.gather_for_metrics(torch.tensor(targets.numel(), device=logits.device)).sum()
        self._metrics[mode]["mean_token_accuracy"].append((correct / valid.clamp(min=1)).item())
        if mode == "train":
            if "attention_mask" in inputs:
                tokens = inputs["attention_mask"].sum()
                self._metrics[mode]["padding_share"].append(padding_share(inputs, model_inputs))
            else:  # padding-free: one flattened row
                tokens = torch.tensor(inputs["input_ids"].numel(), device=logits.device)
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens).sum().item())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

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
                log.warning(f"note: {message}")

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
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.f1 is not None:
            output.metrics.update(self.f1(self, metric_key_prefix))
        return output
