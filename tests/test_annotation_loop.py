"""The annotation loop (scripts/annotation_loop.sh) end to end on a small pool, `llm-ner select --by random`,
`llm-ner curve` and the learning curve in `llm-ner report`.

The script runs once per module (pool 60, a seed round and 2 rounds of 10 per arm, 1 epoch, dev 30); the
tests read what it wrote."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_ner.cli import main as cli
from llm_ner.confidence import read_answer_scores, read_scores, uncertainty
from llm_ner.data import Example, Span, load_examples, read_cluener, write_cluener
from llm_ner.report.learning_curve import read_learning_curve

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "annotation_loop.sh"
POOL, PER_ROUND, ROUNDS, DEV = 60, 10, 2, 30
ARMS = ("uncertainty", "random")


def run_loop(cluener_dir: Path, out: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LLM_NER": f"{sys.executable} -m llm_ner",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",  # tiny models: threads only contend on a shared CPU
    }
    command = [
        "bash",
        str(SCRIPT),
        "--train",
        str(cluener_dir / "train.json"),
        "--dev",
        str(cluener_dir / "dev.json"),
        "--out",
        str(out),
        "--pool-limit",
        str(POOL),
        "--dev-limit",
        str(DEV),
        "--rounds",
        str(ROUNDS),
        "--per-round",
        str(PER_ROUND),
        "--epochs",
        "1",
        "--seed",
        "3",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def loop(cluener_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("loop")
    first = run_loop(cluener_dir, out)
    return out, first


def ids(path: Path) -> list[str]:
    return [ex.id for ex in load_examples(path, "cluener", allow_empty=True)[0]]


def test_selections_are_disjoint_and_labelled_sets_grow(loop):
    out, _ = loop
    seed_ids = ids(out / "round0" / "selected.json")
    assert len(seed_ids) == PER_ROUND
    for arm in ARMS:
        seen = set(seed_ids)
        for round_number in range(1, ROUNDS + 1):
            folder = out / arm / f"round{round_number}"
            picked = ids(folder / "selected.json")
            assert len(picked) == PER_ROUND and not seen & set(picked), (arm, round_number)
            seen |= set(picked)
            labelled = ids(folder / "labelled.json")
            assert len(labelled) == PER_ROUND * (round_number + 1) and set(labelled) == seen
    points = read_learning_curve(out / "curve.jsonl")
    for arm in ARMS:
        mine = sorted((p for p in points if p["arm"] == arm), key=lambda p: p["round"])
        assert [p["round"] for p in mine] == list(range(ROUNDS + 1))
        assert [p["labelled"] for p in mine] == [PER_ROUND * (r + 1) for r in range(ROUNDS + 1)]
        assert all(p["dev_sentences"] == DEV and p["ci95"][0] <= p["f1"] <= p["ci95"][1] for p in mine)
    # the two arms drew different sentences after the shared seed round
    assert set(ids(out / "uncertainty" / "round1" / "selected.json")) != set(
        ids(out / "random" / "round1" / "selected.json")
    )


def test_the_simulated_annotator_writes_the_gold_spans(loop, cluener_dir):
    out, _ = loop
    gold = {ex.id: ex for ex in read_cluener(cluener_dir / "train.json")[0][:POOL]}
    checked = 0
    for folder in [out / "round0", *(out / arm / f"round{r}" for arm in ARMS for r in range(1, ROUNDS + 1))]:
        annotated, _ = read_cluener(folder / "annotated.json")
        assert [ex.id for ex in annotated] == ids(folder / "selected.json")
        for ex in annotated:
            assert (ex.text, ex.spans) == (gold[ex.id].text, gold[ex.id].spans), (folder, ex.id)
            checked += len(ex.spans)
        # the tasks carry the model's predictions as pre-annotations beside the gold annotation
        tasks = json.loads((folder / "tasks.json").read_text(encoding="utf-8"))
        assert all("annotations" in task and "predictions" in task for task in tasks)
    assert checked > 50


def test_uncertainty_arm_picks_the_least_certain_sentences(loop):
    out, _ = loop
    for round_number in range(1, ROUNDS + 1):
        folder = out / "uncertainty" / f"round{round_number}"
        previous = out / ("round0" if round_number == 1 else f"uncertainty/round{round_number - 1}")
        labelled = set(ids(previous / "labelled.json"))
        predictions, _ = read_cluener(folder / "pool.pred.json")
        scores, answers = read_scores(folder / "pool.pred.json"), read_answer_scores(folder / "pool.pred.json")
        assert len(answers) == POOL  # baseline predict wrote a confidence for every sentence
        value = {
            ex.id: uncertainty(ex, scores.get(ex.id, {}), answers.get(ex.id))
            for ex in predictions
            if ex.id not in labelled
        }
        picked = set(ids(folder / "selected.json"))
        assert min(value[i] for i in picked) >= max(v for i, v in value.items() if i not in picked)
        assert len(set(value.values())) > PER_ROUND  # the ranking was not a tie broken by file order


def test_random_arm_and_seed_set_follow_their_seeds(loop):
    out, _ = loop
    pool = out / "pool.json"
    for folder, seed, exclude in [
        (out / "round0", 3, None),
        (out / "random" / "round1", 3001, out / "round0" / "labelled.json"),
    ]:
        again = out / f"again-{seed}.json"
        argv = ["select", "--pred", str(pool), "--by", "random", "--seed", str(seed), "-n", str(PER_ROUND)]
        assert cli([*argv, *(["--exclude", str(exclude)] if exclude else []), "--output", str(again)]) == 0
        assert ids(again) == ids(folder / "selected.json")


def test_learning_curve_in_the_report(loop):
    out, first = loop
    report = out / "report"
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "## Learning curve" in markdown and "![Learning curve](learning_curve.png)" in markdown
    assert "| round | labelled | uncertainty F1 | random F1 | uncertainty - random |" in markdown
    points = read_learning_curve(out / "curve.jsonl")
    last = {p["arm"]: p for p in points if p["round"] == ROUNDS}
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {ROUNDS} | "))
    assert f"{last['uncertainty']['f1']:.4f} [{last['uncertainty']['ci95'][0]:.4f}" in row
    assert f"{last['uncertainty']['f1'] - last['random']['f1']:+.4f}" in row
    assert (report / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<h2>Learning curve</h2>" in html and 'alt="learning_curve.png"' in html
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["learning_curve"]["points"] == points
    assert "+ llm-ner baseline train" in first.stderr


def test_a_rerun_skips_finished_rounds(loop, cluener_dir):
    out, _ = loop
    before = (out / "curve.jsonl").read_text(encoding="utf-8")
    model = out / "random" / f"round{ROUNDS}" / "model" / "model.pt"
    stamp = model.stat().st_mtime_ns
    again = run_loop(cluener_dir, out)
    assert "+ llm-ner baseline train" not in again.stderr and "+ llm-ner select" not in again.stderr
    assert model.stat().st_mtime_ns == stamp
    assert (out / "curve.jsonl").read_text(encoding="utf-8") == before  # points replaced, not doubled


def test_select_random_is_seeded_and_skips_excluded(tmp_path):
    examples = [Example(str(i), f"句子{i}", [Span(0, 2, "name")]) for i in range(40)]
    pool, done = tmp_path / "pool.json", tmp_path / "done.json"
    write_cluener(examples, pool)
    write_cluener(examples[:10], done)

    def pick(seed: int, name: str, *extra: str) -> list[str]:
        argv = ["select", "--pred", str(pool), "--by", "random", "--seed", str(seed), "-n", "8", *extra]
        assert cli([*argv, "--output", str(tmp_path / name)]) == 0
        return ids(tmp_path / name)

    first, same, other = pick(1, "a.json"), pick(1, "b.json"), pick(2, "c.json")
    assert first == same and len(set(first)) == 8
    assert set(first) != set(other)
    excluded = pick(1, "d.json", "--exclude", str(done))
    assert len(excluded) == 8 and not set(excluded) & {str(i) for i in range(10)}
    record = json.loads((tmp_path / "a.json").read_text(encoding="utf-8").splitlines()[0])
    assert record["select"] == {"random": 1}
    assert cli(["select", "--pred", str(pool), "--by", "random", "-n", "3", "--output", str(pool)]) == 2


def test_curve_replaces_a_point_of_the_same_arm_round_and_seed(tmp_path):
    gold = [Example(str(i), "张三在北京", [Span(0, 2, "name"), Span(3, 5, "address")]) for i in range(20)]
    half = [Example(str(i), ex.text, ex.spans[: 1 + i % 2]) for i, ex in enumerate(gold)]
    for name, examples in [("gold.json", gold), ("pred.json", half), ("labelled.json", gold[:7])]:
        write_cluener(examples, tmp_path / name)
    curve = tmp_path / "curve.jsonl"

    def add(arm: str, round_number: int, pred: str = "pred.json") -> None:
        argv = ["curve", "--gold", str(tmp_path / "gold.json"), "--pred", str(tmp_path / pred)]
        argv += ["--labelled", str(tmp_path / "labelled.json"), "--arm", arm, "--round", str(round_number)]
        assert cli([*argv, "--output", str(curve)]) == 0

    add("uncertainty", 0)
    add("random", 0)
    add("uncertainty", 0, "gold.json")  # the same point again: replaced
    points = read_learning_curve(curve)
    assert len(points) == 2
    by_arm = {p["arm"]: p for p in points}
    assert by_arm["uncertainty"]["f1"] == 1.0
    # half the sentences predict one of two entities, half both: precision 1, recall 30/40
    assert by_arm["random"]["precision"] == 1.0 and by_arm["random"]["recall"] == 0.75
    assert by_arm["random"]["f1"] == pytest.approx(2 * 0.75 / 1.75, abs=1e-6)
    assert by_arm["random"]["labelled"] == 7 and by_arm["random"]["labelled_entities"] == 14
    curve.write_text('{"arm": "x", "round": "one"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="curve.jsonl:1"):
        read_learning_curve(curve)


def test_learning_curve_table_means_seeds_and_subtracts_arms(tmp_path):
    from llm_ner.report.charts import plot_learning_curve
    from llm_ner.report.learning_curve import curve_series
    from llm_ner.report.tables import learning_curve_rows

    def point(arm, round_number, seed, f1):
        return {
            "arm": arm,
            "round": round_number,
            "seed": seed,
            "labelled": 100 * (round_number + 1),
            "f1": f1,
            "ci95": [f1 - 0.05, f1 + 0.05],
        }

    points = [point("uncertainty", 0, 0, 0.2), point("uncertainty", 1, 0, 0.5), point("random", 0, 0, 0.2)]
    points += [point("random", 1, 0, 0.3), point("random", 1, 1, 0.4)]
    header, rows = learning_curve_rows(curve_series(points))
    assert header == ["round", "labelled", "uncertainty F1", "random F1", "uncertainty - random"]
    assert rows[0] == ["0", "100", "0.2000 [0.1500, 0.2500]", "0.2000 [0.1500, 0.2500]", "+0.0000"]
    assert rows[1] == ["1", "200", "0.5000 [0.4500, 0.5500]", "0.3500 (seeds: 0.3000, 0.4000)", "+0.1500"]
    plot_learning_curve(curve_series(points), tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_curve_of_systems_shows_training_times_on_a_log_axis(tmp_path, cluener_dir, monkeypatch):
    """Points written with ``--train-seconds`` show the training time beside their F1; counts that grow by
    multiples (0, 160, 2 240) go on a symmetric-log axis, 0 included."""
    from llm_ner.report import charts
    from llm_ner.report.learning_curve import curve_series
    from llm_ner.report.tables import learning_curve_rows

    curve = tmp_path / "curve.jsonl"
    gold = cluener_dir / "dev.json"
    labelled = tmp_path / "labelled.json"
    labelled.write_text("".join(gold.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    for number, seconds in ((0, None), (1, 95.0), (2, 9000.0)):
        argv = ["curve", "--gold", str(gold), "--pred", str(gold), "--labelled", str(labelled), "--arm", "llm-lora"]
        argv += ["--round", str(number), "--output", str(curve), "--resamples", "10"]
        assert cli(argv + (["--train-seconds", str(seconds)] if seconds is not None else [])) == 0
    points = read_learning_curve(curve)
    assert [p.get("train_seconds") for p in points] == [None, 95.0, 9000.0]
    _, rows = learning_curve_rows(curve_series(points))
    assert [row[2] for row in rows] == [
        "1.0000 [1.0000, 1.0000]",
        "1.0000 [1.0000, 1.0000], 95 s training",
        "1.0000 [1.0000, 1.0000], 2.5 h training",
    ]
    for point, labelled_count in zip(points, (0, 160, 10748)):
        point["labelled"] = labelled_count
    axes = []
    pyplot = charts._pyplot()
    subplots = pyplot.subplots

    def recording_subplots(*args, **kwargs):
        figure, axis = subplots(*args, **kwargs)
        axes.append(axis)
        return figure, axis

    monkeypatch.setattr(pyplot, "subplots", recording_subplots)
    charts.plot_learning_curve(curve_series(points), tmp_path / "curve.png")
    assert axes[0].get_xscale() == "symlog"
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_report_of_the_learning_curve_alone(tmp_path, cluener_dir):
    """The shipped loop measurement redraws without prediction files; without either input it is a usage error."""
    curve = ROOT / "benchmarks" / "results" / "annotation_loop_curve.jsonl"
    gold = str(cluener_dir / "dev.json")
    assert cli(["report", "--gold", gold, "--learning-curve", str(curve), "--out", str(tmp_path / "r")]) == 0
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "## Summary" not in markdown and "![F1 per class]" not in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| 3 | 800 |"))
    assert row.endswith("| -0.0325 |"), row
    assert not (tmp_path / "r" / "f1_per_class.png").exists()
    assert cli(["report", "--gold", gold, "--out", str(tmp_path / "s")]) == 2
