import random

import pytest
from seqeval.metrics import classification_report

from llm_ner.data import Example, Span, spans_to_tags
from llm_ner.metrics import (
    ERROR_KINDS,
    cluener_string_scores,
    error_breakdown,
    evaluate,
    match_predictions,
    span_scores,
)
from llm_ner.report import format_evaluation


def perturb(examples, labels, seed=0):
    """A prediction set with every kind of error, no overlapping spans."""
    rng = random.Random(seed)
    predictions = []
    for ex in examples:
        candidates = []
        for s in ex.spans:
            roll = rng.random()
            if roll < 0.6:
                candidates.append(s)
            elif roll < 0.7:
                candidates.append(Span(s.start, s.end, rng.choice(labels)))
            elif roll < 0.8:
                candidates.append(Span(s.start, min(len(ex.text), s.end + 1), s.label))
            elif roll < 0.85:
                candidates.append(Span(s.start + 1 if s.end - s.start > 1 else s.start, s.end, rng.choice(labels)))
            # else: missed
        if ex.text and rng.random() < 0.3:
            start = rng.randrange(len(ex.text))
            candidates.append(Span(start, min(len(ex.text), start + rng.randint(1, 3)), rng.choice(labels)))
        kept = []
        for span in sorted(candidates):
            if not any(span.overlaps(k) for k in kept):
                kept.append(span)
        predictions.append(Example(ex.id, ex.text, kept))
    return predictions


def test_hand_computed_scores():
    gold = [[Span(0, 2, "A"), Span(3, 5, "B")], [Span(0, 1, "A")]]
    pred = [[Span(0, 2, "A"), Span(3, 5, "A")], [Span(0, 2, "A")]]
    scores = span_scores(gold, pred)
    a, b = scores.per_class["A"], scores.per_class["B"]
    assert (a.correct, a.predicted, a.support) == (1, 3, 2)
    assert a.precision == pytest.approx(1 / 3) and a.recall == pytest.approx(0.5) and a.f1 == pytest.approx(0.4)
    assert (b.precision, b.recall, b.f1, b.support) == (0.0, 0.0, 0.0, 1)
    assert scores.micro.f1 == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
    assert scores.macro.f1 == pytest.approx(0.2)


def test_duplicate_predictions_count_once():
    scores = span_scores([[Span(0, 1, "A")]], [[Span(0, 1, "A"), Span(0, 1, "A")]])
    assert scores.micro.precision == 1.0


def test_seqeval_agrees_per_class_on_perturbed_cluener_dev(cluener_dev):
    labels = sorted({s.label for ex in cluener_dev for s in ex.spans})
    pred = perturb(cluener_dev, labels)
    ours = span_scores([ex.spans for ex in cluener_dev], [ex.spans for ex in pred], labels)
    y_true = [spans_to_tags(len(ex.text), ex.spans) for ex in cluener_dev]
    y_pred = [spans_to_tags(len(ex.text), ex.spans) for ex in pred]
    theirs = classification_report(y_true, y_pred, output_dict=True, digits=6, zero_division=0)
    assert 0.3 < ours.micro.f1 < 0.9  # the perturbation really changed things
    for label in labels:
        for key, value in (
            ("precision", ours.per_class[label].precision),
            ("recall", ours.per_class[label].recall),
            ("f1-score", ours.per_class[label].f1),
        ):
            assert value == pytest.approx(theirs[label][key], abs=1e-12), (label, key)
        assert ours.per_class[label].support == theirs[label]["support"]
    assert ours.micro.f1 == pytest.approx(theirs["micro avg"]["f1-score"], abs=1e-12)
    assert ours.macro.f1 == pytest.approx(theirs["macro avg"]["f1-score"], abs=1e-12)


def test_error_breakdown_categories():
    gold = [
        [
            Span(0, 2, "A"),
            Span(3, 5, "A"),
            Span(6, 8, "A"),
            Span(9, 11, "A"),
            Span(12, 14, "A"),
            Span(15, 17, "B"),
        ]
    ]
    pred = [
        [
            Span(0, 2, "A"),
            Span(3, 5, "B"),
            Span(6, 9, "A"),
            Span(9, 10, "B"),
            Span(20, 21, "B"),
            Span(15, 17, "B"),
        ]
    ]
    table = error_breakdown(gold, pred)
    assert table["A"] == {
        "correct": 1,
        "wrong_type": 1,
        "wrong_boundary": 1,
        "wrong_type_and_boundary": 1,
        "spurious": 0,
        "missed": 1,
    }
    assert table["B"] == {
        "correct": 1,
        "wrong_type": 0,
        "wrong_boundary": 0,
        "wrong_type_and_boundary": 0,
        "spurious": 1,
        "missed": 0,
    }


def test_error_breakdown_accounts_for_every_gold_span(cluener_dev):
    labels = sorted({s.label for ex in cluener_dev for s in ex.spans})
    pred = perturb(cluener_dev, labels, seed=1)
    table = error_breakdown([ex.spans for ex in cluener_dev], [ex.spans for ex in pred])
    gold_total = sum(len(ex.spans) for ex in cluener_dev)
    assert sum(c[k] for c in table.values() for k in ERROR_KINDS if k != "spurious") == gold_total
    scores = span_scores([ex.spans for ex in cluener_dev], [ex.spans for ex in pred])
    assert sum(c["correct"] for c in table.values()) == scores.micro.correct


def test_cluener_string_level_ignores_offsets_and_repeats():
    gold = [Example("0", "北京和北京", [Span(0, 2, "address"), Span(3, 5, "address")])]
    shifted = [Example("0", "北京和北京", [Span(3, 5, "address")])]
    assert cluener_string_scores(gold, shifted).micro.f1 == 1.0
    assert span_scores([gold[0].spans], [shifted[0].spans]).micro.recall == 0.5


def test_evaluate_shifted_offsets_lower_scores(cluener_dev):
    shifted = [
        Example(
            ex.id,
            ex.text,
            [
                Span(s.start + 1, s.end + 1, s.label) if i % 2 == 0 else s
                for i, s in enumerate(ex.spans)
                if s.end < len(ex.text)
            ],
        )
        for ex in cluener_dev
    ]
    result = evaluate(cluener_dev, shifted)
    span_f1 = result["span"]["micro avg"]["f1-score"]
    assert 0.3 < span_f1 < 0.7
    assert result["cluener_string"]["micro avg"]["f1-score"] < 0.8
    assert result["errors"]["name"]["wrong_boundary"] > 0
    text = format_evaluation(result)
    assert "| micro avg |" in text and "CLUENER string-level" in text


def test_match_predictions_by_id():
    gold = [Example("0", "甲", []), Example("1", "乙", [Span(0, 1, "A")])]
    aligned, missing = match_predictions(gold, [Example("1", "乙", [Span(0, 1, "A")])])
    assert [ex.spans for ex in aligned] == [[], [Span(0, 1, "A")]] and missing == ["0"]
    with pytest.raises(ValueError, match="not in the gold file"):
        match_predictions(gold, [Example("9", "乙", [])])
    with pytest.raises(ValueError, match="text differs"):
        match_predictions(gold, [Example("1", "丙", [])])
    with pytest.raises(ValueError, match="appears twice"):
        match_predictions(gold, [Example("1", "乙", []), Example("1", "乙", [])])


def official_cluener_score(pred_lines: list[dict], gold_lines: list[dict], labels: list[str]) -> tuple[dict, float]:
    """The logic of CLUENER2020's official `score.py` (github.com/CLUEbenchmark/CLUENER2020,
    score.py at 2e8fccd, `get_f1_score_label` / `get_f1_score`), re-implemented: lines are paired by
    position; per class, a predicted entity string of a line is a true positive if the gold line
    has that string for that class; the average is the mean of the per-class F1 (their division by
    zero, for a class with no prediction, is scored 0 here)."""
    f_score = {}
    for label in labels:
        tp = fp = fn = 0
        for pre, gold in zip(pred_lines, gold_lines):
            pre_keys = pre["label"].get(label, {}).keys()
            gold_keys = gold["label"].get(label, {}).keys()
            tp += sum(1 for k in pre_keys if k in gold_keys)
            fp += sum(1 for k in pre_keys if k not in gold_keys)
            fn += sum(1 for k in gold_keys if k not in pre_keys)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f_score[label] = 2 * p * r / (p + r) if p + r else 0.0
    return f_score, sum(f_score.values()) / len(labels)


def test_cluener_string_level_equals_the_official_score_script(cluener_dev):
    """Per-class F1 and the macro average equal CLUENER's score.py on a perturbed dev set."""
    from llm_ner.data import example_to_cluener

    labels = sorted({s.label for ex in cluener_dev for s in ex.spans})
    pred = perturb(cluener_dev, labels, seed=3)
    # Also predict, in other sentences, strings that are gold somewhere else in the set: a scorer
    # that forgets which sentence a string came from counts them as correct.
    gold_strings = [(ex.mention(s), s.label) for ex in cluener_dev for s in ex.spans]
    rng = random.Random(5)
    for ex in pred:
        mention, label = rng.choice(gold_strings)
        position = ex.text.find(mention)
        if position >= 0 and all(s.end <= position or s.start >= position + len(mention) for s in ex.spans):
            ex.spans.append(Span(position, position + len(mention), label))
    official, official_macro = official_cluener_score(
        [example_to_cluener(ex) for ex in pred], [example_to_cluener(ex) for ex in cluener_dev], labels
    )
    ours = cluener_string_scores(cluener_dev, pred, labels)
    assert 0.3 < ours.micro.f1 < 0.9
    for label in labels:
        assert ours.per_class[label].f1 == pytest.approx(official[label], abs=1e-12), label
    assert ours.macro.f1 == pytest.approx(official_macro, abs=1e-12)


def test_cluener_string_level_keeps_sentences_apart():
    """A string right in one sentence is not right in another that also contains it."""
    gold = [Example("0", "北京欢迎你", [Span(0, 2, "address")]), Example("1", "北京欢迎你", [])]
    pred = [Example("0", "北京欢迎你", []), Example("1", "北京欢迎你", [Span(0, 2, "address")])]
    scores = cluener_string_scores(gold, pred)
    assert scores.micro.correct == 0 and scores.micro.f1 == 0.0


def test_macro_average_leaves_out_classes_with_neither_gold_nor_prediction():
    gold = [[Span(0, 2, "A"), Span(3, 5, "B")]]
    pred = [[Span(0, 2, "A")]]
    scores = span_scores(gold, pred, labels=["A", "B", "C"])
    assert set(scores.per_class) == {"A", "B"}
    assert scores.macro.f1 == pytest.approx((1.0 + 0.0) / 2)
    assert cluener_string_scores(
        [Example("0", "abcde", gold[0])], [Example("0", "abcde", pred[0])], ["A", "B", "C"]
    ).macro.f1 == pytest.approx(0.5)
