"""`llm-ner extract --engine ray` on a local Ray runtime (2 CPUs, one per module): the same records in the
same order as single-process `extract`, through a worker killed mid-job and a driver killed and rerun.
Tiny random-weight models: plumbing, not quality."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import records, redraw_weights

from llm_ner.cli import main as cli
from llm_ner.errors import DependencyVersionError
from llm_ner.tiny import build_tiny_model, default_texts

ray = pytest.importorskip("ray", reason="the ray extra (pip install 'llm-ner[ray]') is not installed")

SENTENCES = 200


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray runtime for the module; in-process runs use it, subprocess drivers join it."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def diverse_qwen(tiny_qwen, tmp_path_factory):
    """Weights ~ N(0, 1): free greedy answers differ from sentence to sentence (checked where used)."""
    return redraw_weights(tiny_qwen, tmp_path_factory.mktemp("diverse") / "qwen3", std=1.0)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory, cluener_dir):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3", "qwen3", default_texts(), hidden_size=64)


@pytest.fixture(scope="module")
def constrained_qwen(tmp_path_factory, cluener_dev):
    """A vocabulary of the prompts and the 200 sentences, weights ~ N(0, 0.5): constrained answers differ from
    sentence to sentence (the tiny model above answers [] to all)."""
    texts = default_texts(limit=0) + [ex.text for ex in cluener_dev[:SENTENCES]]
    tiny = build_tiny_model(tmp_path_factory.mktemp("tiny-c") / "qwen3", "qwen3", texts, hidden_size=64)
    return redraw_weights(tiny, tmp_path_factory.mktemp("constrained") / "qwen3", std=0.5)


@pytest.fixture(scope="module")
def dev200(tmp_path_factory, cluener_dev):
    path = tmp_path_factory.mktemp("data") / "dev200.json"
    lines = [json.dumps({"id": ex.id, "text": ex.text}, ensure_ascii=False) for ex in cluener_dev[:SENTENCES]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, cluener_dev):
    """The 200 dev sentences in 4 files of 2 formats, and the one file plain `extract` reads for the
    same records: the files concatenated in order, ids prefixed with each file's name."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "in").mkdir()
    concatenated = []
    for part in range(4):
        chunk = cluener_dev[part * 50 : (part + 1) * 50]
        if part % 2:
            name = f"part{part}.txt"
            (folder / "in" / name).write_text("".join(ex.text + "\n" for ex in chunk), encoding="utf-8")
            ids = [str(i) for i in range(len(chunk))]
        else:
            name = f"part{part}.json"
            lines = [json.dumps({"id": ex.id, "text": ex.text}, ensure_ascii=False) + "\n" for ex in chunk]
            (folder / "in" / name).write_text("".join(lines), encoding="utf-8")
            ids = [ex.id for ex in chunk]
        concatenated += [{"id": f"{name}:{i}", "text": ex.text} for i, ex in zip(ids, chunk)]
    joined = folder / "joined.json"
    joined.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in concatenated), encoding="utf-8")
    return folder / "in", joined


def args(model, source, output, *extra: str) -> list[str]:
    return [
        "extract",
        "--model",
        str(model),
        "--input",
        str(source),
        "--output",
        str(output),
        "--quiet",
        "--max-parse-failures",
        "1",
        *extra,
    ]


RAY = ("--engine", "ray", "--workers", "2", "--cpus-per-worker", "1")


def single_process(argv: list[str]) -> int:
    """Plain `extract` with one thread, as each worker of `RAY` computes (``--cpus-per-worker 1``): float
    reductions depend on the thread count (transformers 5.2 moves answer scores in the 6th digit with it),
    and identical records are promised for identical arithmetic."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli(argv)
    finally:
        torch.set_num_threads(threads)


def test_free_records_identical_to_extract(ray_address, diverse_qwen, dev200, tmp_path):
    """Long sentences cut (--max-chars 40) and rejoined, batches of 16 pieces: the very records of `extract`."""
    options = ("--max-new-tokens", "10", "--max-chars", "40", "--batch-size", "16")
    single, spread = tmp_path / "single.json", tmp_path / "ray.json"
    assert single_process(args(diverse_qwen, dev200, single, *options)) == 0
    assert cli(args(diverse_qwen, dev200, spread, *options, *RAY)) == 0
    expected = records(single)
    assert len(expected) == SENTENCES and len({json.dumps(r["raw"]) for r in expected}) >= 100  # answers differ
    assert sum(isinstance(r["raw"], list) for r in expected) >= 20  # many sentences were cut into pieces
    assert records(spread) == expected
    assert json.loads((tmp_path / "ray.json.run.json").read_text()) == json.loads(
        (tmp_path / "single.json.run.json").read_text()
    )
    assert not (tmp_path / "ray.json.ray").exists()


def test_constrained_records_identical_in_part_files(ray_address, constrained_qwen, dev200, tmp_path):
    options = ("--constrained", "--max-new-tokens", "16", "--batch-size", "32")
    single, parts = tmp_path / "single.json", tmp_path / "parts"
    assert single_process(args(constrained_qwen, dev200, single, *options)) == 0
    assert cli(args(constrained_qwen, dev200, parts, *options, *RAY, "--output-dir", "--part-records", "64")) == 0
    expected = records(single)
    assert len({r["raw"] for r in expected}) >= 100 and all(r["raw"].startswith("[") for r in expected)
    files = sorted(parts.glob("part-*.json"))
    assert [len(records(f)) for f in files] == [64, 64, 64, 8]
    assert [r for f in files for r in records(f)] == expected


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _answering_workers(driver: int) -> list[int]:
    """The pids of a driver's Ray actors that hold an engine (their process title names the class)."""
    pids = []
    for pid in _descendants(driver):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "BatchAnswerer" in title:
            pids.append(pid)
    return sorted(pids)


def _shard_lines(output: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (output.parent / (output.name + ".ray")).glob("shard-*"))


def _driver(model, source, output, *extra) -> subprocess.Popen:
    """A driver process with a Ray runtime of its own (on 127.0.0.1): one the test can SIGKILL. (Joining the
    module's runtime at 127.0.0.1 fails before Ray 2.60: the address is rewritten to the host's IP.)"""
    command = [sys.executable, "-m", "llm_ner", *args(model, source, output, *extra, *RAY)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def _kill_leftovers(pids: set[int]) -> None:
    """SIGKILL what is left of a killed driver's Ray runtime (these pids were its descendants)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_shard_lines(process, output: Path, at_least: int) -> int:
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _shard_lines(output) < at_least:
        time.sleep(0.1)
    return _shard_lines(output)


@pytest.fixture(scope="module")
def joined_reference(diverse_qwen, corpus, tmp_path_factory):
    """Plain `extract` over the concatenated corpus, batches of 4: what the ray runs must write."""
    _, joined = corpus
    out = tmp_path_factory.mktemp("reference") / "joined.pred.json"
    assert single_process(args(diverse_qwen, joined, out, "--max-new-tokens", "10", "--batch-size", "4")) == 0
    return records(out)


def test_worker_killed_mid_job(diverse_qwen, corpus, joined_reference, tmp_path):
    """A folder of 4 files; an answering actor SIGKILLed mid-job: Ray replaces it, its batch is redone, the job
    ends with exit 0 and every id once, with the records of `extract` over the files concatenated."""
    folder, _ = corpus
    out = tmp_path / "pred.json"
    process = _driver(diverse_qwen, folder, out, "--max-new-tokens", "10", "--batch-size", "4")
    before = _wait_for_shard_lines(process, out, 20)
    workers = _answering_workers(process.pid)
    assert process.poll() is None and 20 <= before < SENTENCES and workers, (before, workers)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    written = records(out)
    assert [r["id"] for r in written] == [r["id"] for r in joined_reference]  # every id once, in order
    assert written == joined_reference


def test_driver_killed_and_rerun_resumes(ray_address, diverse_qwen, corpus, joined_reference, tmp_path, capsys):
    """SIGKILL of the driver (a torn shard line), then a rerun (here, on the module's runtime): resumes, nothing
    lost or written twice; a rerun with other settings is refused; one more rerun has nothing to do."""
    folder, _ = corpus
    out = tmp_path / "pred.json"
    extra = ("--max-new-tokens", "10", "--batch-size", "4")
    process = _driver(diverse_qwen, folder, out, *extra)
    _wait_for_shard_lines(process, out, 40)
    runtime = _descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    _kill_leftovers(runtime)
    done_before = _shard_lines(out)
    assert not out.exists() and 40 <= done_before < SENTENCES
    shard = sorted((tmp_path / "pred.json.ray").glob("shard-*"))[-1]
    with open(shard, "ab") as handle:  # a line torn by the kill
        handle.write(b'[0, 3, {"id": "part0.json:')
    assert cli(args(diverse_qwen, folder, out, "--max-new-tokens", "12", "--batch-size", "4", *RAY)) == 1
    assert "max_new_tokens: 10 then, 12 now" in capsys.readouterr().err
    assert cli(args(diverse_qwen, folder, out, *extra, *RAY)) == 0
    stderr = capsys.readouterr().err
    assert int(stderr.split("this run: ")[1].split(" answers")[0]) == SENTENCES - done_before  # finished ids skipped
    assert records(out) == joined_reference
    assert cli(args(diverse_qwen, folder, out, *extra, *RAY)) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert records(out) == joined_reference


def test_resume_refuses_another_input(ray_address, diverse_qwen, dev200, tmp_path, capsys):
    out = tmp_path / "pred.json"
    options = ("--max-new-tokens", "4", "--limit", "6", *RAY)
    assert cli(args(diverse_qwen, dev200, out, *options)) == 0
    assert [r["id"] for r in records(out)] == [str(i) for i in range(6)]
    changed = tmp_path / "changed.json"
    lines = dev200.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"id": "2", "text": "另一句话"}, ensure_ascii=False)
    changed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli(args(diverse_qwen, changed, out, *options)) == 1
    assert "another text than the input for 1 ids (first: id '2')" in capsys.readouterr().err


def test_options_and_inputs_are_checked(tmp_path, monkeypatch, capsys):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("张三\n", encoding="utf-8")

    def refused(*argv: str) -> str:
        assert cli(["extract", "--model", "m", *argv]) == 2
        return capsys.readouterr().err

    assert "need --engine ray" in refused(
        "--input", str(source / "a.txt"), "--output", str(tmp_path / "o"), "--workers", "2"
    )
    # outputs a rerun would read back as input
    assert "inside the --input folder" in refused(
        "--input", str(source), "--output", str(source / "o.json"), "--engine", "ray"
    )
    assert "the input glob" in refused(
        "--input", str(tmp_path / "*.json"), "--output", str(tmp_path / "o.json"), "--engine", "ray"
    )
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    assert (
        cli(["extract", "--model", "m", "--input", str(source), "--output", str(tmp_path / "o"), "--engine", "ray"])
        == 1
    )
    assert "pip install 'llm-ner[ray]'" in capsys.readouterr().err


def test_ray_below_its_floor_is_named():
    from llm_ner.versions import FLOORS, check_versions

    with pytest.raises(DependencyVersionError, match=f"ray 2.0.0 is older than llm-ner's floor {FLOORS['ray']}"):
        check_versions(["ray"], installed={"ray": "2.0.0"})


def test_a_redone_block_adds_nothing_and_pieces_join_in_any_order():
    """What the driver does with the actors' blocks: ids it has are dropped (a block redone after an actor
    died), a long sentence's record is made once all its pieces are in, whatever their order."""
    from llm_ner.backends import Answer
    from llm_ner.data import Example, split_long
    from llm_ner.extraction import Annotator, make_record, resolve_settings
    from llm_ner.extraction.ray_run import BlockRecords

    settings = resolve_settings("org/model", prompt="cluener_zh")
    text = "张三在北京。李四去上海。"
    pieces = split_long(text, 6)
    answers = ['[{"text":"张三","label":"name"}]', '[{"text":"上海","label":"address"}]']
    scores = [([(0, 5)], [-0.1]), ([(0, 5)], [-0.2])]
    single, _ = make_record(Example("a", "王五"), [(0, "王五")], [Answer("[]")], settings.prompt)
    block = {
        "file": [0, 0, 0],
        "pos": [1, 0, 1],
        "k": [1, 0, 0],
        "n": [2, 1, 2],
        "id": ["b", "a", "b"],
        "payload": [
            json.dumps([text, answers[1], *scores[1]]),
            json.dumps(single),
            json.dumps([text, answers[0], *scores[0]]),
        ],
    }
    collect = BlockRecords({}, Annotator(None, settings, 6))
    scored = [Answer(a, tuple(map(tuple, ranges)), tuple(logprobs)) for a, (ranges, logprobs) in zip(answers, scores)]
    expected, _ = make_record(Example("b", text), pieces, scored, settings.prompt)
    assert collect.records(block) == [(0, 0, single), (0, 1, expected)]
    assert collect.records(block) == []  # the same block again: nothing new


def test_merge_of_many_shards_is_in_input_order(tmp_path, monkeypatch):
    """Shards of 3 records, merged 2 at a time (as a large corpus is: bounded memory and open files)."""
    import random

    import llm_ner.extraction.ray_store as engine

    monkeypatch.setattr(engine, "MERGE_FAN_IN", 2)
    keys = [(file, pos) for file in range(3) for pos in range(7)]
    random.Random(0).shuffle(keys)
    store = engine.ShardStore(tmp_path / "o.json", shard_records=3)
    store.start({"model": "m"}, [])
    for start in range(0, len(keys), 2):
        store.append([(f, p, {"id": f"{f}:{p}", "text": "x"}) for f, p in keys[start : start + 2]])
    assert len(store.shard_paths()) == 6  # a new shard once one holds 3 or more
    assert store.merge() == 21
    assert [r["id"] for r in records(tmp_path / "o.json")] == [f"{f}:{p}" for f in range(3) for p in range(7)]
    assert not (tmp_path / "o.json.ray").exists()
    assert json.loads((tmp_path / "o.json.run.json").read_text()) == {"settings": {"model": "m"}}


def test_openai_backend_with_shots_under_ray(ray_address, cluener_dev, tmp_path):
    """Each actor a client of one OpenAI-compatible server, few-shot conversations included: the server
    receives the same conversations and the output holds the same records as single-process `extract`."""
    from test_openai_backend import FlakyServer

    from llm_ner.data import write_cluener

    shots, texts = tmp_path / "shots.json", tmp_path / "in.txt"
    write_cluener(cluener_dev[SENTENCES : SENTENCES + 40], shots)
    texts.write_text("".join(ex.text + "\n" for ex in cluener_dev[:60]), encoding="utf-8")
    server = FlakyServer(failures=0)  # answers the last 4 characters of the question: they differ per sentence
    try:
        remote = ["--backend", "openai", "--base-url", server.url, "--served-model", "m"]
        remote += ["--prompt", "cluener_zh_short", "--format", "mentions", "--batch-size", "16"]
        remote += ["--shots", "2", "--shots-from", str(shots)]
        single, spread = tmp_path / "single.json", tmp_path / "ray.json"
        assert cli(args("m", texts, single, *remote)) == 0
        sent_single = sorted(json.dumps(b["messages"], ensure_ascii=False) for b in server.bodies)
        server.bodies.clear()
        assert cli(args("m", texts, spread, *remote, *RAY)) == 0
        sent_ray = sorted(json.dumps(b["messages"], ensure_ascii=False) for b in server.bodies)
    finally:
        server.close()
    assert len(sent_single) == 60 and all(len(json.loads(m)) == 6 for m in sent_single)  # system, 2 shots, q
    assert sent_ray == sent_single
    expected = records(single)
    assert len({json.dumps(r["raw"], ensure_ascii=False) for r in expected}) >= 50
    assert records(spread) == expected
    assert json.loads((tmp_path / "ray.json.run.json").read_text())["settings"]["shots"] == 2
