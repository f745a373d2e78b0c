"""Training: LoRA / QLoRA / full supervised fine-tuning of Qwen models with TRL's SFTTrainer.

- `config`: `NERDataArguments` and the argument parsing of `train_sft.py` (TRL's `TrlParser`, YAML + flags);
- `data`: CLUENER/BIO or converted files as prompt-completion records, the run's prompt, retrieved shots;
- `trainer`: `NERSFTTrainer` (answer-only loss, the shared instructions once per batch with exact gradients);
- `callbacks`: the generated-answer F1 of every evaluation, the final save before the last evaluation;
- `run`: `train` and `main`, the dtype and attention rules of a run;
- `run_dir`: the run directory's record (`llm_ner.json`, `prompt.yaml`, `train_config.yaml`);
- `resume`: the settings a resume must keep (refused otherwise, as `extract` refuses), the record's segments;
- `merge`: `merge_adapter` (`llm-ner merge`);
- `model_card`: the Hub ``README.md`` of run, merged and GGUF folders (`write_model_card`, `llm-ner model-card`).

Names are imported on first use: the trainer imports TRL and torch, the command line's parsers need neither.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_HOMES = {
    "CHAT_TEMPLATE_KWARGS": "config",
    "DEFAULT_ANSWER_FORMAT": "config",
    "NERDataArguments": "config",
    "check_config": "config",
    "make_parser": "config",
    "parse_arguments": "config",
    "add_retrieved_shots": "data",
    "check_lengths": "data",
    "f1_subset": "data",
    "load_split": "data",
    "resolve_prompt": "data",
    "F1Evaluation": "callbacks",
    "SaveBeforeLastEvaluation": "callbacks",
    "f1_metrics": "callbacks",
    "NERSFTTrainer": "trainer",
    "checkpointed": "trainer",
    "logits_mask_supported": "trainer",
    "padding_share": "trainer",
    "default_attention": "run",
    "final_metrics": "run",
    "main": "run",
    "resolve_training_dtype": "run",
    "train": "run",
    "merge_adapter": "merge",
    "RunRecord": "run_dir",
    "training_settings": "resume",
}
_MODULES = {"callbacks", "config", "data", "merge", "resume", "run", "run_dir", "trainer"}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES, _MODULES)
