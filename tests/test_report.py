import json
import random

import pytest

from llm_ner.cli import main as cli
from llm_ner.data import Example, write_cluener
from llm_ner.report import paired_bootstrap, parse_pred_arguments

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def degraded(examples, keep, seed):
    rng = random.Random(seed)
    return [Example(ex.id, ex.text, [s for s in ex.spans if rng.random() < keep]) for ex in examples]


def test_report_with_three_systems_scores_them_right(cluener_dir, cluener_dev, tmp_path, capsys):
    files, systems = {}, {}
    for name, keep in (("perfect", 1.0), ("half", 0.5), ("most", 0.9)):
        files[name] = tmp_path / f"{name}.json"
        systems[name] = degraded(cluener_dev, keep, seed=len(name))
        write_cluener(systems[name], files[name])
    out = tmp_path / "report"
    preds = [arg for name, path in files.items() for arg in ("--pred", f"{name}={path}")]
    assert (
        cli(
            [
                "report",
                "--gold",
                str(cluener_dir / "dev.json"),
                *preds,
                "--published",
                str(ROOT / "eval" / "published_cluener.json"),
                "--out",
                str(out),
                "--resamples",
                "300",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    # Each system keeps a random subset of the gold spans: precision 1, recall = kept / gold,
    # counted here without llm_ner.metrics.
    gold = {(i, s.start, s.end, s.label) for i, ex in enumerate(cluener_dev) for s in ex.spans}
    for name, examples in systems.items():
        kept = {(i, s.start, s.end, s.label) for i, ex in enumerate(examples) for s in ex.spans}
        micro = report["systems"][name]["span"]["micro avg"]
        recall = len(kept) / len(gold)
        assert micro["precision"] == 1.0 and micro["recall"] == pytest.approx(recall, abs=1e-12)
        assert micro["f1-score"] == pytest.approx(2 * recall / (1 + recall), abs=1e-12)
        assert micro["support"] == len(gold) and micro["correct"] == len(kept)
    assert report["systems"]["perfect"]["span"]["micro avg"]["f1-score"] == 1.0
    markdown = (out / "report.md").read_text()
    assert "| micro avg |" in markdown and "published, not re-run" in markdown
    assert "| RoBERTa-wwm-ext+BiLSTM+CRF (published, not re-run) |" in markdown
    assert (out / "f1_per_class.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pair = next(b for b in report["bootstrap"] if b["a"] == "perfect" and b["b"] == "half")
    low, high = pair["ci95"]
    assert 0 < low <= pair["difference"] <= high
    assert len(report["bootstrap"]) == 3


def test_bootstrap_interval_covers_zero_for_identical_systems():
    import numpy as np

    counts = np.array([[1, 2, 2], [0, 1, 1], [2, 2, 3]] * 20)
    result = paired_bootstrap(counts, counts, resamples=200)
    assert result["difference"] == 0.0 and result["ci95"] == [0.0, 0.0]


def test_pred_arguments_are_checked():
    assert parse_pred_arguments(["a=x.json", "b=y.json"]) == [("a", "x.json"), ("b", "y.json")]
    with pytest.raises(ValueError, match="NAME=FILE"):
        parse_pred_arguments(["x.json"])
    with pytest.raises(ValueError, match="given twice"):
        parse_pred_arguments(["a=x", "a=y"])


def test_published_figures_are_the_seed_tables():
    published = json.loads((ROOT / "eval" / "published_cluener.json").read_text(encoding="utf-8"))
    assert set(published["systems"]) == {
        "BERT+CRF",
        "BERT+BiLSTM+CRF",
        "BERT-wwm-ext+BiLSTM+CRF",
        "RoBERTa-wwm-ext+BiLSTM+CRF",
    }
    roberta = published["systems"]["RoBERTa-wwm-ext+BiLSTM+CRF"]
    assert roberta["summary_f1"]["micro avg"] == 0.78 and roberta["per_class"]["name"]["f1-score"] == 0.87
    assert sum(c["support"] for c in roberta["per_class"].values()) == 3072  # span-level support of CLUENER dev


def test_report_sums_the_parse_counters_of_llm_predictions(tmp_path):
    gold = tmp_path / "gold.json"
    write_cluener([Example("0", "张三在北京", []), Example("1", "李四", [])], gold)
    llm = tmp_path / "llm.json"
    records = [
        {"id": "0", "text": "张三在北京", "label": {}, "raw": "不知道", "parse": {"answers": 1, "parse_failures": 1}},
        {"id": "1", "text": "李四", "label": {}, "raw": '[{"text":"王五","label":"name"}]',
         "parse": {"answers": 1, "parse_failures": 0, "hallucinated": 1}},
    ]  # fmt: skip
    llm.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "report"
    assert cli(["report", "--gold", str(gold), "--pred", f"llm={llm}", "--pred", f"gold={gold}", "--out", str(out),
                "--note", "A note."]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["systems"]["llm"]["parsing"] == {"answers": 2, "parse_failures": 1, "hallucinated": 1}
    assert report["systems"]["gold"]["parsing"] is None
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| llm | 2 | 1 | 1 | 0 | 0 | 0 | 0 |" in markdown and "| gold |" not in markdown.split("## Answer")[1][:900]
    assert "A note." in markdown and f"`{gold}`" in markdown
