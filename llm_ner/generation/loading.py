"""Loading a model to generate with: the dtype rule (bf16 where the hardware computes it), the device checks,
a LoRA adapter merged into the weights, and a merged low-precision copy of a model in training."""

from __future__ import annotations

import warnings

import torch

from .tokens import load_tokenizer


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), as torch detects them.

    There, generating in bfloat16 is 2.4x faster than float32 on the real Qwen2.5 0.5B, at the same span F1
    (benchmarks/README.md); elsewhere bfloat16 is emulated and slower, so float32 stays.
    """
    import torch.cpu

    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def auto_dtype(device: str) -> torch.dtype:
    """The dtype ``dtype="auto"`` loads in: bf16 on GPU and on a CPU that computes it, float32 elsewhere."""
    return torch.bfloat16 if device.startswith("cuda") or cpu_computes_bf16() else torch.float32


def merged_copy(model, dtype: torch.dtype):
    """A copy of ``model`` to generate with, in ``dtype``, its LoRA adapter merged (as `load_model` merges
    it); ``model`` itself is left as it was (its training goes on)."""
    import copy

    clone = copy.deepcopy(model)
    if hasattr(clone, "merge_and_unload"):
        clone = clone.merge_and_unload()
    for module in clone.modules():
        # A forward wrapped on the trained model's instance (the Trainer's accelerate does) is copied as
        # a closure over the original: the copy would run the float32 model with its adapter.
        module.__dict__.pop("forward", None)
    return clone.to(dtype).eval()


def check_device(device: str, load_in_4bit: bool = False) -> str:
    """``device``; `UsageError` for a CUDA device where no GPU is visible, or 4-bit weights off CUDA."""
    from ..errors import UsageError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is available to this process")
    if load_in_4bit and not device.startswith("cuda"):
        raise UsageError("--load-in-4bit needs a CUDA GPU (bitsandbytes)")
    return device


def load_model(
    model_name_or_path: str,
    adapter: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    load_in_4bit: bool = False,
):
    """Load a model (hub id or local directory), optionally with a LoRA adapter on top.

    An adapter directory alone is enough: its base model is read from ``adapter_config.json``. The adapter
    is merged into the weights (not under ``load_in_4bit``): the model is loaded to generate.
    SDPA attention; ``dtype="auto"``: bf16 on GPU and on a CPU that computes it (`cpu_computes_bf16`),
    float32 on other CPUs.
    """
    from transformers import AutoModelForCausalLM

    from ..versions import check_versions

    check_versions(("transformers", "peft") if adapter else ("transformers",))
    device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"), load_in_4bit)
    torch_dtype = auto_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    kwargs: dict = {"dtype": torch_dtype, "attn_implementation": "sdpa"}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    if adapter:
        from peft import PeftModel

        from ..versions import PEFT_CHECKPOINTING_WARNING

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
        if not load_in_4bit:
            # Loaded to generate, never to train: the adapter's product folded into the weights spares the
            # two extra matrix products per layer at every step (4-bit weights cannot take it exactly).
            model = model.merge_and_unload()
    if not load_in_4bit:
        model.to(device)
    model.eval()
    return model, load_tokenizer(model_name_or_path, adapter)
