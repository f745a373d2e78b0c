"""Bad inputs and unlucky reruns, command by command: each case is a row of CASES (arguments, the
expected exit code, a fragment of the one-line error), run in-process through `llm_ner.cli.main`.
A new command gets checked the same way by adding rows. Behaviour that needs more than an exit code
(data kept, files untouched, text read right) has its own test below the table."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import free_port

from llm_ner.cli import build_parser, main
from llm_ner.data import Example, Span, read_bio, read_cluener, read_inputs, write_cluener
from llm_ner.options import non_negative_int, positive_float, positive_int

GOLD = [
    {"id": "a", "text": "张三在北京工作", "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}},
    {"id": "b", "text": "李四去了上海", "label": {"name": {"李四": [[0, 1]]}, "address": {"上海": [[4, 5]]}}},
    {"id": "c", "text": "王五说好", "label": {"name": {"王五": [[0, 1]]}}},
]


def write_lines(path: Path, lines) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Small files and models shared by the cases: gold, a tiny LLM with a finished extraction, a baseline."""
    from llm_ner.tiny import build_tiny_model, default_texts

    root = tmp_path_factory.mktemp("bad")
    c = {"root": root}
    c["gold"] = write_lines(root / "gold.json", GOLD)
    c["gold_copy"] = root / "gold_copy.json"
    shutil.copy(c["gold"], c["gold_copy"])
    c["other_text"] = write_lines(root / "other.json", [{"id": "a", "text": "张三在南京工作"}, *GOLD[1:]])
    c["pred_name_vs_per"] = write_lines(
        root / "per.json", [{"id": g["id"], "text": g["text"], "label": {"PER": g["label"]["name"]}} for g in GOLD]
    )
    c["array_first"] = write_lines(root / "array.jsonl", [["张三", "name"], {"text": "李四"}])
    c["pretty_json"] = root / "pretty.json"
    c["pretty_json"].write_text(json.dumps([{"text": "张三"}, {"text": "李四"}], ensure_ascii=False, indent=1))
    c["dup_ids"] = write_lines(root / "dup.json", [GOLD[0], GOLD[1], {**GOLD[2], "id": "a"}])
    c["start_after_end"] = write_lines(root / "rev.json", [{"text": "张三在", "label": {"name": {"张三": [[1, 0]]}}}])
    c["bad_gold_line"] = write_lines(root / "badgold.json", ['{"text": "坏', *[{"text": g["text"]} for g in GOLD]])
    c["pred_by_position"] = write_lines(root / "pos.json", [{"id": "0", "text": GOLD[0]["text"], "label": {}}])
    c["published_list"] = write_lines(root / "pub_list.json", ["[1, 2]"])
    c["published_no_f1"] = write_lines(root / "pub_nof1.json", [{"systems": {"BERT": {"per_class": {}}}}])
    c["published_bad_json"] = write_lines(root / "pub_bad.json", ['{"systems": '])
    c["model"] = build_tiny_model(
        root / "tiny",
        "qwen3",
        default_texts(limit=0) + [g["text"] for g in GOLD],
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
    )
    c["done"] = root / "done.json"
    assert main(["extract", *_extract(c, c["gold"], c["done"])]) == 0
    c["baseline"] = root / "bilstm"
    assert (
        main(
            [
                "baseline",
                "train",
                "--arch",
                "bilstm-crf",
                "--train",
                str(c["gold"]),
                "--out",
                str(c["baseline"]),
                "--epochs",
                "1",
                "--hidden-size",
                "8",
                "--embedding-dim",
                "8",
                "--quiet",
            ]
        )
        == 0
    )
    c["truncated_baseline"] = root / "bilstm_truncated"
    shutil.copytree(c["baseline"], c["truncated_baseline"])
    weights = c["truncated_baseline"] / "model.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return c


def _extract(c, source, output, *extra):
    return [
        "--model",
        str(c["model"]),
        "--input",
        str(source),
        "--output",
        str(output),
        "--max-new-tokens",
        "4",
        "--quiet",
        "--max-parse-failures",  # random weights: no answer parses, which would exit 1
        "1",
        *extra,
    ]


def extract(*extra, source="gold", output="out"):
    return lambda c: [
        "extract",
        *_extract(
            c,
            c[source] if source in c else c["root"] / source,
            c[output] if output in c else c["root"] / output,
            *extra,
        ),
    ]


def bpredict(*extra, model="baseline", source="gold", output="o"):
    """A `baseline predict` row: model, input and output are names in the context (else paths under root)."""

    def path(c, name):
        return str(c[name] if name in c else c["root"] / name)

    return lambda c: ["baseline", "predict", "--model", path(c, model), "--input", path(c, source),
                      "--output", path(c, output), *extra]  # fmt: skip


def report(*extra):
    return lambda c: [
        "report",
        "--gold",
        str(c["gold"]),
        "--pred",
        f"x={c['done']}",
        "--out",
        str(c["root"] / "report"),
        *[str(c[e]) if e in c else e for e in extra],
    ]


# (case, arguments from the fixture's files, exit code, fragment of the error line)
CASES = [
    # 1: resume only what this input and these settings made
    ("extract into a copy of gold", extract(output="gold_copy"), 1, "was not written by `llm-ner extract`"),
    (
        "extract resume, other max-chars",
        extract("--max-chars", "100", output="done"),
        1,
        "max_chars: 256 then, 100 now",
    ),
    ("extract resume, other prompt", extract("--prompt", "generic_zh", output="done"), 1, "prompt: "),
    ("extract resume, other input text", extract(source="other_text", output="done"), 1, "another text than the input"),
    ("extract resume, other constrained", extract("--constrained", output="done"), 1, "constrained: False then"),
    # 2: an output equal to an input
    (
        "convert output == input",
        lambda c: ["convert", "--input", str(c["gold"]), "--output", str(c["gold"])],
        2,
        "would destroy the input",
    ),
    (
        "convert output == input, other spelling",
        lambda c: ["convert", "--input", str(c["gold"]), "--output", str(c["root"] / "." / "gold.json")],
        2,
        "would destroy the input",
    ),
    (
        "evaluate --json == gold",
        lambda c: ["evaluate", "--gold", str(c["gold"]), "--pred", str(c["done"]), "--json", str(c["gold"])],
        2,
        "--json",
    ),
    (
        "baseline predict output == input",
        bpredict(output="gold"),
        2,
        "--output",
    ),
    ("extract output == input", extract(output="gold"), 2, "would destroy the input"),
    (
        "report out holds the gold file",
        lambda c: [
            "report",
            "--gold",
            str(c["root"] / "report.json"),
            "--pred",
            f"x={c['done']}",
            "--out",
            str(c["root"]),
        ],
        2,
        "--out",
    ),
    # 6: numbers checked by the parser, before any model loads
    ("extract --batch-size -1", extract("--batch-size", "-1"), 2, "--batch-size: must be a whole number >= 1"),
    ("extract --batch-size 0", extract("--batch-size", "0"), 2, "--batch-size: must be a whole number >= 1"),
    ("extract --limit -3", extract("--limit", "-3"), 2, "--limit: must be a whole number >= 1"),
    ("extract --limit 0", extract("--limit", "0"), 2, "--limit: must be a whole number >= 1"),
    ("extract --max-chars x", extract("--max-chars", "x"), 2, "not a whole number"),
    (
        "baseline predict --batch-size 0",
        bpredict("--batch-size", "0"),
        2,
        ">= 1",
    ),
    (
        "baseline train --lr 0",
        lambda c: ["baseline", "train", "--arch", "bilstm-crf", "--train", str(c["gold"]), "--out", "o", "--lr", "0"],
        2,
        "must be a number > 0",
    ),
    # 7: detection of JSON and text
    ("extract: JSON lines, first line an array", extract(source="array_first"), 1, "expected a JSON object"),
    (
        "baseline predict: first line an array",
        bpredict(source="array_first"),
        1,
        "array.jsonl:1: expected a JSON object",
    ),
    (
        "convert: pretty-printed JSON",
        lambda c: ["convert", "--input", str(c["pretty_json"]), "--output", "o"],
        1,
        "not an array",
    ),
    # 8: scoring problems said aloud (exit 0, warning checked in its own test)
    # 10: no tracebacks
    ("report --resamples 0", report("--resamples", "0"), 2, "--resamples: must be a whole number >= 1"),
    ("report --published a list", report("--published", "published_list"), 1, "pub_list.json: expected a JSON object"),
    (
        "report --published without summary_f1",
        report("--published", "published_no_f1"),
        1,
        "pub_nof1.json: system 'BERT': no \"summary_f1\"",
    ),
    ("report --published bad JSON", report("--published", "published_bad_json"), 1, "pub_bad.json:2: invalid JSON"),
    ("extract --device bogus", extract("--device", "bogus"), 2, "--device: not a device: 'bogus'"),
    ("extract --dtype bogus", extract("--dtype", "bogus"), 2, "--dtype: invalid choice: 'bogus'"),
    (
        "baseline predict, truncated model.pt",
        bpredict(model="truncated_baseline", output="p.json"),
        1,
        "cannot load the weights",
    ),
    ("extract, missing input", extract(source="missing.txt"), 1, "missing.txt"),
    (
        "extract, missing model directory",
        lambda c: ["extract", "--model", str(c["root"] / "no-model"), "--input", str(c["gold"]), "--output", "o"],
        2,
        "no-model: no such directory",
    ),
    (
        "evaluate, missing pred",
        lambda c: ["evaluate", "--gold", str(c["gold"]), "--pred", str(c["root"] / "nope")],
        1,
        "nope: cannot read file",
    ),
    (
        "report, bad --pred",
        lambda c: ["report", "--gold", str(c["gold"]), "--pred", "x", "--out", "o"],
        2,
        "--pred expects NAME=FILE",
    ),
    (
        "openai backend without its server or model",
        extract("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"),
        2,
        "--backend openai needs --base-url and --served-model",
    ),
    (
        "openai backend, a base URL that is not http(s)",
        extract("--backend", "openai", "--base-url", "ftp://127.0.0.1/v1", "--served-model", "m"),
        2,
        "--base-url must be an http(s) URL",
    ),
    # 11: clear messages
    (
        "duplicate ids name the id and lines",
        lambda c: ["convert", "--input", str(c["dup_ids"]), "--output", "o"],
        1,
        "dup.json:3: duplicate id 'a' (first at line 1)",
    ),
    (
        "start after end",
        lambda c: ["convert", "--input", str(c["start_after_end"]), "--output", "o"],
        1,
        "start is after end",
    ),
    (
        "JSON read as BIO",
        lambda c: ["convert", "--input", str(c["array_first"]), "--input-format", "bio", "--output", "o"],
        1,
        "this is JSON, not a char-per-line tag file",
    ),
    (
        "evaluate --lenient, bad gold line",
        lambda c: ["evaluate", "--gold", str(c["bad_gold_line"]), "--pred", str(c["pred_by_position"]), "--lenient"],
        1,
        "skipped by --lenient",
    ),
]


@pytest.mark.parametrize("name, arguments, code, fragment", CASES, ids=[case[0] for case in CASES])
def test_bad_input(ctx, name, arguments, code, fragment, capsys, monkeypatch):
    monkeypatch.chdir(ctx["root"])
    before = {p: p.read_bytes() for p in (ctx["gold"], ctx["done"], ctx["gold_copy"])}
    try:
        got = main(arguments(ctx))
    except SystemExit as exit:  # argparse
        got = exit.code
    err = capsys.readouterr().err
    assert got == code, err
    assert fragment in err, err
    assert "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error:") or "error: argument" in last, err
    assert {p: p.read_bytes() for p in before} == before  # nothing an earlier run made is touched


def test_every_numeric_argument_is_checked_by_the_parser():
    """New numeric options must use positive_int / non_negative_int / positive_float too."""
    parser = build_parser()
    checked = {positive_int, non_negative_int, positive_float}
    seen = 0
    for command, sub in parser._subparsers._group_actions[0].choices.items():
        subs = [sub]
        if sub._subparsers is not None:
            subs = list(sub._subparsers._group_actions[0].choices.values())
        for p in subs:
            for action in p._actions:
                if action.type in (int, float):
                    raise AssertionError(f"{command} {action.option_strings}: plain {action.type.__name__}")
                seen += action.type in checked
    assert seen >= 15


def test_programming_errors_keep_their_traceback(monkeypatch):
    """Only expected failures become one line; a bug in our code still raises."""
    import llm_ner.cli.convert as convert

    def broken(args):
        return {}["missing"]

    monkeypatch.setattr(convert, "run", broken)
    with pytest.raises(KeyError):
        main(["convert", "--input", "a", "--output", "b"])

    def value_bug(args):
        raise ValueError("a bug")

    monkeypatch.setattr(convert, "run", value_bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["convert", "--input", "a", "--output", "b"])


# ---------------------------------------------------------------------------------------------
# 1: resume


def test_resume_keeps_records_beyond_a_smaller_limit_and_refuses_a_foreign_output(ctx, tmp_path, capsys):
    out = tmp_path / "full.json"
    shutil.copy(ctx["done"], out)
    shutil.copy(ctx["done"].with_name("done.json.run.json"), tmp_path / "full.json.run.json")
    before = out.read_bytes()
    assert main(["extract", *_extract(ctx, ctx["gold"], out, "--limit", "1")]) == 0
    assert out.read_bytes() == before  # 3 records stay, in input order
    assert main(["extract", *_extract(ctx, ctx["gold"], out, "--max-chars", "50", "--restart")]) == 0
    assert len(read_cluener(out)[0]) == 3
    assert json.loads((tmp_path / "full.json.run.json").read_text())["settings"]["max_chars"] == 50
    # parts from another run, no run record: refused, not mixed in
    parts = tmp_path / "p.json.parts"
    parts.mkdir()
    (parts / "rank-0.jsonl").write_text(json.dumps({"id": "a", "text": GOLD[0]["text"], "label": {}}) + "\n")
    assert main(["extract", *_extract(ctx, ctx["gold"], tmp_path / "p.json")]) == 1
    assert "p.json.parts exists but was not written" in capsys.readouterr().err


def test_unavailable_device_fails_before_anything_is_discarded(ctx, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the case is a CPU-only machine asked for --device cuda")
    before = ctx["done"].read_bytes()
    assert main(["extract", *_extract(ctx, ctx["gold"], ctx["done"], "--device", "cuda", "--restart")]) == 2
    assert "--device cuda: no CUDA GPU" in capsys.readouterr().err
    assert ctx["done"].read_bytes() == before  # --restart did not discard the results before the failure
    # serve loads through the same check: one line, no traceback from inside torch
    assert main(["serve", "--model", str(ctx["model"]), "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA GPU" in capsys.readouterr().err
    assert main(["serve", "--model", str(ctx["model"]), "--load-in-4bit"]) == 2
    assert "--load-in-4bit needs a CUDA GPU" in capsys.readouterr().err


def test_unreachable_server_fails_before_anything_is_discarded(ctx, capsys):
    """--backend openai checks the server before --restart clears the earlier results. The served
    model's name may be a path on the server (vLLM's default): it is not looked for here."""
    closed = f"http://127.0.0.1:{free_port()}/v1"
    before = ctx["done"].read_bytes()
    arguments = ["extract", "--backend", "openai", "--base-url", closed, "--served-model", "/models/qwen-ner"]
    arguments += ["--input", str(ctx["gold"]), "--output", str(ctx["done"]), "--retries", "0", "--restart", "--quiet"]
    assert main(arguments) == 1
    assert "cannot reach an OpenAI-compatible server" in capsys.readouterr().err
    assert ctx["done"].read_bytes() == before


def test_fingerprint_sees_retrained_weights(ctx, tmp_path):
    from llm_ner.extraction import directory_identity

    model = tmp_path / "m"
    shutil.copytree(ctx["model"], model)
    before = directory_identity(str(model))
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert directory_identity(str(model)) != before
    assert directory_identity("Qwen/Qwen2.5-0.5B-Instruct") is None  # a hub id: the name is the identity


# ---------------------------------------------------------------------------------------------
# 3, 4: atomic writes


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "pred.json"
    write_cluener([Example("0", "张三", [Span(0, 2, "name")])], path)
    before = path.read_bytes()

    def failing():
        yield Example("1", "李四")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_cluener(failing(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.json"]  # no temporary file left


def test_failed_report_rerun_leaves_the_old_report(ctx, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["report", "--gold", str(ctx["gold"]), "--pred", f"x={ctx['done']}", "--out", str(out), "--resamples", "20"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.md", "report.json", "f1_per_class.png", "report.html", "confusion_x.png"} <= set(before)
    assert main([*args, "--pred", f"y={ctx['done']}", "--published", str(ctx["published_no_f1"])]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# 5, 7: reading


@pytest.mark.parametrize(
    "lines",
    [
        ["彭 B-name", "小 I-name", "军 I-name", "说 O"],
        ["彭 \tB-name", "小 \tI-name", "军 \tI-name", "说 \tO"],  # char<space><tab>tag
        ["彭 B-name ", "小 I-name ", "军 I-name\t", "说 O "],  # trailing whitespace
        ["彭 NR B-name", "小 NR I-name", "军 NR I-name", "说 VV O"],  # CoNLL: char POS tag
    ],
    ids=["plain", "space-tab", "trailing-space", "three-columns"],
)
def test_bio_columns(tmp_path, lines):
    path = write_lines(tmp_path / "x.bio", lines)
    examples, report = read_bio(path)
    assert [(e.text, e.spans) for e in examples] == [("彭小军说", [Span(0, 3, "name")])]
    if "NR" in lines[0]:
        assert "first column as the character and the last as the tag" in report.warnings[0]
    else:
        assert not report.warnings


def test_bio_space_character_still_reads(tmp_path):
    path = write_lines(tmp_path / "x.bio", ["张 B-name", "三 I-name", "  O", "好 O"])
    assert read_bio(path)[0][0].text == "张三 好"


def test_plain_text_line_breaks_and_bom(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeff张三在北京\u2028工作\n李四\n".encode())
    examples = read_inputs(path)
    assert [(e.id, e.text) for e in examples] == [("0", "张三在北京\u2028工作"), ("1", "李四")]


# ---------------------------------------------------------------------------------------------
# 8: quiet scoring problems


def test_label_sets_that_do_not_meet_are_warned(ctx, capsys):
    assert main(["evaluate", "--gold", str(ctx["gold"]), "--pred", str(ctx["pred_name_vs_per"])]) == 0
    assert "warning: no predicted entity type is a gold type" in capsys.readouterr().out


def test_label_warnings_only_for_another_label_set():
    from llm_ner.metrics import label_warnings

    gold = [Example("0", "张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC")])]
    assert "no predicted entity type" in label_warnings(gold, [Example("0", "张三在北京", [Span(0, 2, "name")])])[0]
    half = [Example("0", "张三在北京", [Span(0, 2, "PER"), Span(3, 5, "address")])]
    assert "1 of 2 predicted spans" in label_warnings(gold, half)[0]
    few = [Example("0", "张三在北京", [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(2, 3, "x")])]
    assert label_warnings(gold, few) == []  # one stray type on a small slice is not worth a warning


def test_report_says_missing_predictions_on_the_console(ctx, tmp_path, capsys):
    partial = write_lines(tmp_path / "partial.json", [{"id": "a", "text": GOLD[0]["text"], "label": {}}])
    assert (
        main(
            [
                "report",
                "--gold",
                str(ctx["gold"]),
                "--pred",
                f"p={partial}",
                "--out",
                str(tmp_path / "r"),
                "--resamples",
                "10",
            ]
        )
        == 0
    )
    assert "warning: p: 2 of 3 gold sentences have no prediction" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 9: long texts


def test_long_text_pieces_respect_batch_size(tmp_path, monkeypatch):
    import llm_ner.generation as generation
    from llm_ner.backend import LocalBackend
    from llm_ner.extraction import ResumableOutput, extract, resolve_settings

    sizes = []

    def fake_generate(model, tokenizer, conversations, texts, batch_size, **_):
        sizes.append(len(texts))
        return ["[]"] * len(texts)

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    examples = [Example("long", "很长的句子。" * 50), Example("s1", "张三"), Example("s2", "李四")]
    settings = resolve_settings("model-not-loaded")
    extract(
        LocalBackend(None, None), examples, settings, tmp_path / "o.json", batch_size=4, max_chars=24, progress=False
    )
    assert max(sizes) <= 4 and sum(sizes) == 13 + 2  # 13 pieces of 4 sentences at most
    written = ResumableOutput(tmp_path / "o.json").done_records()
    assert set(written) == {"long", "s1", "s2"} and len(written["long"]["raw"]) == 13


def test_served_pieces_respect_the_batch_size(monkeypatch):
    """`llm-ner serve` splits long texts like extract; its generate batches stay at --max-batch rows."""
    import llm_ner.generation as generation
    from llm_ner.backend import LocalBackend
    from llm_ner.extraction import resolve_settings
    from llm_ner.serve import Engine

    calls = []

    def fake_generate(model, tokenizer, conversations, texts, batch_size, **_):
        calls.append((len(texts), batch_size))
        return ["[]"] * len(texts)

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    backend = LocalBackend(None, None, batch_size=4, token_scores=False)
    engine = Engine(backend, resolve_settings("model-not-loaded"), max_chars=24)
    results = engine.run(["很长的句子。" * 50, "张三"])
    assert calls == [(14, 4)] and len(results) == 2 and len(results[0]["raw"]) == 13
