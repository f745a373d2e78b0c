"""`llm-ner merge`: a LoRA adapter folded into its base weights, saved as a plain model directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..data import check_output_folder, check_output_path, clear_output_folder
from ..generation.tokens import disable_thinking_by_default
from ..options import CliOptions, option
from .model_card import write_model_card
from .run_dir import RUN_RECORD, RunRecord, adapter_base_model

log = logging.getLogger(__name__)


def merge_adapter(adapter_dir: str, out_dir: str, dtype: str = "float32", replace: bool = False) -> Path:
    """Merge a LoRA adapter into its base weights and save a plain model directory.

    The base is loaded unquantized (a QLoRA adapter merges into full-precision weights), the
    tokenizer keeps its thinking-off template default, and the run metadata travels along.
    ``replace``: empty ``out_dir`` once the merge succeeded, just before saving (a failed load keeps the old model).
    """
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    adapter_base_model(adapter_dir)  # `UsageError` for a folder that is not an adapter, before loading anything
    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=getattr(torch, dtype))
    merged = model.merge_and_unload()
    out = Path(out_dir)
    if replace:
        clear_output_folder(out)  # never the old model's files beside the new one's
    merged.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    disable_thinking_by_default(tokenizer)
    tokenizer.save_pretrained(out)
    if (Path(adapter_dir) / RUN_RECORD).is_file():
        RunRecord.load(adapter_dir).copy_to(out, merged_from=str(adapter_dir), peft=False, load_in_4bit=False)
        write_model_card(out)
    return out


@dataclass(kw_only=True)
class MergeOptions(CliOptions):
    """`llm-ner merge`: which adapter, where the merged model goes, in which dtype."""

    adapter: str = option(required=True, help="adapter directory (training output)")
    out: str = option(required=True, help="output directory")
    dtype: str = option("float32", choices=("float32", "bfloat16", "float16"))
    force: bool = option(False, help="replace the model an existing --out folder holds (the folder is emptied first)")


def merge(options: MergeOptions) -> Path:
    """`llm-ner merge`: checked before anything loads (an adapter folder, an output that is no input, a folder
    that holds no other model unless ``force``), then `merge_adapter` into the emptied folder."""
    base = adapter_base_model(options.adapter)  # not an adapter: one line before anything loads
    check_output_path(options.out, {"--adapter": options.adapter, "base model": base}, "--out", writes_folder=True)
    replace = check_output_folder(options.out, "--out", options.force)
    out = merge_adapter(options.adapter, options.out, options.dtype, replace)
    log.info(f"merged {options.adapter} into {out}")
    return out
