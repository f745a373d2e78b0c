"""Generation: load a (fine-tuned) Qwen model and answer many prompts in length-sorted batches.

Shared by the training-time F1 evaluation and by extraction (`backends.LocalBackend`):

- `tokens`: prompt ids as training rendered them (Qwen3 thinking off), stop ids, the answer bound, and the
  characters each answer token spelled;
- `shared_prefix`: the KV cache (`prefix_cache`) of the instructions every prompt shares, computed once;
- `decoding`: greedy batched decoding (`generate_answers`, `DecodingOptions`), finished rows leaving the batch;
- `loading`: `load_model` (dtype rule, device checks, a LoRA adapter merged) and `merged_copy`;
- `constrained` (with `mentions_grammar`): constrained decoding of `mentions` answers.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

# Public names, imported on first use: `tokens` needs no torch, and a client that only renders prompts
# (the OpenAI backend, the CLI) should not pay for importing it.
_HOMES = {
    "ChosenTokenLogprobs": "decoding",
    "DecodingBatch": "decoding",
    "DecodingOptions": "decoding",
    "contiguous_head_input": "decoding",
    "Decoder": "decoding",
    "generate_answers": "decoding",
    "generate_answers_continuous": "decoding",
    "repeated_mention": "decoding",
    "auto_dtype": "loading",
    "check_device": "loading",
    "cpu_computes_bf16": "loading",
    "load_model": "loading",
    "merged_copy": "loading",
    "MIN_SHARED_PREFIX": "shared_prefix",
    "cache_argument": "shared_prefix",
    "prefix_cache": "shared_prefix",
    "shared_prefix_length": "shared_prefix",
    "THINKING_OFF_PREFIX": "tokens",
    "bytes_to_unicode": "tokens",
    "chat_prompt_ids": "tokens",
    "default_max_new_tokens": "tokens",
    "disable_thinking_by_default": "tokens",
    "load_tokenizer": "tokens",
    "stop_token_ids": "tokens",
    "token_char_ranges": "tokens",
    "unicode_to_bytes": "tokens",
}
_MODULES = {"constrained", "decoding", "loading", "mentions_grammar", "shared_prefix", "tokens"}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES, _MODULES)
