"""Free decoding on a tiny random model: rows that finish leave their batch (no waiting for the longest
answer), and answers that start repeating a mention beyond its occurrences end there."""

import functools

import pytest
from conftest import noisy_model

from llm_ner.generation import generate_answers, load_model, repeated_mention, stop_token_ids
from llm_ner.prompting import load_prompt

TEXTS = ["我在北京和上海工作", "北京人在北京", "张三去了深圳", "李四在杭州读书", "王五", "上海北京"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    model, tokenizer = load_model(str(noisy_model(tmp_path_factory.mktemp("rounds") / "noisy")), dtype="float32")
    return model, tokenizer


class _EndAt:
    """A test double of answers of different lengths: row k's answer ends (end-of-turn) after ``lengths[k]``
    tokens, its tokens otherwise the model's own. Follows its rows through `select`."""

    def __init__(self, lengths: list[int], stop: int, width: int):
        self.lengths, self.stop, self.width, self.done = list(lengths), stop, width, [0] * len(lengths)

    def __call__(self, input_ids, scores):
        generated = input_ids.shape[1] - self.width
        for row, length in enumerate(self.lengths):
            if self.done[row] + generated >= length:
                scores[row] = float("-inf")
                scores[row, self.stop] = 0.0
        return scores

    def select(self, rows, generated, prompt_width):
        self.lengths = [self.lengths[r] for r in rows]
        self.done = [self.done[r] + len(generated[r]) for r in rows]
        self.width = prompt_width


class _Whole:
    """A processor without `select`: its batch stays whole."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, input_ids, scores):
        return self.inner(input_ids, scores)


def _count_decoded_rows(model, monkeypatch, prefills: list | None = None) -> list[int]:
    """Rows the model decodes, one entry per one-token step (and into ``prefills`` the rows and width of
    every call that computes more than one token per row: a prompt)."""
    steps: list[int] = []
    forward = model.forward

    @functools.wraps(forward)  # the same signature: generation picks its cache argument from it
    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] == 1:
            steps.append(ids.shape[0])
        elif ids is not None and prefills is not None:
            prefills.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    return steps


def test_finished_rows_leave_the_batch(noisy, monkeypatch):
    """Lengths 2..40: the same answers as one static batch (greedy), with far fewer decoded rows than
    six rows for 40 steps."""
    model, tokenizer = noisy
    prompt = load_prompt("cluener_zh_short")
    conversations = [prompt.messages(t) for t in TEXTS]
    lengths = [40, 3, 2, 5, 2, 4]
    stop = stop_token_ids(tokenizer, model)[0]

    length_of = dict(zip(TEXTS, lengths))

    def factory(texts, width):
        return _EndAt([length_of[t] for t in texts], stop, width)

    prefills: list[tuple[int, int]] = []
    steps = _count_decoded_rows(model, monkeypatch, prefills)
    answers = generate_answers(
        model, tokenizer, conversations, texts=TEXTS, max_new_tokens=48, logits_processor_factory=factory
    )
    whole_steps = sum(steps)
    # the shared prefix once (one row), then the six prompts' rest once: later rounds reuse their cache rows
    assert [rows for rows, _ in prefills] == [1, 6], prefills
    steps.clear()
    expected = generate_answers(  # the same processor without `select`: one static batch, as before
        model,
        tokenizer,
        conversations,
        texts=TEXTS,
        max_new_tokens=48,
        logits_processor_factory=lambda texts, width: _Whole(factory(texts, width)),
    )
    assert answers == expected
    assert [len(tokenizer(a)["input_ids"]) for a in answers][0] >= 30  # the long row really is long
    print(f"\ndecoded rows: {whole_steps} with rounds, {sum(steps)} in one static batch")
    assert sum(steps) >= 6 * 39 and whole_steps < sum(steps) // 2


def test_repeated_mention_rule():
    assert not repeated_mention('[{"text":"北京","label":"address"}', "我在北京")
    assert repeated_mention('[{"text":"北京","label":"address"},{"text":"北京","label":"address"}', "我在北京")
    assert not repeated_mention('[{"text":"北京","label":"address"},{"text":"北京","label":"address"}', "北京人在北京")
    two_labels = '[{"text":"北京","label":"address"},{"text":"北京","label":"name"}'
    assert repeated_mention(two_labels, "我在北京")  # one budget for the string
    assert not repeated_mention('[{"text":"纽约","label":"address"}', "我在北京")  # once, not in the text: no loop
    assert repeated_mention('{"address":["北京","北京"', "我在北京")  # the grouped format too
    assert not repeated_mention("not json at all", "我在北京")


class _Loop:
    """A test double of a model looping on one mention: forces the tokens of ``[`` + ``item`` repeated."""

    def __init__(self, tokenizer, item: str, width: int, rows: int):
        self.ids = tokenizer("[" + item * 40, add_special_tokens=False)["input_ids"]
        self.width = width

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.width
        scores[:] = float("-inf")
        scores[:, self.ids[step]] = 0.0
        return scores


def test_a_free_answer_that_loops_on_a_mention_ends_there(noisy):
    """A looping answer ends at its first repeat beyond the sentence's occurrences, not at the bound;
    the parser reads the cut answer without the repeat."""
    from llm_ner.answer_format import answer_to_spans

    model, tokenizer = noisy
    prompt = load_prompt("cluener_zh_short")
    texts = ["我在北京和上海工作", "北京人在北京"]
    answers = generate_answers(
        model,
        tokenizer,
        [prompt.messages(t) for t in texts],
        texts=texts,
        max_new_tokens=200,
        logits_processor_factory=lambda batch, width: _Loop(tokenizer, '{"text":"北京","label":"address"},', width, 2),
    )
    for text, answer in zip(texts, answers):
        print(f"\n{text}: {answer}")
        assert answer.count('"北京"') == text.count("北京") + 1, answer  # cut at the first repeat
        spans, stats = answer_to_spans(text, answer, prompt.schema)
        assert len(spans) == text.count("北京") and stats.parse_failures == 0


def test_free_decoding_without_a_processor_splits_its_rounds(noisy, monkeypatch):
    """No logits processor at all (plain `extract`): rows that stop early leave the batch and the rest
    goes on, with the answers one-at-a-time decoding gives. (Rows of a real model end at different
    lengths; here the model ends a row after the first token whose id is a multiple of 7.)"""
    model, tokenizer = noisy
    prompt = load_prompt("cluener_zh_short")
    conversations = [prompt.messages(t) for t in TEXTS]
    stop = stop_token_ids(tokenizer, model)[0]
    forward = model.forward

    @functools.wraps(forward)
    def ends_on_multiples_of_seven(*args, **kwargs):
        output = forward(*args, **kwargs)
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] == 1:
            for row in (ids[:, 0] % 7 == 0).nonzero().flatten().tolist():
                output.logits[row, -1, stop] = output.logits[row, -1].max() + 10
        return output

    monkeypatch.setattr(model, "forward", ends_on_multiples_of_seven)
    prefills: list[tuple[int, int]] = []
    steps = _count_decoded_rows(model, monkeypatch, prefills)
    batched = generate_answers(
        model, tokenizer, conversations, texts=TEXTS, batch_size=6, max_new_tokens=48, reuse_prefix=False
    )
    batched_steps, batched_prefills = list(steps), list(prefills)
    one_by_one = [
        generate_answers(model, tokenizer, [c], texts=[t], batch_size=1, max_new_tokens=48)[0]
        for c, t in zip(conversations, TEXTS)
    ]
    assert batched == one_by_one
    lengths = sorted(len(tokenizer(a)["input_ids"]) for a in batched)
    assert lengths[0] < 6 and lengths[-1] >= 12, lengths  # rows really end at different lengths
    assert max(batched_steps) == 6 and min(batched_steps) < 6  # the batch shrank: a second round ran
    # ... on its rows of the KV cache: the prompts were computed once, by the first round alone
    assert len(batched_prefills) == 1 and batched_prefills[0][0] == 6, batched_prefills


def test_the_output_layer_gets_its_input_contiguous(noisy):
    """The first forward pass of a batch keeps only the last position's hidden state, a strided view of
    the prompts'; `generate_answers` hands it to the output layer contiguous (bfloat16 on CPU otherwise
    copies the output weight once per row: 10 s for 16 prompts of the real 0.5B)."""
    model, tokenizer = noisy
    prompt = load_prompt("cluener_zh_short")
    inputs: list[tuple[tuple[int, ...], bool]] = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(
        lambda module, args, output: inputs.append((args[0].shape, args[0].is_contiguous()))
    )
    try:
        generate_answers(model, tokenizer, [prompt.messages(t) for t in TEXTS], texts=TEXTS, max_new_tokens=4)
    finally:
        handle.remove()
    assert any(shape[0] == len(TEXTS) for shape, _ in inputs)  # the batch's passes were seen
    assert all(contiguous for _, contiguous in inputs), inputs
    assert not head._forward_pre_hooks  # and the hook is gone afterwards


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_auto_dtype_on_cpu_follows_the_cpus_bf16_instructions(monkeypatch, tmp_path_factory, bf16_cpu):
    """``dtype="auto"`` on CPU: bfloat16 where the CPU computes it (detected), float32 elsewhere; a dtype
    named explicitly wins."""
    import torch

    from llm_ner import generation

    monkeypatch.setattr(generation.loading, "cpu_computes_bf16", lambda: bf16_cpu)
    path = str(noisy_model(tmp_path_factory.mktemp("auto") / "noisy"))
    model, _ = generation.load_model(path, device="cpu")
    assert model.dtype == (torch.bfloat16 if bf16_cpu else torch.float32)
    model, _ = generation.load_model(path, device="cpu", dtype="float32")
    assert model.dtype == torch.float32
