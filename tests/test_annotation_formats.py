"""Label Studio and doccano: round trips on all of CLUENER dev, validation, pre-annotations with scores."""

import json

import pytest

from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, load_examples, read_annotations, read_cluener, write_annotations
from llm_ner.errors import DataError


def normalized(record: dict) -> dict:
    """A CLUENER record with the offsets of each entity sorted (the files list repeats in any order)."""
    label = {t: {e: sorted(offsets) for e, offsets in entities.items()} for t, entities in record["label"].items()}
    return {"text": record["text"], "label": label}


@pytest.mark.parametrize("fmt", ["labelstudio", "doccano"])
def test_round_trip_through_the_cli_is_identical_on_all_of_dev(fmt, cluener_dir, tmp_path):
    dev = cluener_dir / "dev.json"
    exported, back = tmp_path / f"dev.{fmt}", tmp_path / "back.json"
    assert cli(["export", str(dev), "--to", fmt, "--as-annotation", "--output", str(exported)]) == 0
    assert cli(["export", str(exported), "--input-format", fmt, "--to", "cluener", "--output", str(back)]) == 0
    original, _ = read_cluener(dev)
    again, _ = read_cluener(back)
    assert [(ex.id, ex.text, ex.spans) for ex in again] == [(ex.id, ex.text, ex.spans) for ex in original]
    lines = dev.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in back.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(lines) == len(original)
    for line, record in zip(lines, records):
        assert normalized(json.loads(line)) == normalized(record)
    print(f"\n{fmt}: {len(original)} sentences, {sum(len(ex.spans) for ex in original)} spans, round trip identical")


def test_predictions_become_label_studio_pre_annotations_with_scores(tmp_path):
    gold = [Example("a", "张三在北京", [Span(0, 2, "name"), Span(3, 5, "address")])]
    record = {
        "id": "a",
        "text": "张三在北京",
        "label": {"name": {"张三": [[0, 1]]}, "company": {"北京": [[3, 4]]}},
        "scores": {"name": {"张三": [0.9]}, "company": {"北京": [0.25]}},
    }
    pred_path, gold_path, out = tmp_path / "pred.json", tmp_path / "gold.json", tmp_path / "ls.json"
    pred_path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    gold_path.write_text(
        json.dumps(
            {"id": "a", "text": "张三在北京", "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}}
        )
        + "\n",
        encoding="utf-8",
    )
    assert cli(["export", str(pred_path), "--to", "labelstudio", "--gold", str(gold_path), "--output", str(out)]) == 0
    (task,) = json.loads(out.read_text(encoding="utf-8"))
    prediction = task["predictions"][0]
    assert {(r["value"]["text"], r["value"]["labels"][0], r["score"]) for r in prediction["result"]} == {
        ("张三", "name", 0.9),
        ("北京", "company", 0.25),
    }
    assert prediction["score"] == 0.25  # the least certain entity
    # The reader takes the annotation (gold) when there is one, the prediction otherwise.
    examples, _ = load_examples(out, "labelstudio")
    assert examples[0].spans == gold[0].spans
    del task["annotations"]
    out.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
    scores = {}
    examples, _ = read_annotations(out, "labelstudio", scores=scores)
    assert examples[0].spans == [Span(0, 2, "name"), Span(3, 5, "company")]
    assert scores == {"a": {Span(0, 2, "name"): 0.9, Span(3, 5, "company"): 0.25}}


def test_doccano_scores_and_the_newer_entities_layout(tmp_path):
    examples = [Example("7", "李四去上海", [Span(0, 2, "name"), Span(3, 5, "address")])]
    path = tmp_path / "d.jsonl"
    write_annotations(examples, path, "doccano", scores={"7": {Span(0, 2, "name"): 0.5, Span(3, 5, "address"): 0.75}})
    scores = {}
    again, _ = read_annotations(path, "doccano", scores=scores)
    assert again[0].spans == examples[0].spans and scores["7"][Span(3, 5, "address")] == 0.75
    path.write_text(
        json.dumps({"text": "李四去上海", "entities": [{"start_offset": 3, "end_offset": 5, "label": "address"}]})
        + "\n",
        encoding="utf-8",
    )
    again, _ = read_annotations(path, "doccano")
    assert again[0].spans == [Span(3, 5, "address")] and again[0].id == "0"


def test_bad_records_name_the_file_and_line_or_record(tmp_path):
    doccano = tmp_path / "bad.jsonl"
    doccano.write_text(
        '{"text": "李四去上海", "label": [[0, 2, "name"]]}\n'
        '{"text": "李四去上海", "label": [[3, 9, "address"]]}\n'
        "not json\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"bad.jsonl:2: address \[3, 9\) outside the text"):
        load_examples(doccano, "doccano")
    examples, report = load_examples(doccano, "doccano", lenient=True)
    assert len(examples) == 1 and [e.line for e in report.skipped] == [2, 3]
    studio = tmp_path / "bad.json"
    task = {"data": {"text": "李四去上海"}, "annotations": [{"result": []}]}
    wrong = {
        "data": {"text": "李四去上海"},
        "annotations": [
            {"result": [{"type": "labels", "value": {"start": 0, "end": 2, "text": "李三", "labels": ["name"]}}]}
        ],
    }
    studio.write_text(json.dumps([task, wrong], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:record 2: result 1: name \[0, 2\): text is '李四'"):
        load_examples(studio, "labelstudio")
    with pytest.raises(DataError, match="bad.jsonl:1: unknown label 'name'"):
        load_examples(doccano, "doccano", labels=["address"])
    assert len(load_examples(studio, "labelstudio", lenient=True)[0]) == 1
    evaluate = ["evaluate", "--gold", str(studio), "--gold-format", "labelstudio", "--pred", str(doccano)]
    assert cli([*evaluate, "--pred-format", "doccano"]) == 1  # stops at the first bad record
    assert cli([*evaluate, "--pred-format", "doccano", "--lenient"]) == 0


def test_duplicate_ids_are_refused_like_cluener(tmp_path):
    """Matching predictions to gold is by id: a repeated id (given, or a given id equal to another
    record's index) is a DataError at the record, not a traceback in `evaluate`."""
    doccano = tmp_path / "dup.jsonl"
    doccano.write_text(
        '{"id": 1, "text": "李四去上海", "label": []}\n{"text": "王五", "label": []}\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate id '1' \(first at line 1\)"):
        load_examples(doccano, "doccano")
    studio = tmp_path / "dup.json"
    task = {"id": 7, "data": {"text": "李四去上海"}, "annotations": [{"result": []}]}
    studio.write_text(json.dumps([task, task], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"dup.json:record 2: duplicate id '7' \(first at record 1\)"):
        load_examples(studio, "labelstudio")
    assert [e.id for e in load_examples(studio, "labelstudio", lenient=True)[0]] == ["7"]
    assert cli(["evaluate", "--gold", str(doccano), "--gold-format", "doccano", "--pred", str(doccano)]) == 1


def test_scores_that_are_no_probability_are_left_out(tmp_path):
    """A score is optional: one that is not a finite number (a string, a bool, an integer too large for a
    float) is dropped, the entity kept."""
    path = tmp_path / "d.jsonl"
    labels = '[[0, 2, "name"], [3, 5, "address"], [0, 1, "x"]]'
    path.write_text(
        '{"id": "a", "text": "张三在北京", "label": ' + labels + ', "scores": [1' + "0" * 400 + ', "0.5", 0.25]}\n',
        encoding="utf-8",
    )
    scores: dict = {}
    (example,), _ = read_annotations(path, "doccano", scores=scores)
    assert len(example.spans) == 3 and scores == {"a": {Span(0, 1, "x"): 0.25}}
    task = {
        "data": {"text": "张三"},
        "predictions": [{"result": [{"score": True, "value": {"start": 0, "end": 2, "labels": ["name"]}}]}],
    }
    path.write_text(json.dumps(task) + "\n", encoding="utf-8")
    scores = {}
    (example,), _ = read_annotations(path, "labelstudio", scores=scores)
    assert example.spans == [Span(0, 2, "name")] and scores == {}
