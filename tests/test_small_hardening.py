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
