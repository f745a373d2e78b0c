"""Batch extraction on tiny local models: inputs, long sentences, order, resume after a kill,
2-process sharding and constrained decoding's guarantees. Random weights: plumbing, not quality."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import records, redraw_weights, two_cpu_process_launch

from llm_ner.backends import Answer
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, read_cluener, read_inputs, split_long, write_bio
from llm_ner.errors import UsageError
from llm_ner.extraction import ResumableOutput, make_record
from llm_ner.prompting import load_prompt
from llm_ner.tiny import build_tiny_model, default_texts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory, cluener_dir):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3", "qwen3", default_texts(), hidden_size=64)


@pytest.fixture(scope="module")
def noisy_qwen(tiny_qwen, tmp_path_factory):
    """The tiny model with large random weights: its free output is varied garbage."""
    return redraw_weights(tiny_qwen, tmp_path_factory.mktemp("noisy") / "qwen3", std=0.5)


@pytest.fixture(scope="module")
def diverse_qwen(tiny_qwen, tmp_path_factory):
    """The tiny model with weights ~ N(0, 1): its greedy answers differ from sentence to sentence
    (7 distinct of the first 10 dev sentences), so equivalence tests can see a mix-up."""
    return redraw_weights(tiny_qwen, tmp_path_factory.mktemp("diverse") / "qwen3", std=1.0)


@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory, cluener_dev):
    path = tmp_path_factory.mktemp("data") / "dev48.json"
    lines = [json.dumps({"id": f"d{i}", "text": ex.text}, ensure_ascii=False) for i, ex in enumerate(cluener_dev[:48])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def extract_args(model, source, output, *extra: str) -> list[str]:
    """Arguments of `llm-ner extract` for a test run (no progress bar)."""
    # random weights: (almost) no answer parses, which exits 1 unless allowed
    return ["--model", str(model), "--input", str(source), "--output", str(output), *extra, "--quiet",
            "--max-parse-failures", "1"]  # fmt: skip


def test_input_kinds(tmp_path, cluener_dir, cluener_dev):
    text = tmp_path / "a.txt"
    text.write_text("张三在北京\n\n李四去上海\n", encoding="utf-8")
    assert [(e.id, e.text) for e in read_inputs(text)] == [("0", "张三在北京"), ("1", "李四去上海")]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"id": "x7", "text": "王五"}\n{"text": "赵六"}\n', encoding="utf-8")
    assert [(e.id, e.text) for e in read_inputs(jsonl)] == [("x7", "王五"), ("1", "赵六")]
    cluener = read_inputs(cluener_dir / "dev.json")
    assert len(cluener) == len(cluener_dev) and cluener[0].spans == cluener_dev[0].spans  # gold kept, not needed
    bio = tmp_path / "a.bio"
    write_bio([Example("0", "张三说", [Span(0, 2, "PER")])], bio)
    assert [e.text for e in read_inputs(bio)] == ["张三说"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(Exception, match="empty"):
        read_inputs(empty)


def test_split_long_prefers_punctuation_and_keeps_offsets():
    text = "第一句很长很长。第二句也很长，还有逗号分句，" + "无标点" * 20
    pieces = split_long(text, 12)
    assert "".join(piece for _, piece in pieces) == text
    assert all(len(piece) <= 12 for _, piece in pieces)
    assert all(text[offset : offset + len(piece)] == piece for offset, piece in pieces)
    assert pieces[0][1] == "第一句很长很长。"
    assert split_long("短句", 12) == [(0, "短句")]


def test_long_sentence_spans_are_shifted_back():
    text = "张三说了很多话。" * 3 + "李四在北京。"
    pieces = split_long(text, 10)
    answers = ['[{"text":"张三","label":"name"}]'] * 3 + [
        '[{"text":"李四","label":"name"},{"text":"北京","label":"address"}]'
    ]
    assert len(pieces) == 4
    record, stats = make_record(Example("0", text), pieces, [Answer(a) for a in answers], load_prompt())
    spans = {(s, e + 1) for offsets in record["label"]["name"].values() for s, e in offsets}
    assert spans == {(0, 2), (8, 10), (16, 18), (24, 26)}
    assert record["label"]["address"] == {"北京": [[27, 28]]}
    assert record["raw"] == answers and stats.aligned == 5


def test_extract_writes_cluener_in_input_order(tiny_qwen, dev_slice, tmp_path, cluener_dir):
    out = tmp_path / "pred.json"
    assert (
        cli(["extract", *extract_args(tiny_qwen, dev_slice, out, "--batch-size", "7", "--max-new-tokens", "12")]) == 0
    )
    written = records(out)
    assert [r["id"] for r in written] == [f"d{i}" for i in range(48)]
    assert all({"text", "label", "raw", "parse"} <= set(r) for r in written)
    assert not (tmp_path / "pred.json.parts").exists()
    again, _ = read_cluener(out)  # valid CLUENER, spans inside the text
    assert len(again) == 48


def test_extraction_from_python_without_argparse(tiny_qwen, dev_slice, tmp_path):
    """The library entry point takes typed options, no command line: the same records as the CLI's."""
    from llm_ner.extraction import ExtractOptions, ModelOptions, run_extraction

    model = ModelOptions(model=str(tiny_qwen), max_new_tokens=8)
    run = ExtractOptions(input=dev_slice, output=tmp_path / "python.json", limit=6, quiet=True, max_parse_failures=1)
    assert run_extraction(model, run) == 0
    written = records(tmp_path / "python.json")
    assert [r["id"] for r in written] == [f"d{i}" for i in range(6)]
    by_cli = tmp_path / "cli.json"
    assert cli(["extract", *extract_args(tiny_qwen, dev_slice, by_cli, "--limit", "6", "--max-new-tokens", "8")]) == 0
    assert written == records(by_cli)


def test_batched_extraction_equals_one_by_one(diverse_qwen, dev_slice, tmp_path):
    outs = []
    for batch in ("16", "1"):
        out = tmp_path / f"b{batch}.json"
        args = extract_args(
            diverse_qwen, dev_slice, out, "--limit", "10", "--batch-size", batch, "--max-new-tokens", "10"
        )
        cli(["extract", *args])
        outs.append([(r["id"], r["raw"]) for r in records(out)])
    assert outs[0] == outs[1]
    assert len({raw for _, raw in outs[0]}) >= 5  # answers differ per sentence: a mix-up would show


def test_resume_after_kill(tiny_qwen, cluener_dir, cluener_dev, tmp_path):
    limit = min(400, len(cluener_dev))
    out = tmp_path / "pred.json"
    command = [
        sys.executable,
        "-m",
        "llm_ner",
        "extract",
        *extract_args(
            tiny_qwen,
            cluener_dir / "dev.json",
            out,
            "--limit",
            str(limit),
            "--batch-size",
            "4",
            "--max-new-tokens",
            "24",
        ),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    part = tmp_path / "pred.json.parts" / "rank-0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not part.exists() or len(part.read_bytes().splitlines()) < 12):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    done_before = len(part.read_bytes().splitlines())
    assert 0 < done_before < limit
    with open(part, "ab") as handle:  # a line torn by the kill
        handle.write(b'{"id": "99", "text": "')
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    written = records(out)
    assert [r["id"] for r in written] == [str(i) for i in range(limit)]
    answers = int(rerun.stderr.split("this run: ")[1].split(" answers")[0])
    assert answers == limit - done_before  # finished ids were skipped


def test_interrupt_keeps_finished_batches(tmp_path):
    store = ResumableOutput(tmp_path / "o.json")
    store.append([{"id": "1", "text": "乙", "label": {}}])
    store.append([{"id": "0", "text": "甲", "label": {}}])
    assert store.done_ids() == {"0", "1"}
    assert store.merge(["0", "1", "2"]) == 2
    assert [r["id"] for r in records(tmp_path / "o.json")] == ["0", "1"]
    assert ResumableOutput(tmp_path / "o.json").done_ids() == {"0", "1"}


def test_two_process_sharding_matches_one_process(diverse_qwen, dev_slice, tmp_path):
    single = tmp_path / "single.json"
    cli(["extract", *extract_args(diverse_qwen, dev_slice, single, "--max-new-tokens", "10")])
    assert len({r["raw"] for r in records(single)}) >= 10  # answers differ per sentence
    sharded = tmp_path / "sharded.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            *two_cpu_process_launch(),
            str(ROOT / "scripts" / "extract.py"),
            *extract_args(diverse_qwen, dev_slice, sharded, "--max-new-tokens", "10", "--device", "cpu"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scored = ("scores", "answer_score")  # probabilities may differ in the last digits between processes
    plain = [{k: v for k, v in r.items() if k not in scored} for r in records(sharded)]
    assert plain == [{k: v for k, v in r.items() if k not in scored} for r in records(single)]
    for left, right in zip(records(sharded), records(single)):
        assert left["answer_score"] == pytest.approx(right["answer_score"], abs=1e-4)


class _NoiseLogits:
    """Adds large seeded noise to every score: the model then writes arbitrary garbage."""

    def __init__(self, seed: int):
        import torch

        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids, scores):
        import torch

        return scores + 20 * torch.randn(scores.shape, generator=self.generator)


def test_constrained_decoding_guarantees_on_cluener_dev(tiny_qwen, cluener_dev):
    """Free output of the noisy model is garbage; constrained, every answer parses, every entity
    is a substring of its sentence and every label is a CLUENER type, on all of CLUENER dev."""
    from llm_ner.answer_format import answer_to_spans
    from llm_ner.generation import generate_answers, load_model
    from llm_ner.generation.constrained import MentionsConstraint
    from llm_ner.parsing import ParseStats

    model, tokenizer = load_model(str(tiny_qwen))
    prompt = load_prompt()
    constraint = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    texts = [ex.text for ex in cluener_dev]
    conversations = [prompt.messages(text) for text in texts]
    results = {}
    for name, factory in (
        ("free", lambda batch, width: _NoiseLogits(0)),
        ("constrained", lambda batch, width: _chain(_NoiseLogits(0), constraint(batch, width))),
    ):
        subset = slice(0, 64) if name == "free" else slice(None)
        answers = generate_answers(
            model,
            tokenizer,
            conversations[subset],
            texts=texts[subset],
            batch_size=64,
            max_new_tokens=48,
            logits_processor_factory=factory,
        )
        totals = ParseStats()
        for text, answer in zip(texts[subset], answers):
            spans, stats = answer_to_spans(text, answer, prompt.schema)
            totals += stats
            assert all(0 <= s.start < s.end <= len(text) for s in spans)
        results[name] = totals
    print(f"\nfree (64 sentences): {results['free'].as_dict()}\nconstrained (dev): {results['constrained'].as_dict()}")
    assert results["free"].parse_failures > 32  # the unconstrained model really writes garbage
    constrained = results["constrained"]
    assert constrained.answers == len(texts)
    assert constrained.parse_failures == 0 and constrained.hallucinated == 0 and constrained.unknown_label == 0
    assert constrained.invalid_items == 0 and constrained.aligned > len(texts) // 3


def _chain(*processors):
    def apply(input_ids, scores):
        for processor in processors:
            scores = processor(input_ids, scores)
        return scores

    return apply


def test_constrained_flag_on_the_command_line(tiny_qwen, dev_slice, tmp_path):
    out = tmp_path / "constrained.json"
    assert cli(["extract", *extract_args(tiny_qwen, dev_slice, out, "--constrained", "--max-new-tokens", "24")]) == 0
    written = records(out)
    assert len(written) == 48 and all(r["raw"].startswith("[") for r in written)
    assert all(r["parse"].get("parse_failures", 0) == 0 for r in written)
    with pytest.raises(ValueError, match="mentions answer format only"):
        from llm_ner.cli import build_parser
        from llm_ner.cli.extract import run as cmd_extract

        cmd_extract(
            build_parser().parse_args(
                ["extract", "--model", "m", "--input", "i", "--output", "o", "--constrained", "--format", "grouped"]
            )
        )


def test_constrained_refuses_a_grouped_format_saved_at_training(tmp_path):
    from llm_ner.extraction import resolve_settings

    run = tmp_path / "run"
    run.mkdir()
    (run / "llm_ner.json").write_text(json.dumps({"answer_format": "grouped"}), encoding="utf-8")
    (run / "prompt.yaml").write_text((ROOT / "prompts" / "cluener_zh_short.yaml").read_text(encoding="utf-8"))
    assert resolve_settings(str(run)).answer_format == "grouped"
    with pytest.raises(UsageError, match="mentions answer format only.*grouped"):
        resolve_settings(str(run), constrained=True)
