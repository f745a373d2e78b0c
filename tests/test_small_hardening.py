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


def scored(path: Path, line: int, score: object = 0.9, answer_score: object = 0.8) -> Path:
    """``files['pred']`` with entity scores and answer scores; line ``line`` (1-based) gets ``score`` for its
    first entity and ``answer_score``."""
    lines = []
    for number, ex in enumerate(GOLD, 1):
        record = {"id": ex.id, "text": ex.text, "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}}
        record["scores"] = {"name": {"张三": [score if number == line else 0.9]}, "address": {"北京": [0.7]}}
        record["answer_score"] = answer_score if number == line else 0.8
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ENTITY_SCORES = [{"score": 1.7}, {"score": -0.2}]
SCORE_CASES = [(c, bad) for c in ("select", "evaluate", "report", "export") for bad in ENTITY_SCORES]
SCORE_CASES.append(("select", {"answer_score": 3}))  # only --by uncertainty reads answer scores


@pytest.mark.parametrize("command, bad", SCORE_CASES, ids=[f"{c}-{b}" for c, b in SCORE_CASES])
def test_a_score_outside_0_1_is_refused_with_its_line(files, tmp_path, capsys, command, bad):
    """Scores are probabilities: 1.7 or -0.2 ranked sentences and thresholded entities silently."""
    pred, out = scored(tmp_path / "scored.json", 4, **bad), tmp_path / "out"
    argv = {
        "select": ["select", "--pred", str(pred), "--by", "uncertainty", "--output", str(out)],
        "evaluate": ["evaluate", "--gold", str(files["gold"]), "--pred", str(pred), "--min-score", "0.5"],
        "report": ["report", "--gold", str(files["gold"]), "--pred", f"x={pred}", "--out", str(out)],
        "export": ["export", str(pred), "--to", "labelstudio", "--output", str(out)],
    }[command]
    value = str(next(iter(bad.values())))
    refused(argv, capsys, 1, f"{pred}:4:", value, "not a probability", out=out)


def annotation_file(path: Path, kind: str, bad_score: float | None = None) -> Path:
    """GOLD's name spans as Label Studio predictions or doccano records, scored 0.5; record 3 gets ``bad_score``."""
    records = []
    for ex in GOLD:
        score = bad_score if bad_score is not None and ex.id == "2" else 0.5
        if kind == "doccano":
            records.append({"id": ex.id, "text": ex.text, "label": [[0, 2, "name"]], "scores": [score]})
        else:
            value = {"start": 0, "end": 2, "text": "张三", "labels": ["name"]}
            result = [{"type": "labels", "value": value, "score": score}]
            records.append({"data": {"text": ex.text, "id": ex.id}, "predictions": [{"result": result}]})
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n" if kind == "doccano" else "[\n" + ",\n".join(lines) + "\n]\n", "utf-8")
    return path


@pytest.mark.parametrize("kind", ["labelstudio", "doccano"])
def test_an_annotation_file_with_a_score_outside_0_1_is_refused(tmp_path, capsys, kind):
    """Label Studio results' and doccano records' scores are read by the same rule."""
    bad = annotation_file(tmp_path / f"bad.{kind}", kind, 1.5)
    out = tmp_path / "selected.json"
    argv = ["select", "--pred", str(bad), "--input-format", kind, "--by", "uncertainty", "--output", str(out)]
    line = refused(argv, capsys, 1, str(bad), "1.5", "not a probability", out=out)
    assert f"{bad}:" in line and ": score 1.5" in line
    argv[2] = str(annotation_file(tmp_path / f"good.{kind}", kind))
    assert main(argv) == 0


@pytest.mark.parametrize("when", ["init", "run"])
def test_a_terminated_ray_driver_shuts_down_the_runtime_it_started(tmp_path, monkeypatch, when):
    """SIGTERM (`Terminated`, a KeyboardInterrupt) while the local Ray runtime starts or while the job runs: the
    runtime this driver started is shut down (its agents outlived a killed driver; issue 31)."""
    from llm_ner.cli.main import Terminated
    from llm_ner.extraction import ray_run

    calls = []

    class FakeRay:
        @staticmethod
        def is_initialized() -> bool:
            return False

        @staticmethod
        def init(**kwargs) -> None:
            calls.append(("init", kwargs.get("include_dashboard")))
            if when == "init":
                raise Terminated()

        @staticmethod
        def shutdown() -> None:
            calls.append(("shutdown", None))

    def terminated(self, files, fingerprint):
        raise Terminated()

    monkeypatch.setattr(ray_run, "import_ray", lambda: FakeRay)
    monkeypatch.setattr(ray_run.RayRun, "run", terminated)
    source = tmp_path / "in.txt"
    source.write_text("张三在北京\n", encoding="utf-8")
    argv = ["extract", "--model", "m", "--input", str(source), "--output", str(tmp_path / "o.json")]
    assert main([*argv, "--engine", "ray"]) == 143  # as the shell reports SIGTERM
    assert calls == [("init", False), ("shutdown", None)]
