import json
import random

import pytest

from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, write_cluener
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


def write_scored(systems, path, seed):
    """A prediction file with a confidence per entity (as `llm-ner extract` writes), so the report draws a PR curve."""
    from llm_ner.confidence import scores_field
    from llm_ner.data import example_to_cluener

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for ex in systems:
            scores = {s: rng.random() for s in ex.spans}
            out.write(json.dumps({**example_to_cluener(ex), "scores": scores_field(ex, scores)}, ensure_ascii=False))
            out.write("\n")


def embedded_images(page):
    """The PNGs report.html embeds, in page order, decoded."""
    import base64
    import re

    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_systems_whose_names_sanitize_alike_get_their_own_charts(cluener_dev, tmp_path):
    # `a/b` and `a_b` both sanitized to `a_b`: the second system's charts overwrote the first's, and
    # report.html showed one system the other's confusion matrix and PR curve.
    gold = cluener_dev[:60]
    gold_path = tmp_path / "gold.json"
    write_cluener(gold, gold_path)
    preds = []
    for number, name in enumerate(("a/b", "a_b")):
        path = tmp_path / f"pred{number}.json"
        write_scored(degraded(gold, 0.3 + 0.6 * number, seed=number), path, seed=number)
        preds += ["--pred", f"{name}={path}"]
    out = tmp_path / "report"
    assert cli(["report", "--gold", str(gold_path), *preds, "--out", str(out), "--resamples", "20"]) == 0
    confusion = sorted(p.name for p in out.glob("confusion_*.png"))
    curves = sorted(p.name for p in out.glob("pr_*.png"))
    assert len(confusion) == 2 and len(curves) == 2
    assert "confusion_a_b.png" in confusion and "pr_a_b.png" in curves  # an ordinary name keeps its file name
    page = (out / "report.html").read_text(encoding="utf-8")
    images = embedded_images(page)
    # page order: F1 per class, then per system (a/b, a_b) its confusion matrix and its PR curve
    assert len(images) == 5 and len(set(images)) == 5
    assert images[3:] == [(out / "confusion_a_b.png").read_bytes(), (out / "pr_a_b.png").read_bytes()]
    first = [(out / name).read_bytes() for name in (*confusion, *curves) if not name.endswith("_a_b.png")]
    assert sorted(images[1:3]) == sorted(first)


def test_chart_stems_are_readable_unique_and_stable():
    from llm_ner.report.charts import chart_stems

    ordinary = ["llm", "bert-crf", "tiny-qwen3-sft", "v1.2_final", "模型"]
    assert chart_stems(ordinary) == {name: name for name in ordinary}
    names = ["a/b", "a_b", "a b", "LLM", "llm", "x" * 300, "名" * 200, "$\\foo$"]
    stems = chart_stems(names)
    assert stems == chart_stems(reversed(names))  # deterministic, whatever the order
    assert len({s.casefold() for s in stems.values()}) == len(names)  # one file each, even ignoring case
    assert stems["a_b"] == "a_b" and stems["a/b"].startswith("a_b-") and stems["a b"].startswith("a_b-")
    assert stems["LLM"].startswith("LLM-") and stems["llm"].startswith("llm-")  # one file on macOS otherwise
    for name, stem in stems.items():
        assert "/" not in stem and len(f"confusion_{stem}.png".encode()) < 255, name


def test_names_and_labels_with_dollar_signs_are_drawn_as_text(cluener_dev, tmp_path, capsys):
    # matplotlib reads `$...$` as TeX: `$\foo$` as a system name or a label raised ParseFatalException.
    relabel = {"name": "$\\bar$"}
    gold = [
        Example(ex.id, ex.text, [Span(s.start, s.end, relabel.get(s.label, s.label)) for s in ex.spans])
        for ex in cluener_dev[:40]
    ]
    gold_path, pred_path = tmp_path / "gold.json", tmp_path / "pred.json"
    write_cluener(gold, gold_path)
    write_scored(degraded(gold, 0.7, seed=1), pred_path, seed=1)
    out = tmp_path / "report"
    args = ["report", "--gold", str(gold_path), "--pred", f"$\\foo$={pred_path}", "--pred", f"$x$ y={gold_path}"]
    assert cli([*args, "--out", str(out), "--resamples", "20"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert len(written) == 4 and "f1_per_class.png" in written  # F1, two confusion matrices, one PR curve
    for name in written:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in capsys.readouterr().err
    assert "$\\bar$" in json.loads((out / "report.json").read_text(encoding="utf-8"))["labels"]


def test_out_that_is_a_file_is_one_line_error(cluener_dir, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me\n")
    gold = str(cluener_dir / "dev.json")
    assert cli(["report", "--gold", gold, "--pred", f"x={gold}", "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --out {existing} exists and is not a folder")
    assert existing.read_text() == "keep me\n"


def test_out_must_not_hold_an_input_under_a_report_file_name(cluener_dir, tmp_path, capsys):
    # report.html and the chart files are written too: an input of that name in --out would be destroyed.
    gold = str(cluener_dir / "dev.json")
    out = tmp_path / "report"
    out.mkdir()
    for name in ("report.html", "confusion_x.png"):
        victim = out / name
        victim.write_text((cluener_dir / "dev.json").read_text(encoding="utf-8"), encoding="utf-8")
        assert cli(["report", "--gold", gold, "--pred", f"x={victim}", "--out", str(out), "--resamples", "20"]) == 2
        assert "would destroy the input" in capsys.readouterr().err
        assert victim.read_text(encoding="utf-8") == (cluener_dir / "dev.json").read_text(encoding="utf-8")
        victim.unlink()
