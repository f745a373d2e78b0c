"""Generation: load a (fine-tuned) Qwen model and answer many prompts in length-sorted batches.

Shared by the training-time F1 evaluation and by batch extraction. Prompts are rendered with the
model's chat template exactly as at training time (`add_generation_prompt=True`, Qwen3 thinking
disabled), left-padded, decoded greedily and stopped at the end-of-turn token.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

# Keeps Qwen3's template from thinking when a caller does not say enable_thinking=False: the
# saved template then renders exactly the tokens the model was trained on.
THINKING_OFF_PREFIX = "{%- if enable_thinking is not defined %}{%- set enable_thinking = false %}{%- endif %}\n"


def disable_thinking_by_default(tokenizer) -> None:
    """Make a thinking-capable chat template default to ``enable_thinking=False``."""
    template = tokenizer.chat_template
    if isinstance(template, str) and "enable_thinking" in template and not template.startswith(THINKING_OFF_PREFIX):
        tokenizer.chat_template = THINKING_OFF_PREFIX + template


def chat_prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids the model sees before its answer (thinking disabled)."""
    ids = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=True, enable_thinking=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """End-of-turn ids: ``<|im_end|>`` and ``<|endoftext|>`` plus the model's own eos ids."""
    ids: list[int] = []
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            ids.append(token_id)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids.extend(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return list(dict.fromkeys(ids))


def default_max_new_tokens(text_length: int) -> int:
    """An answer-length bound from the sentence length (in characters).

    A mentions answer repeats entity strings (at most the text) plus about 16 tokens of JSON
    per entity; 3 tokens per character plus a margin covers dense CLUENER sentences.
    """
    return min(1024, 24 + 3 * text_length)


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


def _batch_cache_from_prefix(model, cache, batch_size: int, length: int):
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


@contextmanager
def contiguous_head_input(model):
    """While generating: the output layer receives a contiguous input.

    The first forward pass keeps only the last position's hidden state (``logits_to_keep``), a strided
    view when the prompts are longer than one token. `torch.matmul` cannot fold such a view into one
    matrix product and broadcasts the weight into a batch instead; bfloat16 on CPU copies that batch
    (16 prompts: a 4.4 GB copy, 10 s on this project's CPU, for one forward pass).
    """
    head = model.get_output_embeddings()
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


@dataclass
class DecodingBatch:
    """A batch of prompts being answered: each row's tokens so far (prompt, padding and what it generated),
    their attention mask, and the KV cache of all of them but the last token, so that a call of `decode`
    goes on where the previous one stopped without computing the prompts again."""

    sequences: torch.Tensor
    attention: torch.Tensor
    cache: object

    @classmethod
    @torch.inference_mode()
    def start(
        cls, model, prompts: Sequence[Sequence[int]], pad_id: int, max_new_tokens: int, prefix=None
    ) -> DecodingBatch:
        """Prompts left-padded, or with ``prefix=(length, cache)`` the first ``length`` tokens of every
        prompt taken from that cache and the padding between that prefix and the rest (positions come from
        the attention mask, so they stay exact)."""
        from transformers import DynamicCache

        device = next(model.parameters()).device
        shared = prefix[0] if prefix else 0
        tails = [list(p[shared:]) for p in prompts]
        width = max(len(t) for t in tails)
        input_ids = torch.full((len(prompts), shared + width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), shared + width), dtype=torch.long)
        for row, tail in enumerate(tails):
            input_ids[row, :shared] = torch.tensor(list(prompts[row][:shared]), dtype=torch.long)
            attention[row, :shared] = 1
            input_ids[row, shared + width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
            attention[row, shared + width - len(tail) :] = 1
        if prefix:
            cache = _batch_cache_from_prefix(model, prefix[1], len(prompts), shared + width + max_new_tokens)
        else:
            # Our own cache object, kept between calls (and filled in place under a mixed-precision wrapper).
            cache = DynamicCache(config=model.config)
        return cls(input_ids.to(device), attention.to(device), cache)

    @property
    def width(self) -> int:
        return self.sequences.shape[1]

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (their tokens, mask and cache rows: nothing is computed again)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.sequences.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
            if hasattr(layer, "batch_size"):  # a static layer records its size (recent transformers)
                layer.batch_size = len(rows)
        self.sequences = self.sequences.index_select(0, index)
        self.attention = self.attention.index_select(0, index)


@torch.inference_mode()
def decode(
    model,
    batch: DecodingBatch,
    max_new_tokens: int,
    pad_id: int,
    stop_ids: Sequence[int],
    logits_processor=None,
    min_new_tokens: int | None = None,
    stopping_criteria=None,
) -> list[list[int]]:
    """Greedy new tokens of every row of ``batch`` (stop token excluded), which then holds them.

    ``stopping_criteria``: a `transformers` StoppingCriteria (rows it ends keep what they generated).
    """
    width = batch.width
    with contiguous_head_input(model):
        output = model.generate(
            input_ids=batch.sequences,
            attention_mask=batch.attention,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=list(stop_ids),
            pad_token_id=pad_id,
            use_cache=True,
            logits_processor=[logits_processor] if logits_processor is not None else None,
            stopping_criteria=[stopping_criteria] if stopping_criteria is not None else None,
            # Sampling settings in a checkpoint's generation_config would only trigger warnings.
            temperature=None,
            top_p=None,
            top_k=None,
            **{cache_argument(model): batch.cache},
        )
    added = output.shape[1] - width
    batch.sequences = output
    batch.attention = torch.cat([batch.attention, batch.attention.new_ones((len(output), added))], dim=1)
    answers = []
    stops = set(stop_ids)
    for row in output[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), len(row))
        answers.append(row[:cut])
    return answers


class ChosenTokenLogprobs:
    """A last logits processor that records, per step, the log-probability of the greedy choice.

    It sees the scores after every other processor (the constraint mask included), so under
    greedy decoding the chosen token is the arg max and its probability is the one recorded.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []  # on the model's device: no copy to the host per token
        self._table: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(torch.log_softmax(scores.float(), dim=-1).max(dim=-1).values)
        self._table = None
        return scores

    def row(self, row: int, length: int) -> list[float]:
        """Log-probabilities of the first ``length`` tokens of batch row ``row``."""
        if not self.steps:
            return []
        if self._table is None:  # one copy to the host for the whole batch
            self._table = torch.stack(self.steps).cpu()
        return self._table[:length, row].tolist()


class _Chain:
    """Logits processors applied in turn (a LogitsProcessorList cannot sit inside generate's own list)."""

    def __init__(self, *processors) -> None:
        self.processors = processors

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for processor in self.processors:
            scores = processor(input_ids, scores)
        return scores


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 / Qwen byte-level alphabet: every byte as a printable character (the characters of
    byte-level BPE tokens)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def unicode_to_bytes() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`: a byte-level token's characters back to its bytes."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_char_ranges(tokenizer, ids: Sequence[int], answer: str) -> list[tuple[int, int]] | None:
    """The characters of ``answer`` each token produced (a token ending inside a multi-byte
    character covers that character); None when the tokens' bytes do not spell the answer."""
    import codecs

    byte_of = unicode_to_bytes()
    pieces = []
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        try:
            pieces.append(bytes(byte_of[ch] for ch in token))
        except (KeyError, TypeError):  # added or special tokens: their decoded text
            pieces.append(tokenizer.decode([token_id], skip_special_tokens=True).encode("utf-8"))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # as the tokenizer decodes
    ranges, parts, emitted = [], [], 0
    for piece in pieces:
        start = emitted  # a character begun by an earlier token is also this token's
        text = decoder.decode(piece)
        parts.append(text)
        emitted += len(text)
        ranges.append((start, emitted + (1 if decoder.getstate()[0] else 0)))
    parts.append(decoder.decode(b"", final=True))
    if "".join(parts) != answer:
        return None
    return ranges


def repeated_mention(answer: str, text: str) -> bool:
    """Whether a (partial) answer names some string more often than ``text`` holds it (overlaps count),
    twice at least: a model looping on its mentions. The same string under two labels counts twice (in
    flat NER each occurrence has one label); a string written once that is not in the text is not a loop."""
    from collections import Counter

    from .answer_format import parse_answer

    counts = Counter(mention for mention, _ in parse_answer(answer)[0])
    return any(
        count >= 2 and count > sum(text.startswith(mention, i) for i in range(len(text)))
        for mention, count in counts.items()
        if mention
    )


class _RowEnds:
    """A StoppingCriteria for one `generate` call of `generate_answers`: records where each row ends (its
    stop token, or the first repeated mention of a free answer) and ends the call early, once half the
    rows are done, so that the rest continue in a smaller batch instead of waiting with the finished ones."""

    def __init__(self, tokenizer, width: int, stops, texts, earlier: list[list[int]], split: bool):
        self.tokenizer, self.width, self.stops, self.texts, self.earlier = tokenizer, width, set(stops), texts, earlier
        self.ended: list[int | None] = [None] * len(earlier)  # tokens generated by the row in this call
        self.split = split
        self.quotes: dict[int, bool] = {}

    def _has_quote(self, token: int) -> bool:
        if token not in self.quotes:
            self.quotes[token] = '"' in self.tokenizer.decode([token])
        return self.quotes[token]

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.width
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.ended[row] is not None:
                continue
            if token in self.stops:
                self.ended[row] = generated - 1
            elif self.texts is not None and self._has_quote(token):
                ids = self.earlier[row] + input_ids[row, self.width :].tolist()
                if repeated_mention(self.tokenizer.decode(ids, skip_special_tokens=True), self.texts[row]):
                    self.ended[row] = generated
        done = [end is not None for end in self.ended]
        if self.split and 1 < len(done) <= 2 * sum(done) and not all(done):
            return torch.ones(len(done), dtype=torch.bool, device=input_ids.device)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


# Rows with fewer tokens than this left to their bound are not worth a new, smaller batch.
MIN_TOKENS_TO_SPLIT = 8


def _generate_rounds(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    limit: int,
    pad_id: int,
    stops: Sequence[int],
    processor,
    recorder: ChosenTokenLogprobs | None,
    min_new_tokens: int | None,
    prefix,
    texts: Sequence[str] | None,
) -> tuple[list[list[int]], list[list[float]] | None]:
    """Answers of one batch (token ids, and the chosen tokens' log-probabilities with ``recorder``).

    Finished rows leave the batch: once half the rows are done, the others go on as a smaller batch with
    their rows of the KV cache (`DecodingBatch.keep`), so nothing is computed twice and no finished row is
    decoded up to the longest answer. Processors follow the rows through
    ``select(rows, generated, prompt_width)``; one without it keeps the batch whole.
    Answers that start repeating a mention beyond its occurrences in ``texts`` end there (unless the
    processor says ``bounds_repeats``, as constrained decoding does).
    """
    rows = list(range(len(prompts)))
    answers: list[list[int]] = [[] for _ in prompts]
    logprobs: list[list[float]] = [[] for _ in prompts]
    splittable = processor is None or hasattr(processor, "select")
    repeat_texts = None if getattr(processor, "bounds_repeats", False) else texts  # a constraint does it itself
    batch = DecodingBatch.start(model, prompts, pad_id, limit, prefix)
    carried = None  # (rows of the last call that go on, that call's tokens)
    while rows:
        left = limit - len(answers[rows[0]])
        if carried is not None:
            batch.keep(carried[0])
            if processor is not None:
                processor.select(carried[0], carried[1], batch.width)
        ends = _RowEnds(
            tokenizer,
            batch.width,
            stops,
            [repeat_texts[i] for i in rows] if repeat_texts is not None else None,
            [answers[i] for i in rows],
            split=splittable and left >= MIN_TOKENS_TO_SPLIT,
        )
        step_recorder = ChosenTokenLogprobs() if recorder is not None else None
        chained = processor
        if step_recorder is not None:
            chained = step_recorder if processor is None else _Chain(processor, step_recorder)
        minimum = None if min_new_tokens is None else max(0, min_new_tokens - len(answers[rows[0]])) or None
        ids = decode(model, batch, left, pad_id, stops, chained, minimum, ends)
        unfinished = []
        for row, (i, new) in enumerate(zip(rows, ids)):
            end = ends.ended[row]
            new = new[:end] if end is not None else new
            answers[i].extend(new)
            if step_recorder is not None:
                logprobs[i].extend(step_recorder.row(row, len(new)))
            if end is None and len(answers[i]) < limit:
                unfinished.append(row)
        if not unfinished:
            break
        rows = [rows[row] for row in unfinished]
        carried = (unfinished, ids)
    return answers, (logprobs if recorder is not None else None)


def generate_answers(
    model,
    tokenizer,
    conversations: Sequence[Sequence[dict]],
    texts: Sequence[str] | None = None,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
    logits_processor_factory: Callable | None = None,
    min_new_tokens: int | None = None,
    reuse_prefix: bool = True,
    token_logprobs: list | None = None,
) -> list[str]:
    """Answers for chat prompts, in input order.

    Prompts are sorted by length so each batch pads little. ``max_new_tokens`` defaults to
    `default_max_new_tokens` of the longest text in the batch (``texts``) or 256.
    ``progress(n)`` is called after each batch with the number of prompts done.
    ``logits_processor_factory(texts, prompt_width)`` builds a per-batch logits processor
    (constrained decoding); it needs ``texts``. ``min_new_tokens`` (benchmarks only) fixes the
    answer length of random-weight models. The instruction prefix all prompts share is computed
    once and its KV cache reused by every batch (``reuse_prefix``). A ``token_logprobs`` list
    receives, per answer, ``(token ids, log-probability of each token as chosen)``.
    Rows that finish leave their batch (see `_generate_rounds`); a free answer that starts repeating a
    mention more often than its text holds it ends there (`repeated_mention`; the parser reads the cut
    answer, repeats dropped).
    """
    prompts = [chat_prompt_ids(tokenizer, messages) for messages in conversations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    answers: list[str] = [""] * len(prompts)
    if token_logprobs is not None:
        token_logprobs[:] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    shared = shared_prefix_length(prompts)
    prefix = (
        (shared, prefix_cache(model, prompts[0][:shared])) if shared >= MIN_SHARED_PREFIX and reuse_prefix else None
    )
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            limit = max_new_tokens
            if limit is None:
                limit = max(default_max_new_tokens(len(texts[i])) for i in batch) if texts else 256
            batch_prompts = [prompts[i] for i in batch]
            processor = None
            if logits_processor_factory is not None:
                processor = logits_processor_factory([texts[i] for i in batch], max(len(p) for p in batch_prompts))
                if hasattr(processor, "max_new_tokens"):  # a constraint that must close within the budget
                    processor.max_new_tokens = limit
            recorder = ChosenTokenLogprobs() if token_logprobs is not None else None
            ids, logprobs = _generate_rounds(
                model,
                tokenizer,
                batch_prompts,
                limit,
                pad_id,
                stops,
                processor,
                recorder,
                min_new_tokens,
                prefix,
                [texts[i] for i in batch] if texts else None,
            )
            for row, (i, answer_ids) in enumerate(zip(batch, ids)):
                answers[i] = tokenizer.decode(answer_ids, skip_special_tokens=True)
                if logprobs is not None:
                    token_logprobs[i] = (answer_ids, logprobs[row])
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return answers


@torch.inference_mode()
def generate_answers_continuous(
    model,
    tokenizer,
    conversations: Sequence[Sequence[dict]],
    texts: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
    min_new_tokens: int | None = None,
    batching_config=None,
) -> list[str]:
    """Answers for chat prompts through transformers' continuous batching (`model.generate_batch`).

    A candidate engine beside `generate_answers` (static-cache batches): paged attention, finished
    answers leave the batch at once, CUDA graphs on GPU; no logits processor (so no constrained
    decoding) and one answer bound for all (from the longest text, as `generate_answers` does per
    batch). ``batching_config`` is a `transformers.ContinuousBatchingConfig` (cache size on CPU).
    """
    from transformers import GenerationConfig

    prompts = [chat_prompt_ids(tokenizer, messages) for messages in conversations]
    if not prompts:
        return []
    if max_new_tokens is None:
        max_new_tokens = max(default_max_new_tokens(len(t)) for t in texts) if texts else 256
    stops = stop_token_ids(tokenizer, model)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
    )
    extra = {"continuous_batching_config": batching_config} if batching_config is not None else {}
    was_training = model.training
    model.eval()
    try:
        outputs = model.generate_batch(prompts, generation_config=config, **extra)
    finally:
        model.train(was_training)
    answers = []
    for index in range(len(prompts)):  # request ids are "req_<input position>"
        tokens = list(outputs[f"req_{index}"].generated_tokens)
        cut = next((i for i, token in enumerate(tokens) if token in stops), len(tokens))
        answers.append(tokenizer.decode(tokens[:cut], skip_special_tokens=True))
    return answers


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
    from .errors import UsageError

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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .versions import check_versions

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
    tokenizer_source = adapter or model_name_or_path
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **kwargs)
    if adapter:
        from peft import PeftModel

        from .versions import PEFT_CHECKPOINTING_WARNING

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
        if not load_in_4bit:
            # Loaded to generate, never to train: the adapter's product folded into the weights spares the
            # two extra matrix products per layer at every step (4-bit weights cannot take it exactly).
            model = model.merge_and_unload()
    if not load_in_4bit:
        model.to(device)
    tokenizer_dir = (
        tokenizer_source if (Path(tokenizer_source) / "tokenizer_config.json").is_file() else model_name_or_path
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    disable_thinking_by_default(tokenizer)
    model.eval()
    return model, tokenizer
