"""Issue 31's careless-user cases for the scoring commands (`select`, `curve`, `evaluate`, `report`): each mistake
ends as one `error:` line with its exit status, no traceback, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_ner.cli import main
from llm_ner.data import Example, Span, write_cluener

GOLD = [Example(str(i), f"张三在北京{i}", [Span(0, 2, "name"), Span(3, 5, "address")]) for i in range(6)]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of one in-process command (argparse's refusals included)."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse
        code = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def refused(argv: list[str], capsys, code: int, *fragments: str, out: Path | None = None) -> str:
    """Run ``argv``: it must exit with ``code``, end with one error line holding every fragment, write no ``out``."""
    got, err = run(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert lines and ("error:" in lines[-1]), err
    for fragment in fragments:
        assert fragment in lines[-1], err
    if out is not None:
        assert not out.exists(), out
    return lines[-1]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """gold.json, pred.json (the gold spans), half.json (predictions of half the sentences), empty.json."""
    paths = {name: tmp_path / f"{name}.json" for name in ("gold", "pred", "half", "empty")}
    write_cluener(GOLD, paths["gold"])
    write_cluener(GOLD, paths["pred"])
    write_cluener(GOLD[::2], paths["half"])
    paths["empty"].write_text("", encoding="utf-8")
    return paths


@pytest.mark.parametrize("command", ["report", "curve"])
@pytest.mark.parametrize("resamples", ["0", "-3", "100000000"])
def test_resamples_are_bounded(files, tmp_path, capsys, command, resamples):
    """--resamples 10^8 allocated 44.7 GiB and died with a traceback: now a usage error naming the option."""
    out = tmp_path / "out"
    argv = [command, "--gold", str(files["gold"]), "--resamples", resamples]
    if command == "report":
        argv += ["--pred", f"x={files['pred']}", "--out", str(out)]
    else:
        argv += ["--pred", str(files["pred"]), "--labelled", str(files["gold"]), "--arm", "a", "--round", "0"]
        argv += ["--output", str(out)]
    refused(argv, capsys, 2, "--resamples", out=out)


def test_the_bootstrap_draws_in_chunks_what_it_drew_at_once():
    """Chunked resampling (bounded memory) gives the numbers of one draw of every resample."""
    import numpy as np

    from llm_ner.report import numbers

    predicted, gold = np.random.default_rng(5).integers(0, 4, size=(2, 40))
    counts = np.stack([np.minimum(predicted, gold) // 2, predicted, gold], axis=1)  # correct, predicted, gold
    at_once = numbers.bootstrap_interval(counts, 300, seed=2)
    chunked = numbers._INDEX_CELLS
    try:
        numbers._INDEX_CELLS = 7 * 40  # 7 resamples per chunk
        assert numbers.bootstrap_interval(counts, 300, seed=2) == at_once
    finally:
        numbers._INDEX_CELLS = chunked
    with pytest.raises(ValueError, match="resamples"):
        numbers.bootstrap_interval(counts, numbers.MAX_RESAMPLES + 1)


def curve_args(files: dict[str, Path], out: Path, pred: str = "pred", labelled: str = "gold") -> list[str]:
    return [
        *("curve", "--gold", str(files["gold"]), "--pred", str(files[pred]), "--labelled", str(files[labelled])),
        *("--arm", "a", "--round", "0", "--resamples", "10", "--output", str(out)),
    ]


@pytest.mark.parametrize("command", ["evaluate", "report", "select", "curve"])
def test_an_empty_predictions_file_is_refused(files, tmp_path, capsys, command):
    """The README: "Empty files are errors". An empty --pred scored as predicting nothing, silently."""
    out, empty = tmp_path / "out", str(files["empty"])
    argv = {
        "evaluate": ["evaluate", "--gold", str(files["gold"]), "--pred", empty, "--json", str(out)],
        "report": ["report", "--gold", str(files["gold"]), "--pred", f"x={empty}", "--out", str(out)],
        "select": ["select", "--pred", empty, "--by", "random", "--output", str(out)],
        "curve": curve_args(files, out, pred="empty"),
    }[command]
    refused(argv, capsys, 1, f"{empty}: empty file", out=out)


def test_curve_refuses_predictions_of_part_of_the_dev_set(files, tmp_path, capsys):
    """Half the predictions missing scored the point on the other half, silently."""
    out = tmp_path / "curve.jsonl"
    line = refused(curve_args(files, out, pred="half"), capsys, 1, str(files["half"]), out=out)
    assert "3 of the 6 sentences" in line and "id '1'" in line
    assert main(curve_args(files, out)) == 0  # every sentence predicted: the point is written
    assert json.loads(out.read_text(encoding="utf-8"))["f1"] == 1.0


def test_curve_refuses_an_empty_labelled_file(files, tmp_path, capsys):
    out = tmp_path / "curve.jsonl"
    refused(curve_args(files, out, labelled="empty"), capsys, 1, f"{files['empty']}: empty file", out=out)


def test_select_disagreement_refuses_two_files_of_different_texts(files, tmp_path, capsys):
    """Two --pred files with one id on two different sentences: their spans were compared as disagreement."""
    other = tmp_path / "other.json"
    changed = [Example(ex.id, ex.text + "。" if ex.id == "4" else ex.text, ex.spans[:1]) for ex in GOLD]
    write_cluener(changed, other)
    out = tmp_path / "selected.json"
    argv = ["select", "--pred", str(files["pred"]), "--pred", str(other), "--by", "disagreement", "-n", "2"]
    line = refused([*argv, "--output", str(out)], capsys, 1, "id '4'", str(files["pred"]), str(other), out=out)
    assert "张三在北京4" in line
    write_cluener([Example(ex.id, ex.text, ex.spans) for ex in changed if ex.id != "4"] + GOLD[4:5], other)
    assert main([*argv, "--output", str(out)]) == 0  # the same texts: selected
