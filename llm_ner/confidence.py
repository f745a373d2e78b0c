"""Entity confidence: the scores `llm-ner extract` writes, filtering by them, PR curves, what to annotate next.

An entity's score is the probability, under the decoding that produced the answer, of the tokens
of its entity string and its label: the product of the chosen tokens' probabilities after every
logits processor (so after the constraint mask with ``--constrained``). A prediction record keeps
the CLUENER ``label`` field untouched and adds ``scores`` with the same shape, one score per
occurrence: ``{"label": {"name": {"张三": [[0, 1]]}}, "scores": {"name": {"张三": [0.93]}}}``, plus
``answer_score``, the geometric mean of the probabilities of all answer tokens.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from pathlib import Path

from .data import Example, Span, decode_json, is_offset, read_annotations, read_lines_or_errors, record_id, score_value
from .errors import DataError
from .metrics import span_scores


def scores_field(example: Example, scores: dict[Span, float]) -> dict:
    """The ``scores`` object of a record, shaped like its CLUENER ``label`` object."""
    field: dict[str, dict[str, list[float]]] = {}
    for span in example.spans:
        if span in scores:
            field.setdefault(span.label, {}).setdefault(example.mention(span), []).append(round(scores[span], 6))
    return field


def record_scores(record: dict) -> dict[Span, float]:
    """Span -> score of one CLUENER prediction record with a ``scores`` field (CLUENER offsets); ValueError for a
    score outside [0, 1]."""
    label, scores = record.get("label"), record.get("scores")
    if not isinstance(label, dict) or not isinstance(scores, dict):
        return {}
    found = {}
    for type_, entities in label.items():
        for entity, offsets in (entities or {}).items() if isinstance(entities, dict) else ():
            values = (scores.get(type_) or {}).get(entity) if isinstance(scores.get(type_), dict) else None
            if not isinstance(values, list) or not isinstance(offsets, list):
                continue
            for pair, value in zip(offsets, values):
                try:
                    score = score_value(value)
                except ValueError as exc:
                    raise ValueError(f"scores[{type_!r}][{entity!r}]: {exc}") from None
                if score is not None and isinstance(pair, list) and len(pair) == 2 and all(map(is_offset, pair)):
                    found[Span(pair[0], pair[1] + 1, type_)] = score
    return found


def read_scores(
    path: str | Path, input_format: str = "auto", skipped_lines: frozenset[int] = frozenset()
) -> dict[str, dict[Span, float]]:
    """Sentence id -> span -> score from a prediction file (CLUENER with ``scores``, or Label Studio /
    doccano with per-region scores); empty when the file carries none. Ids as the format's reader
    assigns them; ``auto`` takes a JSON array for Label Studio. ``skipped_lines``: CLUENER lines the
    record reader skipped as bad (``--lenient``), whose scores are not read either."""
    by_id: dict[str, dict[Span, float]] = {}
    if input_format == "auto":
        lines = read_lines_or_errors(Path(path))
        first = next((line.lstrip() for _, line in lines if isinstance(line, str) and line.strip()), "")
        input_format = "labelstudio" if first.startswith("[") else "cluener"
    if input_format in ("labelstudio", "doccano"):
        read_annotations(path, input_format, lenient=True, allow_empty=True, scores=by_id)
    elif input_format == "cluener":
        for number, sentence_id, record in _prediction_records(path):
            if number in skipped_lines:
                continue
            try:
                found = record_scores(record)
            except ValueError as exc:
                raise DataError(path, number, str(exc)) from None
            if found:
                by_id[sentence_id] = found
    return by_id


def _prediction_records(path: str | Path):
    """(line number, id, record) of each JSON object line; a record without ``id`` gets its index among the
    non-blank lines, as `data.read_cluener` numbers them. Bad lines are skipped: the readers report them."""
    index = 0
    for number, line in read_lines_or_errors(Path(path)):
        if isinstance(line, str) and not line.strip():
            continue
        index += 1
        if not isinstance(line, str):
            continue  # not UTF-8
        try:
            record = decode_json(line)
            given = record_id(record.get("id")) if isinstance(record, dict) else None
        except ValueError:
            continue
        if isinstance(record, dict):
            yield number, given if given is not None else str(index - 1), record


def filter_by_score(
    examples: Sequence[Example], scores: dict[str, dict[Span, float]], min_score: float
) -> tuple[list[Example], int]:
    """Keep predictions scoring at least ``min_score``; spans without a score are kept. Returns the
    filtered examples and the number of spans dropped."""
    kept, dropped = [], 0
    for ex in examples:
        known = scores.get(ex.id, {})
        spans = [s for s in ex.spans if known.get(s, min_score) >= min_score]
        dropped += len(ex.spans) - len(spans)
        kept.append(Example(ex.id, ex.text, spans))
    return kept, dropped


def pr_curve(gold: Sequence[Example], pred: Sequence[Example], scores: dict[str, dict[Span, float]]) -> dict:
    """Span-level precision and recall as the threshold falls through every score (pred aligned to gold).

    ``auc`` is the area under the step curve (average precision scaled by the highest recall);
    ``random_auc`` is what a ranking unrelated to correctness gives on average (overall precision
    times overall recall): a score that ranks correct entities first has ``auc`` above it.
    Unscored predictions count as scoring 1.
    """
    total_gold = sum(len(set(ex.spans)) for ex in gold)
    items = []
    for g, p in zip(gold, pred):
        gold_set, known = set(g.spans), scores.get(p.id, {})
        items += [(known.get(s, 1.0), s in gold_set) for s in set(p.spans)]
    items.sort(key=lambda item: -item[0])
    points, correct, previous_recall, auc = [], 0, 0.0, 0.0
    best = {"threshold": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    for i, (score, hit) in enumerate(items):
        correct += hit
        if i + 1 < len(items) and items[i + 1][0] == score:
            continue  # one point per distinct threshold
        precision, recall = correct / (i + 1), correct / total_gold if total_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        auc += (recall - previous_recall) * precision
        previous_recall = recall
        points.append({"threshold": score, "precision": precision, "recall": recall, "f1": f1})
        if f1 > best["f1"]:
            best = dict(points[-1])
    overall_p = correct / len(items) if items else 0.0
    return {
        "points": points,
        "auc": auc,
        "random_auc": overall_p * previous_recall,
        "best": best,
        "predictions": len(items),
    }


def ranking_test(
    gold: Sequence[Example],
    pred: Sequence[Example],
    scores: dict[str, dict[Span, float]],
    shuffles: int = 1000,
    seed: int = 0,
    within_sentence: bool = False,
) -> dict:
    """Does ranking entities by their score beat ranking them at random? A permutation test of the PR AUC.

    The scores are shuffled among the predictions (``pred`` aligned to ``gold``) ``shuffles`` times;
    ``p`` is the share of shuffles whose PR AUC is at least the observed one. ``within_sentence``:
    only sentences with two or more predicted entities count, and scores are shuffled within each
    sentence, so the test asks whether the score ranks a sentence's entities, not its sentences.
    """
    rng = random.Random(seed)
    if within_sentence:
        keep = [i for i, ex in enumerate(pred) if len(set(ex.spans)) >= 2]
        gold, pred = [gold[i] for i in keep], [pred[i] for i in keep]
    groups = [[(ex.id, span) for ex in pred for span in sorted(set(ex.spans))]]
    if within_sentence:
        groups = [[(ex.id, span) for span in sorted(set(ex.spans))] for ex in pred]
    observed = pr_curve(gold, pred, scores)
    random_aucs = []
    for _ in range(shuffles):
        shuffled: dict[str, dict[Span, float]] = {}
        for group in groups:
            values = [scores.get(i, {}).get(span, 1.0) for i, span in group]
            rng.shuffle(values)
            for (i, span), value in zip(group, values):
                shuffled.setdefault(i, {})[span] = value
        random_aucs.append(pr_curve(gold, pred, shuffled)["auc"])
    return {
        "sentences": len(pred),
        "predictions": observed["predictions"],
        "auc": observed["auc"],
        "shuffled_auc": sum(random_aucs) / len(random_aucs) if random_aucs else None,
        "p": (1 + sum(a >= observed["auc"] for a in random_aucs)) / (1 + len(random_aucs)),
        "shuffles": shuffles,
        "best": observed["best"],
    }


def held_out_threshold(
    gold: Sequence[Example], pred: Sequence[Example], scores: dict[str, dict[Span, float]], fit: float = 0.5
) -> dict:
    """The report's suggested threshold (the best-F1 point of `pr_curve`) chosen on the first ``fit`` share
    of the sentences, then applied to the rest: F1 there with every prediction and with those scoring at
    least the threshold. A suggestion worth following raises the second F1 on sentences it never saw."""
    cut = int(len(gold) * fit)
    threshold = pr_curve(gold[:cut], pred[:cut], scores)["best"]["threshold"]
    kept, dropped = filter_by_score(pred[cut:], scores, threshold)

    def micro_f1(predicted: Sequence[Example]) -> float:
        return span_scores([g.spans for g in gold[cut:]], [p.spans for p in predicted]).micro.f1

    return {
        "chosen_on": cut,
        "applied_to": len(gold) - cut,
        "threshold": threshold,
        "f1_all": micro_f1(pred[cut:]),
        "f1_thresholded": micro_f1(kept),
        "dropped": dropped,
    }


def uncertainty(example: Example, scores: dict[Span, float], answer_score: float | None) -> float:
    """1 minus the least certain of the sentence's entity scores and its answer score (0 when none)."""
    values = [scores[s] for s in example.spans if s in scores]
    if answer_score is not None:
        values.append(answer_score)
    return 1.0 - min(values) if values else 0.0


def disagreement(a: Example, b: Example) -> tuple[int, float]:
    """Spans only one system predicts, and that count over the union (the Jaccard distance)."""
    first, second = set(a.spans), set(b.spans)
    union = first | second
    differ = len(first ^ second)
    return differ, differ / len(union) if union else 0.0


def read_answer_scores(path: str | Path) -> dict[str, float]:
    """Sentence id -> ``answer_score`` of a prediction file written by `llm-ner extract`; `DataError` with
    FILE:LINE for one outside [0, 1]."""
    found = {}
    for number, sentence_id, record in _prediction_records(path):
        try:
            score = score_value(record.get("answer_score"))
        except ValueError as exc:
            raise DataError(path, number, f"answer_score: {exc}") from None
        if score is not None:
            found[sentence_id] = score
    return found


SELECTIONS = ("uncertainty", "disagreement", "random")


def select_for_annotation(
    paths: Sequence[str],
    n: int,
    by: str,
    input_format: str = "cluener",
    lenient: bool = False,
    seed: int = 0,
    exclude: Collection[str] = (),
) -> list[dict]:
    """The ``n`` sentences to annotate next as CLUENER records (the first file's spans and scores) with a
    ``select`` field saying why: least certain first (``uncertainty``, one file), most disagreement
    (``disagreement``, two files matched by id) or a seeded random sample (``random``, the control arm of
    an annotation loop; scores not needed). Sentences whose id is in ``exclude`` (already labelled) are
    never chosen. Ties keep file order."""
    from .data import example_to_cluener, load_examples

    first, _ = load_examples(paths[0], input_format, lenient=lenient)
    excluded = set(exclude)
    candidates = [ex for ex in first if ex.id not in excluded]
    scores = read_scores(paths[0], input_format)
    if by == "uncertainty":
        answers = read_answer_scores(paths[0])
        if not scores and not answers:
            raise DataError(paths[0], None, "no scores to rank by (write them with `llm-ner extract`)")
        ranked = [(uncertainty(ex, scores.get(ex.id, {}), answers.get(ex.id)), ex) for ex in candidates]
        ranked.sort(key=lambda item: -item[0])
        reasons = [{"uncertainty": round(value, 6)} for value, _ in ranked[:n]]
    elif by == "disagreement":
        second, _ = load_examples(paths[1], input_format, lenient=lenient)
        other = {ex.id: ex for ex in second}
        missing = [ex.id for ex in first if ex.id not in other]
        if missing:
            raise DataError(
                paths[1], None, f"no prediction for id {missing[0]!r} of {paths[0]} ({len(missing)} missing)"
            )
        # Spans of two different sentences under one id would count as disagreement: refuse, as evaluate does.
        for ex in first:
            if other[ex.id].text != ex.text:
                raise DataError(
                    paths[1],
                    None,
                    f"id {ex.id!r}: text {other[ex.id].text[:30]!r} differs from {paths[0]}'s {ex.text[:30]!r} "
                    "(both --pred files must hold predictions of the same sentences)",
                )
        ranked = [(disagreement(ex, other[ex.id]), ex) for ex in candidates]
        ranked.sort(key=lambda item: (-item[0][0], -item[0][1]))
        reasons = [{"disagreement": d, "jaccard_distance": round(j, 6)} for (d, j), _ in ranked[:n]]
    elif by == "random":
        ranked = [(None, ex) for ex in random.Random(seed).sample(candidates, min(n, len(candidates)))]
        reasons = [{"random": seed}] * len(ranked)
    else:
        raise ValueError(f"unknown selection {by!r} ({', '.join(SELECTIONS)})")
    records = []
    for (_, example), reason in zip(ranked[:n], reasons):
        record = example_to_cluener(example)
        if scores.get(example.id):
            record["scores"] = scores_field(example, scores[example.id])
        record["select"] = reason
        records.append(record)
    return records


def labelled_ids(paths: Sequence[str], input_format: str = "auto") -> set[str]:
    """The sentence ids of CLUENER / BIO / Label Studio files (sentences already labelled, for ``exclude``)."""
    from .data import load_examples

    return {ex.id for path in paths for ex in load_examples(path, input_format, allow_empty=True)[0]}
