"""The real Qwen2.5 and Qwen3 tokenizers (../shared/tokenizers) end to end: random-weight models on
their 151 936-row vocabulary, training and extraction tokens, parsing of real token ids, and the
guarantees of constrained decoding on all of CLUENER dev. Random weights: plumbing, not quality."""

import json
import random
import unicodedata

import pytest
import torch
from conftest import redraw_, sft_trainer

from llm_ner.answer_format import answer_to_spans, format_answer
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span
from llm_ner.generation import chat_prompt_ids, generate_answers, load_model, stop_token_ids
from llm_ner.metrics import span_scores
from llm_ner.parsing import ParseStats
from llm_ner.prompting import load_prompt

NAMES = ["qwen2.5", "qwen3"]
ARCH = {"qwen2.5": "qwen2", "qwen3": "qwen3"}
SIZES = ["--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--num-kv-heads", "1"]


@pytest.fixture(scope="module")
def real_model(qwen_tokenizer_dir, tmp_path_factory):
    """``real_model(name)``: a random-weight 1-layer model (hidden 32) on the real tokenizer."""
    built = {}

    def build(name: str):
        if name not in built:
            out = tmp_path_factory.mktemp("real") / name
            assert cli(["tiny-model", "--tokenizer", str(qwen_tokenizer_dir(name)), "--out", str(out), *SIZES]) == 0
            built[name] = out
        return built[name]

    return build


@pytest.fixture(scope="module")
def real_tokenizer(qwen_tokenizer_dir):
    from transformers import AutoTokenizer

    loaded = {}

    def load(name: str):
        if name not in loaded:
            loaded[name] = AutoTokenizer.from_pretrained(qwen_tokenizer_dir(name))
        return loaded[name]

    return load


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_on_the_real_tokenizer_loads_like_a_hub_model(real_model, qwen_tokenizer_dir, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = real_model(name)
    for file in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (folder / file).read_bytes() == (qwen_tokenizer_dir(name) / file).read_bytes()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == ARCH[name]
    assert len(tokenizer) == {"qwen2.5": 151665, "qwen3": 151669}[name]
    assert model.config.vocab_size == 151936 == model.get_input_embeddings().weight.shape[0]
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.config.eos_token_id == im_end and model.config.pad_token_id == endoftext
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.eos_token_id == [im_end, endoftext] and generation.pad_token_id == endoftext
    assert tokenizer("你好")["input_ids"] == [108386]
    ids = tokenizer("北京银行了解读", return_tensors="pt")["input_ids"]
    assert ids.shape[1] < 7  # real merges: not one token per character
    assert model(ids).logits.shape == (1, ids.shape[1], 151936)


def test_shapes_come_from_qwen_shapes_json(qwen_tokenizer_dir, tmp_path):
    """The real architecture, exactly (parameter count on the meta device); explicit sizes override."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from llm_ner.tiny import build_config, read_shape, shape_arguments

    shape = read_shape("Qwen2.5-0.5B-Instruct")
    config = build_config(shape["model_type"], shape["vocab_size"], **shape_arguments(shape))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B-Instruct's published count

    out = tmp_path / "qwen3"
    tokenizer = str(qwen_tokenizer_dir("qwen3"))
    small = ["--num-layers", "1", "--hidden-size", "64", "--intermediate-size", "64"]
    assert cli(["tiny-model", "--shape", "Qwen3-0.6B", "--tokenizer", tokenizer, "--out", str(out), *small]) == 0
    config = AutoConfig.from_pretrained(out)
    real = read_shape("Qwen3-0.6B")
    assert (config.model_type, config.vocab_size, config.hidden_size, config.num_hidden_layers) == (
        "qwen3",
        151936,
        64,
        1,
    )
    assert config.num_attention_heads == real["num_attention_heads"] == 16
    assert config.num_key_value_heads == real["num_key_value_heads"] and config.rope_parameters["rope_theta"] == 1e6
    assert cli(["tiny-model", "--shape", "Qwen3-0.6B", "--arch", "qwen2", "--out", str(tmp_path / "x")]) != 0
    assert cli(["tiny-model", "--shape", "Qwen9-1B", "--out", str(tmp_path / "y")]) != 0


@pytest.mark.parametrize("name", NAMES)
def test_extraction_prompt_is_the_prefix_of_the_training_tokens(real_model, cluener_dir, tmp_path, name):
    """Token for token with the real tokenizer: the extraction prompt starts the training
    sequence; labels cover the answer and the end of turn only; Qwen3 thinking is off."""
    from transformers import AutoTokenizer

    from llm_ner.generation import disable_thinking_by_default
    from llm_ner.training import NERDataArguments, load_split

    prompt = load_prompt("cluener_zh")
    data_args = NERDataArguments(train_file=str(cluener_dir / "dev.json"))
    examples, records, prompt = load_split(data_args.train_file, data_args, prompt, limit=8)
    tokenizer = AutoTokenizer.from_pretrained(real_model(name))
    disable_thinking_by_default(tokenizer)  # as training does
    trainer = sft_trainer(real_model(name), records, tmp_path, tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    merged_words = 0
    for i, ex in enumerate(examples):
        row = trainer.train_dataset[i]
        prompt_ids = chat_prompt_ids(tokenizer, prompt.messages(ex.text))
        assert row["input_ids"][: len(prompt_ids)] == prompt_ids
        assert row["labels"] == [-100] * len(prompt_ids) + row["input_ids"][len(prompt_ids) :]
        labelled = row["input_ids"][len(prompt_ids) :]
        assert tokenizer.decode(labelled) == records[i]["completion"][0]["content"] + "<|im_end|>\n"
        assert labelled.count(im_end) == 1
        text = tokenizer.decode(row["input_ids"])
        assert "<think>" not in text if name == "qwen2.5" else text.count("<think>\n\n</think>\n\n") == 1
        merged_words += sum(len(tokenizer.decode([t])) > 1 for t in tokenizer(ex.text)["input_ids"])
    assert merged_words > len(examples)  # the real BPE merges characters into words


def test_merge_keeps_thinking_off_with_the_real_qwen3_template(real_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm_ner.training import merge_adapter

    base = real_model("qwen3")
    messages = [{"role": "user", "content": "你好"}]
    plain = AutoTokenizer.from_pretrained(base)
    as_shipped = plain.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert not as_shipped.endswith("</think>\n\n")  # the real template thinks unless told not to
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules="all-linear"))
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    plain.save_pretrained(adapter)
    merged = AutoTokenizer.from_pretrained(merge_adapter(str(adapter), str(tmp_path / "merged")))
    rendered = merged.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert merged(rendered, add_special_tokens=False)["input_ids"] == chat_prompt_ids(plain, messages)


@pytest.mark.parametrize("name", NAMES)
def test_gold_round_trip_through_real_tokens_on_cluener_dev(real_tokenizer, cluener_dev, name):
    """gold -> answer -> real token ids -> decode -> parse -> align gives the gold spans back."""
    tokenizer = real_tokenizer(name)
    prompt = load_prompt()
    gold, predicted, totals = [], [], ParseStats()
    for ex in cluener_dev:
        answer = tokenizer.decode(tokenizer(format_answer(ex))["input_ids"])
        spans, stats = answer_to_spans(ex.text, answer, prompt.schema)
        totals += stats
        gold.append(ex.spans)
        predicted.append(spans)
    micro = span_scores(gold, predicted).micro
    print(f"\n{name}: round trip micro-F1 {micro.f1:.5f} over {len(cluener_dev)} sentences, {totals.as_dict()}")
    assert micro.f1 >= 0.9996
    assert totals.parse_failures == 0 and totals.repaired == 0


@pytest.mark.parametrize("name", NAMES)
def test_answers_cut_anywhere_in_real_tokens_parse_without_raising(real_tokenizer, cluener_dev, name):
    """Every prefix of the token ids of a gold answer (a generation cut by the token bound) parses
    without raising and gives spans inside the text, including cuts inside a multi-byte character."""
    tokenizer = real_tokenizer(name)
    prompt = load_prompt()
    cut_inside_a_character = 0
    partial = [ex for ex in cluener_dev if "\ufffd" in "".join(_pieces(tokenizer, format_answer(ex)))]
    rare = Example("r", "𠮷野家和龘䶮公司", [Span(0, 3, "company"), Span(4, 8, "company")])  # 4-byte, rare
    for ex in cluener_dev[:40] + partial + [rare]:
        ids = tokenizer(format_answer(ex))["input_ids"]
        for end in range(len(ids) + 1):
            answer = tokenizer.decode(ids[:end])
            cut_inside_a_character += answer.endswith("\ufffd")
            spans, stats = answer_to_spans(ex.text, answer, prompt.schema)
            assert all(0 <= s.start < s.end <= len(ex.text) for s in spans)
            assert stats.answers == 1
    print(f"\n{name}: {len(partial)} dev answers hold a character split over tokens; {cut_inside_a_character} cuts")
    assert len(partial) >= 3 and cut_inside_a_character >= len(partial) + 1


def _pieces(tokenizer, text: str) -> list[str]:
    return [tokenizer.decode([t]) for t in tokenizer(text)["input_ids"]]


def test_strings_that_differ_by_unicode_normalization_still_align(real_tokenizer):
    """The Qwen tokenizer NFC-normalizes: a decomposed accent comes back composed; full-width
    letters are NFKC-equal. Both align to the original text, counted as normalized."""
    tokenizer = real_tokenizer("qwen2.5")
    text = "在Cafe\u0301 Mu\u0308ller和ＩＢＭ公司工作"
    ex = Example("n", text, [Span(1, 6, "name"), Span(7, 14, "name"), Span(15, 20, "company")])
    assert [ex.mention(s) for s in ex.spans] == ["Cafe\u0301", "Mu\u0308ller", "ＩＢＭ公司"]
    answer = tokenizer.decode(tokenizer(format_answer(ex))["input_ids"])
    assert "Café" in answer and "Müller" in answer  # composed by the tokenizer's NFC
    model_answer = answer.replace("ＩＢＭ", "IBM")  # a model writes half-width letters
    spans, stats = answer_to_spans(text, model_answer, load_prompt().schema)
    assert spans == ex.spans
    assert stats.normalized == 3 and stats.hallucinated == 0
    assert unicodedata.normalize("NFC", text) != text


def drive(constraint, size: int, budget: int, seed: int, stops: set[int]) -> list[list[int]]:
    """Decode a batch with a seeded random policy over the allowed tokens (a random-weight model
    without its cost: the constraint sees the same calls); returns the answers' token ids."""
    rng = random.Random(seed)
    token_bytes = constraint.grammar.trie.token_bytes
    constraint.max_new_tokens = budget
    answers: list[list[int]] = [[] for _ in range(size)]
    finished = [False] * size
    for step in range(budget):
        for row in range(size):
            if finished[row]:
                continue
            allowed = constraint.allowed(row, budget - step)
            token = int(allowed[rng.randrange(len(allowed))])
            if b"]" in token_bytes.get(token, b"") and rng.random() < 0.9:  # long answers: test the budget
                token = int(allowed[rng.randrange(len(allowed))])
            constraint.advance(row, token)
            if token in stops:
                finished[row] = True
            else:
                answers[row].append(token)
    assert all(finished), f"{finished.count(False)} answers did not end within {budget} tokens"
    return answers


@pytest.mark.parametrize("name", NAMES)
def test_constrained_answers_are_complete_on_all_cluener_dev(real_tokenizer, real_cluener_dir, cluener_dev, name):
    """All 1 343 dev sentences, batches of 64, budgets from 12 to 64 tokens: every answer ends
    with end-of-turn in its budget, parses without repair, and holds only substrings and labels."""
    from llm_ner.generation.constrained import MentionsConstraint

    tokenizer = real_tokenizer(name)
    prompt = load_prompt()
    factory = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    stops = set(stop_token_ids(tokenizer))
    texts = [ex.text for ex in cluener_dev]
    totals, answers, items, at_the_bound, repeats = ParseStats(), [], 0, 0, 0
    for index, start in enumerate(range(0, len(texts), 64)):
        batch = texts[start : start + 64]
        budget = (12, 24, 40, 64)[index % 4]
        for text, ids in zip(batch, drive(factory(batch, 0), len(batch), budget, index, stops)):
            at_the_bound += len(ids) == budget - 1  # closed with the last tokens
            answer = tokenizer.decode(ids, skip_special_tokens=True)
            spans, stats = answer_to_spans(text, answer, prompt.schema)
            totals += stats
            repeats += stats.duplicates if len(ids) < budget - 1 else 0  # at the bound closing may need one
            answers.append(answer)
            items += len(json.loads(answer))
    summary = f"{len(set(answers))} distinct answers, {items} items, {at_the_bound} closed at the bound"
    print(f"\n{name}: {totals.as_dict()}, {summary}")
    assert totals.answers == len(texts) == 1343
    assert totals.parse_failures == totals.repaired == totals.hallucinated == 0
    assert totals.unknown_label == totals.invalid_items == 0
    assert repeats == 0  # no string written more often than the sentence holds it (but to close in time)
    assert len(set(answers)) > len(texts) // 2 and items > len(texts)  # varied, not all "[]"
    assert at_the_bound > len(texts) // 4  # the budget, not the policy, ended many answers


def test_constrained_generation_with_a_random_model_closes_in_the_budget(real_model, cluener_dev):
    """`generate_answers` with a noisy random-weight model on the real Qwen3 vocabulary and a
    tight bound: free answers are garbage; constrained ones all parse, complete, unrepaired."""
    from llm_ner.generation.constrained import MentionsConstraint

    model, tokenizer = load_model(str(real_model("qwen3")))
    redraw_(model, std=0.5, seed=3)  # large weights: varied garbage
    prompt = load_prompt("cluener_zh_short")
    texts = [ex.text for ex in cluener_dev[:24]]
    conversations = [prompt.messages(text) for text in texts]
    constraint = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    results = {}
    for name, factory in (("free", None), ("constrained", constraint)):
        answers = generate_answers(
            model,
            tokenizer,
            conversations if factory else conversations[:12],
            texts=texts,
            batch_size=24,
            max_new_tokens=16,
            logits_processor_factory=factory,
        )
        totals = ParseStats()
        for text, answer in zip(texts, answers):
            totals += answer_to_spans(text, answer, prompt.schema)[1]
        results[name] = (totals, answers)
    print(f"\nfree: {results['free'][0].as_dict()}\nconstrained: {results['constrained'][0].as_dict()}")
    assert results["free"][0].parse_failures > 9
    totals, answers = results["constrained"]
    assert totals.parse_failures == totals.repaired == totals.hallucinated == totals.unknown_label == 0
    assert totals.aligned > 0 and len(set(answers)) > 8
    assert all(answer.startswith("[") and answer.endswith("]") for answer in answers)


class _LoopingModel:
    """A test double of a model caught in a loop: at every step its best token is the longest one that
    continues ``[`` + ``item`` repeated forever (an item already cut off: close it, then loop again).
    All other tokens score 0."""

    def __init__(self, trie, item: str, close: str):
        self.trie, self.item, self.close = trie, item.encode(), close.encode()

    def wanted(self, written: bytes) -> bytes:
        loop = b"[" + self.item * (2 + len(written) // len(self.item))
        if loop.startswith(written):
            return loop[len(written) :]
        return self.close + self.item * 2

    def scores(self, generated: list[list[int]], vocab: int) -> torch.Tensor:
        scores = torch.zeros((len(generated), vocab))
        for row, ids in enumerate(generated):
            node = self.trie.root
            for depth, byte in enumerate(self.wanted(b"".join(self.trie.token_bytes.get(t, b"") for t in ids))[:48], 1):
                node = node.get(byte)
                if node is None:
                    break
                for token in node.get(-1, ()):
                    scores[row, token] = depth
        return scores


def test_a_looping_model_is_stopped_at_the_occurrences_and_closes(real_tokenizer):
    """A model that re-opens the same mention forever: every string is written no more often than the
    sentence holds it, and the answer closes soon after the loop starts, far inside its budget."""
    from collections import Counter

    from llm_ner.generation.constrained import MentionsConstraint

    tokenizer = real_tokenizer("qwen2.5")
    prompt = load_prompt()
    factory = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    texts = ["我在北京和上海工作", "北京人在北京", "北京", "上海北京"]  # once, twice, the whole text, at the end
    constraint = factory(texts, 0)
    budget = 120
    constraint.max_new_tokens = budget
    model = _LoopingModel(constraint.grammar.trie, '{"text":"北京","label":"address"},', '","label":"address"},')
    stops = set(stop_token_ids(tokenizer))
    generated: list[list[int]] = [[] for _ in texts]
    finished = [False] * len(texts)
    for _ in range(budget):
        scores = constraint(torch.tensor(generated, dtype=torch.long), model.scores(generated, len(tokenizer)))
        for row, token in enumerate(scores.argmax(-1).tolist()):
            if finished[row]:
                token = next(iter(stops))  # generate pads a finished row
            finished[row] = finished[row] or token in stops
            generated[row].append(token)
    for text, ids in zip(texts, generated):
        length = next(i for i, t in enumerate(ids) if t in stops)
        answer = tokenizer.decode(ids[:length])
        items = json.loads(answer)
        counts = Counter(item["text"] for item in items)
        print(f"\n{text}: {length} tokens: {answer}")
        assert all(counts[s] <= text.count(s) for s in counts), answer
        assert counts["北京"] == text.count("北京")  # the loop's mention itself, as often as it occurs
        assert len(items) <= text.count("北京") + 1, answer  # at most one item after the loop began
        assert length < budget // 2, f"{length} tokens: the loop was not ended ({answer})"


def test_a_row_that_tried_to_repeat_cannot_open_an_item_inside_a_token(real_tokenizer):
    """A model on the real 0.5B looped by growing its mention after the repeat was refused, and Qwen's
    one-token `"},{"` closed each item and opened the next without the list ever being asked to close.
    After the refused repeat, no token may open another item; the current one closes, then only `]`."""
    from llm_ner.generation.constrained import MentionsConstraint

    tokenizer = real_tokenizer("qwen2.5")
    prompt = load_prompt("cluener_zh_short")
    text = "组委会对中国区预选赛进行了抽签分组"
    constraint = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)([text], 0)
    written = tokenizer('[{"text":"组委会","label":"government"},{"text":"组委会')["input_ids"]
    scores = torch.zeros((1, len(tokenizer)))
    repeat = tokenizer.convert_tokens_to_ids(tokenizer.tokenize('","'))[0]
    scores[0, repeat] = 10.0  # the model's best token would close the used-up string again
    masked = constraint(torch.tensor([written]), scores)
    assert masked[0, repeat] == float("-inf") and constraint.closing[0]
    grown = written + tokenizer('对中国区","label":"government')["input_ids"]
    allowed = set(constraint.allowed_per_row(torch.tensor([grown]))[0].tolist())
    tokens = {s: tokenizer.convert_tokens_to_ids(tokenizer.tokenize(s)) for s in ('"},{"', '"},', '"}')}
    assert all(len(ids) == 1 for ids in tokens.values())  # each one token in Qwen's vocabulary
    assert tokens['"},{"'][0] not in allowed and tokens['"},'][0] not in allowed
    assert tokens['"}'][0] in allowed
    after = constraint.allowed_per_row(torch.tensor([grown + tokens['"}']]))[0]
    assert after.size and {tokenizer.decode([int(i)])[0] for i in after} == {"]"}
