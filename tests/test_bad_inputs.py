"""Bad inputs and unlucky reruns, command by command: each case is a row of CASES (arguments, the
expected exit code, a fragment of the one-line error), run in-process through `llm_ner.cli.main`.
A new command gets checked the same way by adding rows. Behaviour that needs more than an exit code
(data kept, files untouched, text read right) has its own test below the table."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import one_layer_qwen3
from harness import free_port

from llm_ner.cli import build_parser, main
from llm_ner.data import Example, Span, load_examples, read_bio, read_cluener, read_inputs, write_cluener
from llm_ner.errors import DataError
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
    c["model"] = one_layer_qwen3(root / "tiny", [g["text"] for g in GOLD])
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


# ---------------------------------------------------------------------------------------------
# Records JSON allows but text cannot be (lone surrogates, nesting too deep for Python, integers
# too long to convert, NaN), not UTF-8, or of the wrong type at any level: every reader says
# FILE:LINE: reason (the bad record is line 2, after a good one), never a traceback.

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000  # more digits than Python converts (4300)
LONG = "9" * 60  # converts, but is no offset (and is shown cut short)
NESTED = "nested deeper than 100 levels"
LONE = "lone surrogate \\ud800"
TOO_LONG = "an integer of more than 4300 digits"

GOOD_RECORD = {
    "cluener": '{"text": "张三", "label": {"name": {"张三": [[0, 1]]}}}',
    "doccano": '{"text": "张三", "label": [[0, 2, "name"]]}',
    "labelstudio": '{"data": {"text": "张三"}, "annotations": [{"result": [{"type": "labels", "value": '
    '{"start": 0, "end": 2, "text": "张三", "labels": ["name"]}}]}]}',
}


def _ls(value: str = '{"start": 0, "end": 2, "labels": ["name"]}', data: str = '{"text": "张三"}', **task) -> str:
    """A Label Studio task line with one result ``value`` (JSON text) and ``data``; ``task`` adds fields (JSON text)."""
    extra = "".join(f', "{k}": {v}' for k, v in task.items())
    return f'{{"data": {data}, "annotations": [{{"result": [{{"type": "labels", "value": {value}}}]}}]{extra}}}'


# format -> (case, the bad record's line (bytes: written as they are), fragment of the reason)
BAD_RECORDS = {
    "cluener": [
        ("surrogate in text", r'{"text": "\ud800张三"}', LONE),
        ("surrogate in a type", r'{"text": "张三", "label": {"\ud800": {"张三": [[0, 1]]}}}', LONE),
        ("surrogate in the id", r'{"id": "\ud800", "text": "张三"}', LONE),
        ("nested line", DEEP, NESTED),
        ("nested field", '{"text": "张三", "meta": ' + DEEP + "}", NESTED),
        ("integer too long", '{"text": "张三", "label": {"name": {"张三": [[0, ' + HUGE + "]]}}}", TOO_LONG),
        ("NaN", '{"text": "张三", "score": NaN}', "NaN is not a JSON value"),
        ("number out of range", '{"text": "张三", "score": 1e999}', "number '1e999' is out of range"),
        ("text a number", '{"text": 5}', 'missing "text" string (found int 5)'),
        ("text a list", '{"text": ["张三"]}', 'missing "text" string (found list'),
        ("id a list", '{"id": [1], "text": "张三"}', '"id" must be a string or an integer, got list [1]'),
        ("id a bool", '{"id": true, "text": "张三"}', '"id" must be a string or an integer, got bool'),
        ("type not an object", '{"text": "张三", "label": {"name": 5}}', "label 'name': expected {entity"),
        (
            "offsets a number",
            '{"text": "张三", "label": {"name": {"张三": 5}}}',
            "name '张三': expected a non-empty list of [start, end], got 5",
        ),
        (
            "float offset",
            '{"text": "张三", "label": {"name": {"张三": [[0.0, 1]]}}}',
            "name '张三': offsets [0.0, 1] are not",
        ),
        (
            "string offset",
            '{"text": "张三", "label": {"name": {"张三": [["0", 1]]}}}',
            "name '张三': offsets ['0', 1] are",
        ),
        (
            "bool offset",
            '{"text": "张三", "label": {"name": {"张三": [[false, true]]}}}',
            "name '张三': offsets [False, True] are not [start, end] integers",
        ),
        (
            "long offset",
            '{"text": "张三", "label": {"name": {"张三": [[0, ' + LONG + "]]}}}",
            "name '张三': offsets [0, 9999",
        ),
        ("empty type", '{"text": "张三", "label": {"": {"张三": [[0, 1]]}}}', '"label" has an empty type name'),
        ("not UTF-8", b'{"text": "\xff"}', "not valid UTF-8"),
    ],
    "doccano": [
        ("surrogate in text", r'{"text": "\ud800张三"}', LONE),
        ("surrogate in a type", r'{"text": "张三", "label": [[0, 2, "\ud800"]]}', LONE),
        ("nested field", '{"text": "张三", "meta": ' + DEEP + "}", NESTED),
        ("integer too long", '{"text": "张三", "label": [[0, ' + HUGE + ', "name"]]}', TOO_LONG),
        ("NaN score", '{"text": "张三", "label": [[0, 2, "name"]], "scores": [NaN]}', "NaN is not a JSON value"),
        ("text a number", '{"text": 5}', 'missing "text" string (found int 5)'),
        ("id an object", '{"id": {"a": 1}, "text": "张三"}', '"id" must be a string or an integer, got dict'),
        ("label an object", '{"text": "张三", "label": {"name": 5}}', '"label" must be a list'),
        ("type an object", '{"text": "张三", "label": [[0, 2, {"name": 5}]]}', "label {'name': 5} is not a non-empty"),
        ("float offset", '{"text": "张三", "label": [[0.0, 2, "name"]]}', "offsets 0.0, 2 are not integers"),
        ("string offset", '{"text": "张三", "label": [["0", 2, "name"]]}', "offsets '0', 2 are not integers"),
        ("bool offset", '{"text": "张三", "label": [[false, 2, "name"]]}', "offsets False, 2 are not integers"),
        ("long offset", '{"text": "张三", "label": [[0, ' + LONG + ', "name"]]}', "name [0, 999999999999999999...9"),
        ("entities a number", '{"text": "张三", "entities": 5}', '"entities" must be a list'),
        ("not UTF-8", b'{"text": "\xff"}', "not valid UTF-8"),
    ],
    "labelstudio": [
        ("surrogate in text", _ls(data=r'{"text": "\ud800张三"}'), LONE),
        ("surrogate in a type", _ls(r'{"start": 0, "end": 2, "labels": ["\ud800"]}'), LONE),
        ("nested field", _ls(data='{"text": "张三", "meta": ' + DEEP + "}"), NESTED),
        ("integer too long", _ls('{"start": 0, "end": ' + HUGE + ', "labels": ["name"]}'), TOO_LONG),
        ("NaN score", _ls(predictions='[{"score": NaN}]'), "NaN is not a JSON value"),
        ("annotations a number", '{"data": {"text": "张三"}, "annotations": 5}', '"annotations" must be a list'),
        ("predictions a string", '{"data": {"text": "张三"}, "predictions": "p"}', '"predictions" must be a list'),
        ("result a number", '{"data": {"text": "张三"}, "annotations": [{"result": 5}]}', '"result" must be a list'),
        ("text a number", _ls(data='{"text": 5}'), 'missing "data.text" string (found int 5)'),
        ("id a list", _ls(data='{"text": "张三", "id": [1]}'), '"id" must be a string or an integer'),
        (
            "type an object",
            _ls('{"start": 0, "end": 2, "labels": [{"name": 5}]}'),
            "result 1: label {'name': 5} is not a",
        ),
        (
            "float offset",
            _ls('{"start": 0.0, "end": 2, "labels": ["name"]}'),
            "result 1: offsets 0.0, 2 are not integers",
        ),
        ("string offset", _ls('{"start": "0", "end": 2, "labels": ["name"]}'), "result 1: offsets '0', 2 are not"),
        ("bool offset", _ls('{"start": 0, "end": true, "labels": ["name"]}'), "result 1: offsets 0, True are not"),
        (
            "long offset",
            _ls('{"start": 0, "end": ' + LONG + ', "labels": ["name"]}'),
            "result 1: name [0, 999999999999999999...9",
        ),
        ("not UTF-8", b'{"data": {"text": "\xff"}}', "not valid UTF-8"),
    ],
}


def bad_file(name: str, *lines: str | bytes):
    """The path of a file under the context's root holding ``lines`` (str as UTF-8, bytes as they are),
    written when the row runs."""

    def make(c) -> str:
        path = c["root"] / name
        path.write_bytes(b"".join((ln if isinstance(ln, bytes) else ln.encode("utf-8")) + b"\n" for ln in lines))
        return str(path)

    return make


def convert_bad(fmt: str, name: str, *lines: str | bytes):
    make = bad_file(name, *lines)
    return lambda c: ["convert", "--input", make(c), "--input-format", fmt, "--output", "o"]


def extract_bad(name: str, *lines: str | bytes, fmt: str = "auto"):
    make = bad_file(name, *lines)
    return lambda c: ["extract", *_extract(c, make(c), c["root"] / "o", "--input-format", fmt, "--limit", "1")]


def extract_prompt_bad(name: str, *lines: str | bytes):
    make = bad_file(name, *lines)
    return lambda c: ["extract", *_extract(c, c["gold"], c["root"] / "o", "--prompt", make(c))]


def extract_run_bad(name: str, record: str):
    """extract with a model directory whose run record (llm_ner.json) is ``record``."""

    def arguments(c) -> list[str]:
        (c["root"] / name).mkdir(exist_ok=True)
        (c["root"] / name / "config.json").write_text("{}")  # a model folder (extract checks), never loaded
        bad_file(f"{name}/llm_ner.json", record)(c)
        return ["extract", "--model", str(c["root"] / name), "--input", str(c["gold"]), "--output", "o"]

    return arguments


def _file_name(fmt: str, case: str) -> str:
    return f"{fmt}_{case.replace(' ', '_')}.json"


CASES += [
    (
        f"{fmt}: {case}",
        convert_bad(fmt, _file_name(fmt, case), GOOD_RECORD[fmt], line),
        1,
        f"{_file_name(fmt, case)}:2: {reason}",
    )
    for fmt, rows in BAD_RECORDS.items()
    for case, line, reason in rows
]
_LS_ARRAY_RECORD = [  # a Label Studio JSON array: a bad record is "record N"; JSON that cannot be decoded, its line
    ("surrogate", _ls(data=r'{"text": "\ud800张三"}'), f"ls_array_surrogate.json:record 2: {LONE}"),
    ("wrong type", '{"data": {"text": "张三"}, "annotations": 5}', 'ls_array_wrong_type.json:record 2: "annotations"'),
    ("nested", _ls(data='{"text": "张三", "meta": ' + DEEP + "}"), f"ls_array_nested.json:3: {NESTED}"),
    (
        "integer too long",
        _ls('{"start": 0, "end": ' + HUGE + ', "labels": ["name"]}'),
        f"ls_array_integer_too_long.json:3: {TOO_LONG}",
    ),
    ("NaN", _ls(predictions='[{"score": NaN}]'), "ls_array_NaN.json:3: NaN is not a JSON value"),
]
CASES += [
    (
        f"labelstudio array: {case}",
        convert_bad(
            "labelstudio", f"ls_array_{case.replace(' ', '_')}.json", "[", GOOD_RECORD["labelstudio"] + ",", line, "]"
        ),
        1,
        fragment,
    )
    for case, line, fragment in _LS_ARRAY_RECORD
]


def cli_bad(name: str, *lines: str | bytes, command=("convert", "--input", "{}", "--output", "o")):
    """A row's arguments: ``command`` with ``{}`` replaced by the path of the bad file and ``gold`` by the gold file."""
    make = bad_file(name, *lines)

    def arguments(c) -> list[str]:
        path = make(c)
        return [path if a == "{}" else str(c["gold"]) if a == "gold" else a for a in command]

    return arguments


EVALUATE = ("evaluate", "--gold", "gold", "--pred", "{}")
EXPORT = ("export", "{}", "--to", "labelstudio", "--output", "o")
BIO = ("convert", "--input", "{}", "--input-format", "bio", "--output", "o")
LS = ("convert", "--input", "{}", "--input-format", "labelstudio", "--output", "o")
CASES += [
    ("labelstudio array: not UTF-8", cli_bad("ls_utf8.json", "[", b'{"data": {"text": "\xff"}}', "]", command=LS),
     1, "ls_utf8.json:2: not valid UTF-8"),
    ("bio: not UTF-8", cli_bad("tags_utf8.bio", "张 B-name", "三 I-name", b"\xff O", command=BIO),
     1, "tags_utf8.bio:3: not valid UTF-8"),
    ("bio: nested JSON first", cli_bad("tags_nested.bio", DEEP, command=BIO), 1, "tags_nested.bio:1: this is JSON"),
    ("auto: nested JSON first", cli_bad("auto_nested.json", DEEP), 1, f"auto_nested.json:1: {NESTED}"),
    ("evaluate: surrogate in pred", cli_bad("pred_sur.json", r'{"id": "a", "text": "\ud800"}', command=EVALUATE),
     1, f"pred_sur.json:1: {LONE}"),
    ("export: nested pred", cli_bad("export_nested.json", GOOD_RECORD["cluener"], DEEP, command=EXPORT),
     1, f"export_nested.json:2: {NESTED}"),
    # extract: JSON lines with "text", and plain text
    ("extract: surrogate in text", extract_bad("x_sur.jsonl", '{"text": "张三"}', r'{"text": "\ud800"}'),
     1, f"x_sur.jsonl:2: {LONE}"),
    ("extract: nested", extract_bad("x_nested.jsonl", '{"text": "张三"}', DEEP), 1, f"x_nested.jsonl:2: {NESTED}"),
    ("extract: integer too long", extract_bad("x_huge.jsonl", '{"text": "张三", "n": ' + HUGE + "}", fmt="jsonl"),
     1, f"x_huge.jsonl:1: {TOO_LONG}"),
    ("extract: text a number", extract_bad("x_num.jsonl", '{"text": "张三"}', '{"text": 5}'),
     1, 'x_num.jsonl:2: missing "text" string (found int 5)'),
    ("extract: id an object", extract_bad("x_id.jsonl", '{"id": {}, "text": "张三"}'),
     1, 'x_id.jsonl:1: "id" must be a string or an integer'),
    ("extract: plain text not UTF-8", extract_bad("x_text.txt", "张三", b"\xff\xfe"),
     1, "x_text.txt:2: not valid UTF-8"),
    # the run record of a trained model's directory
    ("extract: run record nested", extract_run_bad("run_deep", DEEP), 1, f"llm_ner.json:1: {NESTED}"),
    ("extract: run record surrogate", extract_run_bad("run_sur", r'{"prompt": "\ud800"}'),
     1, f"llm_ner.json:1: {LONE}"),
    ("extract: run record integer too long", extract_run_bad("run_huge", '{"x": ' + HUGE + "}"),
     1, f"llm_ner.json:1: {TOO_LONG}"),
    # the prompt file
    ("extract: prompt nested", extract_prompt_bad("p_deep.yaml", "user: " + DEEP), 2, "p_deep.yaml: YAML nested too"),
    ("extract: prompt surrogate", extract_prompt_bad("p_sur.yaml", 'user: "\\ud800 {{ text }}"'),
     2, f"p_sur.yaml: {LONE}"),
    ("extract: prompt not UTF-8", extract_prompt_bad("p_utf8.yaml", b"user: \xff"),
     2, "p_utf8.yaml: 'utf-8' codec can't decode"),
]  # fmt: skip


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
    from llm_ner.extraction.resume import directory_identity

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


def _write_bytes(path: Path, lines) -> Path:
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else ln.encode("utf-8")) + b"\n" for ln in lines))
    return path


@pytest.mark.parametrize("fmt", sorted(BAD_RECORDS))
def test_lenient_skips_and_counts_every_record_text_cannot_be(fmt, tmp_path, capsys):
    """--lenient: each bad record of the table is skipped and named, the good ones are kept."""
    bad = [line for _, line, _ in BAD_RECORDS[fmt]]
    path = _write_bytes(tmp_path / "mixed.json", [GOOD_RECORD[fmt], *bad, GOOD_RECORD[fmt].replace("张三", "李四")])
    out = tmp_path / "o.jsonl"
    args = ["convert", "--input", str(path), "--input-format", fmt, "--output", str(out), "--lenient"]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = ", ".join(str(n) for n in range(2, len(bad) + 2))
    assert f"mixed.json: 2 records; skipped {len(bad)} bad records at lines {lines}" in err, err
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_lenient_label_studio_array_skips_bad_records_but_not_undecodable_json(tmp_path, capsys):
    records = [GOOD_RECORD["labelstudio"], *(line for case, line, _ in _LS_ARRAY_RECORD[:2])]
    path = _write_bytes(tmp_path / "tasks.json", ["[", ",\n".join(records), "]"])
    examples, report = load_examples(path, "labelstudio", lenient=True)
    assert [e.text for e in examples] == ["张三"]
    assert [str(e).split(": ", 1)[0] for e in report.skipped] == [f"{path}:record 2", f"{path}:record 3"]
    deep = _write_bytes(tmp_path / "deep.json", ["[", GOOD_RECORD["labelstudio"] + ",", _LS_ARRAY_RECORD[2][1], "]"])
    with pytest.raises(DataError, match=f"deep.json:3: {NESTED}"):  # no record after it can be found
        load_examples(deep, "labelstudio", lenient=True)


def test_lenient_sentence_inputs_skip_lines_that_are_not_text(tmp_path):
    """extract --lenient: a line that is not UTF-8 (plain text) or not a record (JSON lines) is skipped;
    the others keep the ids they have without it."""
    text = _write_bytes(tmp_path / "s.txt", ["张三", b"\xff\xfe", "", "李四"])
    assert [(e.id, e.text) for e in read_inputs(text, lenient=True)] == [("0", "张三"), ("2", "李四")]
    with pytest.raises(DataError, match="s.txt:2: not valid UTF-8"):
        read_inputs(text)
    lines = ['{"text": "张三"}', r'{"text": "\ud800"}', DEEP, '{"text": 1' + "0" * 5000 + "}", b'{"text": "\xff"}']
    jsonl = _write_bytes(tmp_path / "s.jsonl", [*lines, '{"text": "李四"}'])
    assert [(e.id, e.text) for e in read_inputs(jsonl, lenient=True)] == [("0", "张三"), ("5", "李四")]
    tags = _write_bytes(tmp_path / "s.bio", ["张 B-name", b"\xff O", "", "李 B-name", "四 I-name"])
    examples, report = load_examples(tags, "bio", lenient=True)
    assert [(e.id, e.text) for e in examples] == [("1", "李四")] and report.skipped[0].line == 2


def test_export_lenient_reads_scores_past_records_text_cannot_be(tmp_path, capsys):
    """export reads the prediction file twice (records, then scores): both skip the same bad lines."""
    good = {"id": "a", "text": "张三", "label": {"name": {"张三": [[0, 1]]}}, "scores": {"name": {"张三": [0.5]}}}
    bad = [line for _, line, _ in BAD_RECORDS["cluener"]]
    bad.append('{"text": "张三", "label": {"name": {"张三": [[0, "1"]]}}, "scores": {"name": {"张三": [1e300]}}}')
    pred = _write_bytes(tmp_path / "pred.json", [json.dumps(good, ensure_ascii=False), *bad])
    out = tmp_path / "ls.json"
    assert main(["export", str(pred), "--to", "labelstudio", "--output", str(out), "--lenient"]) == 0
    (task,) = json.loads(out.read_text(encoding="utf-8"))
    assert [r["score"] for r in task["predictions"][0]["result"]] == [0.5]
    assert f"skipped {len(bad)} bad records" in capsys.readouterr().err


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
    from llm_ner.backends import LocalBackend
    from llm_ner.extraction import Annotator, ResumableOutput, extract, resolve_settings

    sizes = []

    def fake_generate(model, tokenizer, conversations, texts, batch_size, **_):
        sizes.append(len(texts))
        return ["[]"] * len(texts)

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    examples = [Example("long", "很长的句子。" * 50), Example("s1", "张三"), Example("s2", "李四")]
    settings = resolve_settings("model-not-loaded")
    annotator = Annotator(LocalBackend(None, None), settings, max_chars=24)
    extract(annotator, examples, tmp_path / "o.json", batch_size=4, progress=False)
    assert max(sizes) <= 4 and sum(sizes) == 13 + 2  # 13 pieces of 4 sentences at most
    written = ResumableOutput(tmp_path / "o.json").done_records()
    assert set(written) == {"long", "s1", "s2"} and len(written["long"]["raw"]) == 13


def test_served_pieces_respect_the_batch_size(monkeypatch):
    """`llm-ner serve` splits long texts like extract; its generate batches stay at --max-batch rows."""
    import llm_ner.generation as generation
    from llm_ner.backends import LocalBackend
    from llm_ner.extraction import Annotator, resolve_settings
    from llm_ner.serving import serve_results

    calls = []

    def fake_generate(model, tokenizer, conversations, texts, batch_size, **_):
        calls.append((len(texts), batch_size))
        return ["[]"] * len(texts)

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    backend = LocalBackend(None, None, batch_size=4, token_scores=False)
    run = serve_results(Annotator(backend, resolve_settings("model-not-loaded"), max_chars=24))
    results = run(["很长的句子。" * 50, "张三"])
    assert calls == [(14, 4)] and len(results) == 2 and len(results[0]["raw"]) == 13
