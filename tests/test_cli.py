import json
import subprocess
import sys

import pytest

from llm_ner.cli import main
from llm_ner.data import Example, Span, read_cluener, write_bio, write_cluener


def test_convert_cluener_dev(tmp_path, cluener_dir, cluener_dev, capsys):
    out = tmp_path / "dev.jsonl"
    assert main(["convert", "--input", str(cluener_dir / "dev.json"), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(cluener_dev)
    for record, example in zip(records[:50], cluener_dev):
        assert record["id"] == example.id and record["prompt"][1]["content"].endswith(example.text)
        assert json.loads(record["completion"][0]["content"]) == [
            {"text": example.mention(span), "label": span.label} for span in example.spans
        ]  # mentions in reading order
    assert f"wrote {len(cluener_dev)} mentions conversations" in capsys.readouterr().err


def test_convert_real_cluener_dev_first_record(tmp_path, real_cluener_dir):
    out = tmp_path / "dev.jsonl"
    assert main(["convert", "--input", str(real_cluener_dir / "dev.json"), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 1343
    assert records[0]["id"] == "0" and records[0]["prompt"][1]["content"].endswith("选择客户，")
    assert json.loads(records[0]["completion"][0]["content"]) == [
        {"text": "彭小军", "label": "name"},
        {"text": "台湾", "label": "address"},
    ]


def test_convert_bio_with_generic_prompt_and_grouped(tmp_path):
    bio = tmp_path / "msra.txt"
    write_bio([Example("0", "张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")])], bio, "bioes")
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "convert",
                "--input",
                str(bio),
                "--output",
                str(out),
                "--prompt",
                "generic_zh",
                "--format",
                "grouped",
                "--input-format",
                "bioes",
            ]
        )
        == 0
    )
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["completion"][0]["content"] == '{"LOC":["北京"],"PER":["张三"]}'
    assert "LOC、PER" in record["prompt"][-1]["content"]


def test_convert_stops_on_corrupt_line_with_file_and_line(tmp_path, capsys):
    src = tmp_path / "bad.json"
    src.write_text(
        '{"text": "张三", "label": {"name": {"张三": [[0, 1]]}}}\n{"text": "李四", "label"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    assert main(["convert", "--input", str(src), "--output", str(out)]) == 1
    assert f"error: {src}:2: invalid JSON" in capsys.readouterr().err
    assert not out.exists()  # no half-written output
    assert main(["convert", "--input", str(src), "--output", str(out), "--lenient"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
    assert "skipped 1 bad records at lines 2" in capsys.readouterr().err


def test_convert_rejects_labels_outside_the_prompt_schema(tmp_path, capsys):
    src = tmp_path / "x.json"
    src.write_text('{"text": "张三", "label": {"PER": {"张三": [[0, 1]]}}}\n', encoding="utf-8")
    assert main(["convert", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 1
    assert "x.json:1: unknown label 'PER'" in capsys.readouterr().err


def test_evaluate_gold_against_itself_is_perfect(tmp_path, cluener_dir, cluener_dev, capsys):
    dev = str(cluener_dir / "dev.json")
    assert main(["evaluate", "--gold", dev, "--pred", dev, "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert set(result) == {
        "gold",
        "pred",
        "sentences",
        "missing_predictions",
        "warnings",
        "span",
        "cluener_string",
        "errors",
    }
    for level in ("span", "cluener_string"):
        rows = [*result[level]["per_class"].values(), result[level]["micro avg"], result[level]["macro avg"]]
        assert len(rows) == 12
        assert all(r["precision"] == r["recall"] == r["f1-score"] == 1.0 for r in rows)
    total = sum(len(ex.spans) for ex in cluener_dev)  # 3072 on CLUENER dev
    assert result["span"]["micro avg"]["support"] == total
    printed = capsys.readouterr().out
    assert f"| micro avg | 1.0000 | 1.0000 | 1.0000 | {total} |" in printed


def test_evaluate_shifted_predictions(tmp_path, cluener_dir, capsys):
    gold, _ = read_cluener(cluener_dir / "dev.json")
    shifted = []
    for ex in gold:
        spans = [s for s in ex.spans if s.label != "name"]
        spans += [Span(s.start + 1, s.end, s.label) for s in ex.spans if s.label == "name" and s.end - s.start > 1]
        shifted.append(Example(ex.id, ex.text, spans))
    pred = tmp_path / "pred.json"
    write_cluener(shifted, pred)
    assert (
        main(
            [
                "evaluate",
                "--gold",
                str(cluener_dir / "dev.json"),
                "--pred",
                str(pred),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    name = result["span"]["per_class"]["name"]
    n_name = sum(1 for ex in gold for s in ex.spans if s.label == "name")  # 465 of 3072 on CLUENER dev
    total = sum(len(ex.spans) for ex in gold)
    assert name["f1-score"] == 0.0 and name["support"] == n_name
    assert result["span"]["per_class"]["address"]["f1-score"] == 1.0
    expected_recall = (total - n_name) / total
    assert result["span"]["micro avg"]["recall"] == pytest.approx(expected_recall)
    assert result["errors"]["name"]["wrong_boundary"] == sum(
        1 for ex in gold for s in ex.spans if s.label == "name" and s.end - s.start > 1
    )


def test_python_dash_m_help():
    done = subprocess.run([sys.executable, "-m", "llm_ner", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "convert" in done.stdout and "evaluate" in done.stdout


def test_a_data_error_is_reported_without_loading_torch(tmp_path):
    """The error handler must not import the model stages (torch) to classify a bad record."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": 5}\n', encoding="utf-8")
    code = (
        "import sys\nfrom llm_ner.cli import main\n"
        f"rc = main(['evaluate', '--gold', {str(bad)!r}, '--pred', {str(bad)!r}])\n"
        "print(rc, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["1", "False"], done.stderr
    assert f"{bad}:1: missing \"text\" string" in done.stderr
