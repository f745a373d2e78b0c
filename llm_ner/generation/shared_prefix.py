"""The KV cache of the tokens every prompt of a batch starts with (the instructions): computed once, then
reused by every row, in generation (a static cache per batch) and in training (with gradients)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# A shared prompt prefix shorter than this is not worth a cache of its own.
MIN_SHARED_PREFIX = 16


def prefix_cache(model, prefix: Sequence[int], grad: bool = False):
    """The KV cache of a prompt prefix that every prompt of a run shares (the instructions).

    ``grad``: computed with gradients (training), not in inference mode; the keys and values then carry
    the graph back to the weights."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)
    # Our own cache object, filled in place: a mixed-precision wrapper (accelerate) would
    # convert the returned copy to float32 while generation writes the autocast dtype.
    cache = DynamicCache(config=model.config)
    with torch.inference_mode(not grad):
        # Only the cache is wanted: one position's logits, not the whole vocabulary at every prefix position;
        # kept by index, which gives the output layer a contiguous input (a strided one made bf16 matmul copy
        # the 151 936-row output weight, 0.5 s per call on a 0.5B model on CPU).
        last = torch.tensor([ids.shape[1] - 1], device=device)
        model(input_ids=ids, use_cache=True, logits_to_keep=last, **{cache_argument(model): cache})
    return cache


def cache_argument(model) -> str:
    """``cache``, the name of the KV-cache argument since transformers 5.2x (``past_key_values`` warns
    there), or ``past_key_values`` in the versions before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens all prompts start with, leaving at least one token of each prompt uncached."""
    if not prompts:
        return 0
    first = prompts[0]
    length = min(len(p) for p in prompts) - 1
    for prompt in prompts[1:]:
        i = 0
        while i < length and prompt[i] == first[i]:
            i += 1
        length = i
    return max(0, length)


def batch_cache_from_prefix(model, cache, batch_size: int, length: int):
    """A preallocated (static) cache of ``length`` positions holding the prefix in every row.

    Growing a dynamic cache re-copies it at every step (most of CPU decoding time with a long
    shared prefix); a static cache is written in place.
    """
    from transformers import StaticCache

    static = StaticCache(config=model.config, max_cache_len=length)
    for index, layer in enumerate(cache.layers):
        keys, values = layer.keys, layer.values
        static.update(keys.expand(batch_size, -1, -1, -1), values.expand(batch_size, -1, -1, -1), index)
    return static
