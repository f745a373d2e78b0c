"""Greedy decoding of many chat prompts in length-sorted batches.

Prompts are rendered with the model's chat template exactly as at training time, left-padded, decoded greedily
and stopped at the end-of-turn token. The instructions all prompts share come from one KV cache
(`prefix_cache`); rows that finish leave their batch, the others go on with their rows of the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .shared_prefix import (
    MIN_SHARED_PREFIX,
    batch_cache_from_prefix,
    cache_argument,
    prefix_cache,
    shared_prefix_length,
)
from .tokens import chat_prompt_ids, default_max_new_tokens, stop_token_ids


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
            cache = batch_cache_from_prefix(model, prefix[1], len(prompts), shared + width + max_new_tokens)
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


def repeated_mention(answer: str, text: str) -> bool:
    """Whether a (partial) answer names some string more often than ``text`` holds it (overlaps count),
    twice at least: a model looping on its mentions. The same string under two labels counts twice (in
    flat NER each occurrence has one label); a string written once that is not in the text is not a loop."""
    from collections import Counter

    from ..answer_format import parse_answer

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


@dataclass(frozen=True)
class DecodingOptions:
    """How `generate_answers` decodes: ``batch_size`` prompts a batch; ``max_new_tokens`` the answer bound
    (default: `default_max_new_tokens` of the longest text of the batch, or 256 without texts);
    ``logits_processor_factory(texts, prompt_width)`` builds a per-batch logits processor (constrained
    decoding; it needs the texts); ``min_new_tokens`` (benchmarks only) fixes the answer length of
    random-weight models; ``reuse_prefix``: the instructions all prompts share come from one KV cache."""

    batch_size: int = 32
    max_new_tokens: int | None = None
    logits_processor_factory: Callable | None = None
    min_new_tokens: int | None = None
    reuse_prefix: bool = True


@dataclass
class Decoder:
    """What every batch of one `generate_answers` call shares: the model, its tokenizer, padding and stop
    ids, the shared prefix's cache (``(length, cache)`` or None) and ``min_new_tokens``."""

    model: object
    tokenizer: object
    pad_id: int
    stops: Sequence[int]
    prefix: tuple | None = None
    min_new_tokens: int | None = None

    @torch.inference_mode()
    def decode(
        self,
        batch: DecodingBatch,
        max_new_tokens: int,
        logits_processor=None,
        min_new_tokens=None,
        stopping_criteria=None,
    ) -> list[list[int]]:
        """Greedy new tokens of every row of ``batch`` (stop token excluded), which then holds them.

        ``stopping_criteria``: a `transformers` StoppingCriteria (rows it ends keep what they generated).
        """
        width = batch.width
        with contiguous_head_input(self.model):
            output = self.model.generate(
                input_ids=batch.sequences,
                attention_mask=batch.attention,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=list(self.stops),
                pad_token_id=self.pad_id,
                use_cache=True,
                logits_processor=[logits_processor] if logits_processor is not None else None,
                stopping_criteria=[stopping_criteria] if stopping_criteria is not None else None,
                # Sampling settings in a checkpoint's generation_config would only trigger warnings.
                temperature=None,
                top_p=None,
                top_k=None,
                **{cache_argument(self.model): batch.cache},
            )
        added = output.shape[1] - width
        batch.sequences = output
        batch.attention = torch.cat([batch.attention, batch.attention.new_ones((len(output), added))], dim=1)
        answers = []
        stops = set(self.stops)
        for row in output[:, width:].tolist():
            cut = next((i for i, token in enumerate(row) if token in stops), len(row))
            answers.append(row[:cut])
        return answers

    def rounds(
        self, prompts: Sequence[Sequence[int]], limit: int, processor, recorder, texts: Sequence[str] | None
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
        batch = DecodingBatch.start(self.model, prompts, self.pad_id, limit, self.prefix)
        carried = None  # (rows of the last call that go on, that call's tokens)
        while rows:
            left = limit - len(answers[rows[0]])
            if carried is not None:
                batch.keep(carried[0])
                if processor is not None:
                    processor.select(carried[0], carried[1], batch.width)
            ends = _RowEnds(
                self.tokenizer,
                batch.width,
                self.stops,
                [repeat_texts[i] for i in rows] if repeat_texts is not None else None,
                [answers[i] for i in rows],
                split=splittable and left >= MIN_TOKENS_TO_SPLIT,
            )
            step_recorder = ChosenTokenLogprobs() if recorder is not None else None
            chained = processor
            if step_recorder is not None:
                chained = step_recorder if processor is None else _Chain(processor, step_recorder)
            minimum = None
            if self.min_new_tokens is not None:
                minimum = max(0, self.min_new_tokens - len(answers[rows[0]])) or None
            ids = self.decode(batch, left, chained, minimum, ends)
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
    progress: Callable[[int], None] | None = None,
    token_logprobs: list | None = None,
    **options,
) -> list[str]:
    """Answers for chat prompts, in input order; ``options``: the fields of `DecodingOptions`.

    Prompts are sorted by length so each batch pads little. ``progress(n)`` is called after each batch with
    the number of prompts done. A ``token_logprobs`` list receives, per answer, ``(token ids, log-probability
    of each token as chosen)``. Rows that finish leave their batch (`Decoder.rounds`); a free answer that
    starts repeating a mention more often than its text holds it ends there (`repeated_mention`; the parser
    reads the cut answer, repeats dropped).
    """
    settings = DecodingOptions(**options)
    prompts = [chat_prompt_ids(tokenizer, messages) for messages in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    answers: list[str] = [""] * len(prompts)
    if token_logprobs is not None:
        token_logprobs[:] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    decoder = Decoder(model, tokenizer, pad_id, stop_token_ids(tokenizer, model), None, settings.min_new_tokens)
    shared = shared_prefix_length(prompts)
    if shared >= MIN_SHARED_PREFIX and settings.reuse_prefix:
        decoder.prefix = (shared, prefix_cache(model, prompts[0][:shared]))
    try:
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            batch_texts = [texts[i] for i in batch] if texts else None
            limit = settings.max_new_tokens
            if limit is None:
                limit = max(default_max_new_tokens(len(text)) for text in batch_texts) if batch_texts else 256
            batch_prompts = [prompts[i] for i in batch]
            processor = None
            if settings.logits_processor_factory is not None:
                processor = settings.logits_processor_factory(batch_texts, max(len(p) for p in batch_prompts))
                if hasattr(processor, "max_new_tokens"):  # a constraint that must close within the budget
                    processor.max_new_tokens = limit
            recorder = ChosenTokenLogprobs() if token_logprobs is not None else None
            ids, logprobs = decoder.rounds(batch_prompts, limit, processor, recorder, batch_texts)
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
    batching_config=None,
    **options,
) -> list[str]:
    """Answers for chat prompts through transformers' continuous batching (`model.generate_batch`).

    A candidate engine beside `generate_answers` (static-cache batches): paged attention, finished
    answers leave the batch at once, CUDA graphs on GPU; no logits processor (so no constrained
    decoding) and one answer bound for all (from the longest text, as `generate_answers` does per
    batch). ``batching_config`` is a `transformers.ContinuousBatchingConfig` (cache size on CPU); ``options``: the
    ``max_new_tokens`` and ``min_new_tokens`` of `DecodingOptions`.
    """
    from transformers import GenerationConfig

    settings = DecodingOptions(**options)
    max_new_tokens = settings.max_new_tokens

    prompts = [chat_prompt_ids(tokenizer, messages) for messages in conversations]
    if not prompts:
        return []
    if max_new_tokens is None:
        max_new_tokens = max(default_max_new_tokens(len(t)) for t in texts) if texts else 256
    stops = stop_token_ids(tokenizer, model)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=settings.min_new_tokens,
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
