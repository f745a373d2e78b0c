"""Every reader against random input (hypothesis, derandomized: the same inputs on every run).

Each generated file goes to every reader: `load_examples` for each format of the registry,
`read_inputs` for each sentence format and ``auto``, and `read_annotations` (with scores), each
strict and ``lenient``. The outcome must be examples that are text (UTF-8 encodable, spans inside
it) or a `DataError` naming the file and the line (a skipped record names its line too): never any
other exception. The inputs: random bytes built from JSON-ish pieces, and valid records of each
format with one value anywhere replaced by JSON that text cannot be (lone surrogates, nesting deep
enough for a RecursionError, integers of more digits than Python converts, NaN, numbers out of
range) or by a value of another type.
"""

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_ner.data import FORMATS, load_examples, read_annotations, read_inputs
from llm_ner.errors import DataError


class Raw(str):
    """JSON text put into a file as it is (what `json.dumps` cannot write: 5000 digits, NaN, ...)."""


def nested(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


# JSON no record can be, and values of the wrong type for any field
ADVERSARIAL = [
    "\ud800",
    "a\udfffb",
    "\udc00\ud800",
    Raw('"\\uDBFF"'),
    Raw("9" * 5000),
    Raw("-" + "1" * 4301),
    Raw("NaN"),
    Raw("-Infinity"),
    Raw("1e999"),
    nested(101),  # one more than json_values.MAX_DEPTH
    nested(3000),
    Raw('{"a": ' * 200 + "1" + "}" * 200),
    10**60,
    Raw("1" + "0" * 400),  # an integer, but too large for a float (a score)
    -1,
    0.0,
    1.5,
    True,
    False,
    None,
    "",
    "0",
    [],
    {},
    [[]],
    [0, 1],
    [0, 1, 2],
    {"name": 5},
    ["name"],
    [{"name": 5}],
]
KEYS = ["text", "id", "label", "data", "annotations", "predictions", "result", "value", "start", "end", "labels"]
KEYS += ["entities", "start_offset", "end_offset", "scores", "score", "type", "was_cancelled", "name", "张三"]

leaves = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.integers(-3, 5),
    st.text(max_size=6),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    max_leaves=8,
)

# One valid record per format (CLUENER ends are inclusive; Label Studio and doccano exclusive)
BASE = [
    {"id": "a", "text": "张三在北京", "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}},
    {"id": 7, "text": "张三在北京", "label": [[0, 2, "name"], [3, 5, "address"]], "scores": [0.9, 0.5]},
    {"text": "张三", "entities": [{"start_offset": 0, "end_offset": 2, "label": "name"}]},
    {
        "id": 3,
        "data": {"text": "张三在北京", "id": "t"},
        "annotations": [
            {"result": [{"type": "labels", "value": {"start": 0, "end": 2, "text": "张三", "labels": ["name"]}}]}
        ],
        "predictions": [{"score": 0.5, "result": [{"value": {"start": 3, "end": 5, "labels": ["address"]}}]}],
    },
]


def dump(value: object, ascii_only: bool) -> str:
    """JSON text of ``value``; `Raw` parts as they are; strings with surrogates always as escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dump(str(k), ascii_only)}: {dump(v, ascii_only)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, str) and re.search("[\ud800-\udfff]", value):
        ascii_only = True  # a lone surrogate can only be written as an escape
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def mutated_record(draw) -> str:
    """A valid record of some format with one value (at any depth) replaced, removed or added."""
    record = json.loads(json.dumps(draw(st.sampled_from(BASE))))
    node = record
    while True:  # walk down to a random container
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not containers or draw(st.integers(0, 2)) == 0:
            break
        _, node = draw(st.sampled_from(containers))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if action == "remove" and keys:
        del node[draw(st.sampled_from(keys))]
    elif action == "add" and isinstance(node, dict):
        node[draw(st.sampled_from(KEYS))] = draw(values)
    elif action == "add":
        node.append(draw(values))
    elif keys:
        node[draw(st.sampled_from(keys))] = draw(values)
    return dump(record, draw(st.booleans()))


@st.composite
def json_file(draw) -> bytes:
    """JSON lines (or a JSON array) of valid and mutated records, sometimes a bare value or a bad line."""
    good = st.sampled_from(BASE).map(lambda r: dump(r, False))
    lines = draw(
        st.lists(
            st.one_of(mutated_record(), good, values.map(lambda v: dump(v, True)), st.just("")),
            min_size=1,
            max_size=4,
        )
    )
    if draw(st.booleans()) and draw(st.booleans()):
        text = "[\n" + ",\n".join(line or "{}" for line in lines) + "\n]\n"
    else:
        text = "\n".join(lines) + "\n"
    data = text.encode("utf-8")
    if draw(st.integers(0, 5)) == 0:  # a byte that is not UTF-8 somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
    return data


PIECES = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\n", b" ", b"\\u", b"d800", b"dc00", b"\\", b"0", b"9" * 4400]
PIECES += [b"NaN", b"1e999", b"true", b'"text"', b'"label"', b'"data"', b"\xff", b"\xef\xbb\xbf", b"\xe5\xbc\xa0"]
PIECES += [b"B-name", b"I-name", b"O", b"\t", b"\r", b"[" * 2000, "张 B-name\n三 I-name\n".encode()]
random_bytes = st.one_of(st.binary(max_size=64), st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join))


def _readers():
    """(name, read(path, lenient) -> (examples, report or None)) for every reader."""

    def labelled(name):
        return lambda path, lenient: load_examples(path, name, lenient=lenient)

    def sentences(name):
        return lambda path, lenient: (read_inputs(path, name, lenient=lenient), None)

    def annotations(name):
        return lambda path, lenient: read_annotations(path, name, lenient=lenient, scores={})

    readers = [(f"load_examples {fmt.name}", labelled(fmt.name)) for fmt in FORMATS if fmt.labelled]
    readers += [(f"read_inputs {fmt.name}", sentences(fmt.name)) for fmt in FORMATS]
    readers += [("load_examples auto", labelled("auto")), ("read_inputs auto", sentences("auto"))]
    readers += [(f"read_annotations {name}", annotations(name)) for name in ("labelstudio", "doccano")]
    return readers


READERS = _readers()
WHERE = re.compile(r"^(\d+|record \d+)$")


def check_every_reader(data: bytes, counts: dict[str, int]) -> None:
    """Feed ``data`` (as a file) to every reader, strict and lenient; count calls and errors in ``counts``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        path.write_bytes(data)
        counts["files"] += 1
        for name, read in READERS:
            for lenient in (False, True):
                counts["calls"] += 1
                try:
                    examples, report = read(path, lenient)
                except DataError as error:
                    counts["errors"] += 1
                    assert error.path == str(path), (name, str(error))
                    assert error.line is not None or error.reason.startswith("empty file"), (name, str(error))
                    assert "\n" not in str(error), (name, str(error))
                    str(error).encode("utf-8")  # printable: no lone surrogate in the message
                    continue
                for example in examples:
                    example.text.encode("utf-8")  # text: no lone surrogate
                    example.id.encode("utf-8")
                    for span in example.spans:
                        assert 0 <= span.start < span.end <= len(example.text), (name, example)
                        assert isinstance(span.label, str) and span.label, (name, example)
                        span.label.encode("utf-8")
                assert len({example.id for example in examples}) == len(examples), name
                for error in report.skipped if report is not None else ():
                    assert lenient and WHERE.match(str(error.line)), (name, str(error))
                    str(error).encode("utf-8")


def run(strategy, examples: int) -> dict[str, int]:
    """Check ``examples`` inputs drawn from ``strategy`` (derandomized: the same on every run)."""
    counts = {"files": 0, "calls": 0, "errors": 0}

    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def each(data):
        check_every_reader(data, counts)

    each()
    return counts


def test_json_records_text_cannot_be_give_data_errors_with_their_line():
    counts = run(json_file(), 200)
    assert counts["files"] >= 200 and counts["calls"] >= 200 * 2 * len(READERS), counts
    assert 0.2 < counts["errors"] / counts["calls"] < 0.95, counts  # both outcomes, often
    print(f"\n{counts}")


def test_random_bytes_give_data_errors_with_their_line():
    counts = run(random_bytes, 100)
    assert counts["files"] >= 100, counts
    assert 0.2 < counts["errors"] / counts["calls"] < 0.95, counts
    print(f"\n{counts}")
