"""Entity confidence: recorded token probabilities (after the constraint mask), entity scores, PR curves,
evaluate --min-score and select. Tiny random-weight models: plumbing, not quality."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import redraw_weights

from llm_ner.answer_format import answer_to_scored_spans
from llm_ner.cli import main as cli
from llm_ner.confidence import filter_by_score, held_out_threshold, pr_curve, read_scores, select_for_annotation
from llm_ner.data import Example, Span, load_examples, read_cluener, write_cluener
from llm_ner.prompting import load_prompt
from llm_ner.tiny import build_tiny_model, default_texts

ROOT = Path(__file__).resolve().parent.parent
QWEN_TOKENIZER = ROOT.parent / "shared" / "tokenizers" / "qwen2.5"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A tiny Qwen3 with large random weights: free output is varied, constrained output has entities."""
    base = build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3", "qwen3", default_texts(limit=40), hidden_size=64)
    return redraw_weights(base, base.with_name("noisy"), std=0.5)


from llm_ner.generation.decoding import _Chain  # noqa: E402


class PrefixNoise:
    """Large noise on every score, seeded by the tokens generated so far: the random model writes
    varied entities, and a replay of one answer alone sees the same noise."""

    def __init__(self, prompt_width: int):
        self.prompt_width = prompt_width

    def __call__(self, input_ids, scores):
        noisy = scores.clone()
        for row in range(input_ids.shape[0]):
            seed = hash(tuple(input_ids[row, self.prompt_width :].tolist())) % 2**31
            noise = torch.randn(scores.shape[1], generator=torch.Generator().manual_seed(seed))
            noisy[row] += 8 * noise
        return noisy


def test_recorded_probabilities_are_those_of_the_chosen_tokens_after_the_mask(tiny_qwen, cluener_dev):
    """A padded batch, noisy and constrained; replaying each answer alone token by token, the recorded
    log-probability is log-softmax of the noisy, masked logits at the chosen token (its arg max)."""
    from llm_ner.generation import chat_prompt_ids, generate_answers, load_model
    from llm_ner.generation.constrained import MentionsConstraint

    model, tokenizer = load_model(str(tiny_qwen), dtype="float32")  # compared with a float32 replay
    prompt = load_prompt()
    factory = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    texts = [ex.text for ex in cluener_dev[:3]]
    conversations = [prompt.messages(text) for text in texts]
    recorded: list = []
    answers = generate_answers(
        model,
        tokenizer,
        conversations,
        texts=texts,
        batch_size=3,
        max_new_tokens=24,
        logits_processor_factory=lambda batch, width: _Chain(PrefixNoise(width), factory(batch, width)),
        token_logprobs=recorded,
    )
    assert len({tuple(ids) for ids, _ in recorded}) > 2 and any(len(ids) > 15 for ids, _ in recorded)
    masked_away = 0.0
    for text, conversation, answer, (ids, logprobs) in zip(texts, conversations, answers, recorded):
        assert len(logprobs) == len(ids) and tokenizer.decode(ids, skip_special_tokens=True) == answer
        prompt_ids = chat_prompt_ids(tokenizer, conversation)
        full = torch.tensor([prompt_ids + list(ids)])
        with torch.no_grad():
            logits = model(full).logits[0, len(prompt_ids) - 1 : -1].float()
        noise, constraint = PrefixNoise(len(prompt_ids)), factory([text], len(prompt_ids))
        for k, token in enumerate(ids):
            prefix = full[:, : len(prompt_ids) + k]
            noisy = noise(prefix, logits[k : k + 1])
            masked = constraint(prefix, noisy.clone())[0]
            assert int(masked.argmax()) == token
            assert logprobs[k] == pytest.approx(float(torch.log_softmax(masked, -1)[token]), abs=2e-3)
            masked_away += float(torch.log_softmax(masked, -1)[token] - torch.log_softmax(noisy[0], -1)[token])
    assert masked_away > 1.0  # the mask really changed the probabilities that were recorded


def test_unconstrained_probabilities_equal_teacher_forcing(tiny_qwen, cluener_dev):
    from llm_ner.generation import chat_prompt_ids, generate_answers, load_model

    model, tokenizer = load_model(str(tiny_qwen), dtype="float32")  # compared with a float32 replay
    conversation = load_prompt().messages(cluener_dev[0].text)
    recorded: list = []
    generate_answers(model, tokenizer, [conversation], batch_size=1, max_new_tokens=12, token_logprobs=recorded)
    ids, logprobs = recorded[0]
    prompt_ids = chat_prompt_ids(tokenizer, conversation)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + list(ids)])).logits[0, len(prompt_ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(ids)[:, None])[:, 0]
    assert len(ids) == 12 and torch.allclose(torch.tensor(logprobs), expected, atol=1e-4)


def test_entity_score_is_the_product_of_its_entity_and_label_tokens():
    answer = '[{"text":"张三","label":"name"},{"text":"北京","label":"address"},{"text":"张三","label":"name"}]'
    # one token per character, log-probability -0.01 * (index + 1)
    ranges = [(i, i + 1) for i in range(len(answer))]
    logprobs = [-0.01 * (i + 1) for i in range(len(answer))]
    text = "张三在北京见到张三"
    spans, stats, scores = answer_to_scored_spans(text, answer, ranges, logprobs, load_prompt().schema)
    assert spans == [Span(0, 2, "name"), Span(3, 5, "address"), Span(7, 9, "name")]

    def product(*strings_at):
        return math.exp(sum(logprobs[i] for start, length in strings_at for i in range(start, start + length)))

    first = answer.index("张三")
    second = answer.index("张三", first + 1)
    assert scores[Span(0, 2, "name")] == pytest.approx(product((first, 2), (answer.index("name"), 4)))
    # the repeat takes the tokens of the second occurrence and of its own label
    assert scores[Span(7, 9, "name")] == pytest.approx(product((second, 2), (answer.index("name", second), 4)))
    assert scores[Span(3, 5, "address")] == pytest.approx(
        product((answer.index("北京"), 2), (answer.index("address"), 7))
    )


def test_grouped_strings_score_every_span_they_place_folded_ones_too():
    """A grouped entity string scores each of its spans, also where it was found only after folding
    full-width forms (the span's text then differs from the string)."""
    answer = '{"company": ["ABC公司"], "address": ["北京"]}'
    ranges = [(i, i + 1) for i in range(len(answer))]
    logprobs = [-0.01 * (i + 1) for i in range(len(answer))]
    text = "ＡＢＣ公司在北京，ＡＢＣ公司"
    spans, stats, scores = answer_to_scored_spans(text, answer, ranges, logprobs, load_prompt().schema)
    assert spans == [Span(0, 5, "company"), Span(6, 8, "address"), Span(9, 14, "company")]
    assert stats.normalized == 1

    def product(start, length):
        return math.exp(sum(logprobs[i] for i in range(start, start + length)))

    company = product(answer.index("ABC公司"), 5)
    assert scores == pytest.approx(
        {
            Span(0, 5, "company"): company,
            Span(9, 14, "company"): company,
            Span(6, 8, "address"): product(answer.index("北京"), 2),
        }
    )


@pytest.mark.skipif(not QWEN_TOKENIZER.is_dir(), reason=f"needs the real Qwen tokenizer in {QWEN_TOKENIZER}")
def test_token_char_ranges_with_the_real_qwen_tokenizer():
    from transformers import AutoTokenizer

    from llm_ner.generation import token_char_ranges

    tokenizer = AutoTokenizer.from_pretrained(QWEN_TOKENIZER)
    answer = '[{"text":"彭小军","label":"name"},{"text":"台湾","label":"address"}]'
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ranges = token_char_ranges(tokenizer, ids, answer)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(answer)
    assert all(a <= b for a, b in ranges) and all(r[0] <= s[0] for r, s in zip(ranges, ranges[1:]))
    assert set(range(len(answer))) == {i for a, b in ranges for i in range(a, b)}
    multi_byte = [(a, b) for (a, b), i in zip(ranges, ids) if len(tokenizer.decode([i]).encode()) > 3]
    assert any("彭" in answer[a:b] or "台" in answer[a:b] for a, b in multi_byte)
    assert token_char_ranges(tokenizer, ids, answer + "x") is None


def test_pr_curve_on_a_known_ranking():
    gold = [Example(str(i), "abcdef", [Span(0, 1, "x"), Span(2, 3, "x")]) for i in range(2)]
    pred = [Example("0", "abcdef", [Span(0, 1, "x"), Span(4, 5, "x")]), Example("1", "abcdef", [Span(2, 3, "x")])]
    scores = {"0": {Span(0, 1, "x"): 0.9, Span(4, 5, "x"): 0.8}, "1": {Span(2, 3, "x"): 0.3}}
    curve = pr_curve(gold, pred, scores)
    # ranks: hit (P 1, R .25), miss (P .5, R .25), hit (P 2/3, R .5)
    assert [(p["precision"], p["recall"]) for p in curve["points"]] == [(1.0, 0.25), (0.5, 0.25), (2 / 3, 0.5)]
    assert curve["auc"] == pytest.approx(0.25 * 1.0 + 0.25 * 2 / 3)
    assert curve["random_auc"] == pytest.approx(2 / 3 * 0.5)
    assert curve["best"]["threshold"] == 0.3 and curve["best"]["f1"] == pytest.approx(4 / 7)
    kept, dropped = filter_by_score(pred, scores, 0.85)
    assert dropped == 2 and kept[0].spans == [Span(0, 1, "x")] and kept[1].spans == []


def scored_predictions(cluener_dev, seed=0):
    """Gold with a quarter of the entities retyped; correct ones score high, wrong ones low (plus noise)."""
    import random

    rng = random.Random(seed)
    records = []
    for ex in cluener_dev[:300]:
        spans, scores = [], {}
        for s in ex.spans:
            if rng.random() < 0.25:
                s = Span(s.start, s.end, "game" if s.label != "game" else "name")
                scores[s] = rng.uniform(0.0, 0.7)
            else:
                scores[s] = rng.uniform(0.3, 1.0)
            spans.append(s)
        records.append((Example(ex.id, ex.text, spans), scores))
    return records


def write_scored(records, path):
    from llm_ner.confidence import scores_field
    from llm_ner.data import example_to_cluener

    with open(path, "w", encoding="utf-8") as out:
        for ex, scores in records:
            record = {**example_to_cluener(ex), "scores": scores_field(ex, scores), "raw": "[]"}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def test_evaluate_min_score_and_the_report_pr_curve(cluener_dev, tmp_path, capsys):
    gold_path, pred_path = tmp_path / "gold.json", tmp_path / "pred.json"
    write_cluener(cluener_dev[:300], gold_path)
    records = scored_predictions(cluener_dev)
    write_scored(records, pred_path)
    read_back = read_scores(pred_path)
    assert read_back.keys() == {ex.id for ex, scores in records if scores}
    for ex, scores in records:
        assert read_back.get(ex.id, {}) == pytest.approx(scores, abs=1e-6)
    assert read_cluener(pred_path)[0] == [ex for ex, _ in records]  # the CLUENER reader ignores the scores
    out = tmp_path / "filtered.scores.json"
    assert (
        cli(["evaluate", "--gold", str(gold_path), "--pred", str(pred_path), "--min-score", "0.5", "--json", str(out)])
        == 0
    )
    filtered = tmp_path / "filtered.json"
    write_cluener([Example(ex.id, ex.text, [s for s in ex.spans if sc[s] >= 0.5]) for ex, sc in records], filtered)
    reference = tmp_path / "reference.scores.json"
    assert cli(["evaluate", "--gold", str(gold_path), "--pred", str(filtered), "--json", str(reference)]) == 0
    assert json.loads(out.read_text())["span"] == json.loads(reference.read_text())["span"]
    assert cli(["evaluate", "--gold", str(gold_path), "--pred", str(filtered), "--min-score", "0.5"]) == 1
    assert "carries no entity scores" in capsys.readouterr().err
    assert cli(["evaluate", "--gold", str(gold_path), "--pred", str(pred_path), "--min-score", "2"]) == 2
    # the report: a PR curve for the scored system only, better than random on this planted ranking
    report_dir = tmp_path / "report"
    args = ["report", "--gold", str(gold_path), "--pred", f"llm={pred_path}", "--pred", f"crf={gold_path}"]
    assert cli([*args, "--out", str(report_dir), "--resamples", "50"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    curve = report["systems"]["llm"]["pr_curve"]
    assert "pr_curve" not in report["systems"]["crf"] and (report_dir / "pr_llm.png").stat().st_size > 5000
    assert curve["auc"] > curve["random_auc"] + 0.05
    assert 0.3 <= curve["best"]["threshold"] <= 0.7
    gold_examples = cluener_dev[:300]
    aligned = [ex for ex, _ in records]
    expected = held_out_threshold(gold_examples, aligned, {ex.id: sc for ex, sc in records if sc})
    assert curve["held_out"] == pytest.approx(expected) and curve["held_out"]["chosen_on"] == 150
    assert f"to {expected['f1_thresholded']:.4f}" in (report_dir / "report.html").read_text(encoding="utf-8")
    assert "AUC" in (report_dir / "report.html").read_text(encoding="utf-8")


def test_select_by_uncertainty_and_disagreement_then_export(cluener_dev, tmp_path):
    records = scored_predictions(cluener_dev)
    pred_path = tmp_path / "pred.json"
    write_scored(records, pred_path)
    out = tmp_path / "next.json"
    assert cli(["select", "--pred", str(pred_path), "-n", "10", "--by", "uncertainty", "--output", str(out)]) == 0
    chosen = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    lowest = sorted(min(sc.values(), default=1.0) for _, sc in records)[:10]
    assert [round(1 - r["select"]["uncertainty"], 6) for r in chosen] == [round(v, 6) for v in lowest]
    other = tmp_path / "other.json"
    write_cluener(cluener_dev[:300], other)
    assert cli(["select", "--pred", str(pred_path), "--pred", str(other), "-n", "5", "--by", "disagreement",
                "--output", str(out)]) == 0  # fmt: skip
    chosen = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    differ = sorted((len(set(ex.spans) ^ set(g.spans)) for (ex, _), g in zip(records, cluener_dev)), reverse=True)
    assert [r["select"]["disagreement"] for r in chosen] == differ[:5]
    studio = tmp_path / "next.labelstudio.json"
    assert cli(["export", str(out), "--to", "labelstudio", "--output", str(studio)]) == 0
    tasks = json.loads(studio.read_text(encoding="utf-8"))
    assert len(tasks) == 5 and all("score" in r for t in tasks for r in t["predictions"][0]["result"])
    assert cli(["select", "--pred", str(other), "-n", "5", "--by", "uncertainty", "--output", str(out)]) == 1
    with pytest.raises(SystemExit):  # -n is a positive_int
        cli(["select", "--pred", str(other), "-n", "0", "--by", "uncertainty", "--output", str(out)])


def test_extract_writes_scores_that_evaluate_and_select_read(tiny_qwen, cluener_dev, tmp_path):
    source = tmp_path / "dev.json"
    write_cluener(cluener_dev[:8], source)
    out = tmp_path / "pred.json"
    args = ["extract", "--model", str(tiny_qwen), "--input", str(source), "--output", str(out), "--quiet"]
    assert cli([*args, "--constrained", "--max-new-tokens", "48"]) == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all(0 < r["answer_score"] <= 1 for r in written)
    spans = sum(len(offsets) for r in written for entities in r["label"].values() for offsets in entities.values())
    scores = read_scores(out)
    assert spans > 3 and sum(len(v) for v in scores.values()) == spans  # every entity has a score
    assert all(0 < v <= 1 for by_span in scores.values() for v in by_span.values())
    assert select_for_annotation([str(out)], 5, "uncertainty")


def test_scores_attach_to_the_ids_the_readers_give(tmp_path):
    """Records without ids are numbered by the readers over non-blank lines; the scores must land
    on the same sentences, also after a blank line, a BOM or a Label Studio array on its second line."""
    from llm_ner.confidence import read_answer_scores
    from llm_ner.data import write_annotations

    records = [
        {
            "text": "张三",
            "label": {"name": {"张三": [[0, 1]]}},
            "scores": {"name": {"张三": [0.25]}},
            "answer_score": 0.5,
        },
        {
            "text": "李四",
            "label": {"name": {"李四": [[0, 1]]}},
            "scores": {"name": {"李四": [0.75]}},
            "answer_score": 0.9,
        },
    ]
    path = tmp_path / "pred.json"
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\ufeff" + lines[0] + "\n\n" + lines[1] + "\n", encoding="utf-8")
    examples, _ = load_examples(path)
    assert [ex.id for ex in examples] == ["0", "1"]
    assert read_scores(path) == {"0": {Span(0, 2, "name"): 0.25}, "1": {Span(0, 2, "name"): 0.75}}
    assert read_answer_scores(path) == {"0": 0.5, "1": 0.9}
    studio = tmp_path / "pred.labelstudio.json"
    write_annotations(examples, studio, "labelstudio", read_scores(path))
    studio.write_text("\n" + studio.read_text(encoding="utf-8"), encoding="utf-8")
    assert read_scores(studio) == {"0": {Span(0, 2, "name"): 0.25}, "1": {Span(0, 2, "name"): 0.75}}
    assert read_scores(studio, "labelstudio") == read_scores(studio)


def test_held_out_threshold_is_chosen_on_the_first_part_and_scored_on_the_rest(cluener_dev):
    from llm_ner.metrics import evaluate

    records = scored_predictions(cluener_dev)
    gold, pred = cluener_dev[:300], [ex for ex, _ in records]
    scores = {ex.id: sc for ex, sc in records if sc}
    held = held_out_threshold(gold, pred, scores)
    assert (held["chosen_on"], held["applied_to"]) == (150, 150) and held["dropped"] > 0
    assert held["f1_all"] == pytest.approx(evaluate(gold[150:], pred[150:])["span"]["micro avg"]["f1-score"])
    assert held["f1_thresholded"] > held["f1_all"] + 0.02  # low scores are the wrong labels: dropping them pays
    # scores that rank in the first half only: the threshold comes from there and fails on the rest
    text, right, wrong = "甲乙丙丁戊己", Span(0, 2, "name"), Span(3, 5, "name")
    gold = [Example(str(i), text, [right]) for i in range(4)]
    pred = [Example(str(i), text, [right, wrong]) for i in range(4)]
    scores = {str(i): {right: 0.8 if i < 2 else 0.6, wrong: 0.2 if i < 2 else 0.5} for i in range(4)}
    held = held_out_threshold(gold, pred, scores)
    assert held["threshold"] == 0.8 and held["dropped"] == 4
    assert held["f1_all"] == pytest.approx(2 / 3) and held["f1_thresholded"] == 0.0


def test_ranking_test_tells_a_ranking_score_from_a_random_one():
    """Scores that put every correct entity first beat shuffled scores (small p); reversed scores do not;
    within sentences only sentences with two or more predictions count."""
    from llm_ner.confidence import ranking_test

    gold, pred, good, bad = [], [], {}, {}
    for i in range(40):
        text = "甲乙丙丁戊己庚辛"
        right, wrong = Span(0, 2, "name"), Span(4, 6, "name")
        gold.append(Example(str(i), text, [right]))
        pred.append(Example(str(i), text, [right, wrong] if i % 2 else [wrong]))
        good[str(i)] = {right: 0.9, wrong: 0.1 + i / 1000}
        bad[str(i)] = {right: 0.1 - i / 1000, wrong: 0.9 - i / 1000}
    ranked = ranking_test(gold, pred, good, shuffles=200)
    assert ranked["p"] < 0.01 and ranked["auc"] > ranked["shuffled_auc"]
    assert ranking_test(gold, pred, bad, shuffles=200)["p"] > 0.9
    within = ranking_test(gold, pred, good, shuffles=200, within_sentence=True)
    assert within["sentences"] == 20 and within["predictions"] == 40 and within["p"] < 0.01


def test_bootstrap_interval_brackets_the_observed_f1():
    import numpy as np

    from llm_ner.report import bootstrap_interval

    counts = np.array([[1, 2, 2], [0, 1, 1], [3, 3, 4], [2, 2, 2]] * 10)
    result = bootstrap_interval(counts, resamples=500, seed=1)
    assert result["f1"] == pytest.approx(2 * 60 / (80 + 90))
    low, high = result["ci95"]
    assert low < result["f1"] < high and high - low < 0.3
    same = bootstrap_interval(np.array([[1, 2, 2]] * 5), resamples=50)
    assert same["ci95"] == [pytest.approx(0.5), pytest.approx(0.5)]
