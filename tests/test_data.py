import json
import os
import stat

import pytest

from llm_ner.data import (
    Example,
    Span,
    detect_scheme,
    load_examples,
    read_bio,
    read_cluener,
    spans_to_tags,
    tags_to_spans,
    write_bio,
    write_cluener,
)
from llm_ner.errors import DataError

LABELS = ["name", "company", "address"]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(text, label):
    return json.dumps({"text": text, "label": label}, ensure_ascii=False)


GOOD = record("浙商银行的叶老桂说", {"company": {"浙商银行": [[0, 3]]}, "name": {"叶老桂": [[5, 7]]}})


def test_read_cluener_converts_inclusive_ends(tmp_path):
    path = write_lines(tmp_path / "a.json", [GOOD, record("无实体", {})])
    examples, report = read_cluener(path, labels=LABELS)
    assert [ex.id for ex in examples] == ["0", "1"]
    assert examples[0].spans == [Span(0, 4, "company"), Span(5, 8, "name")]
    assert [examples[0].mention(s) for s in examples[0].spans] == ["浙商银行", "叶老桂"]
    assert examples[1].spans == []
    assert report.records == 2 and not report.skipped and not report.warnings


def test_read_cluener_keeps_ids_and_repeated_mentions(tmp_path):
    line = json.dumps(
        {"id": 7, "text": "北京和北京", "label": {"address": {"北京": [[0, 1], [3, 4]]}}}, ensure_ascii=False
    )
    examples, _ = read_cluener(write_lines(tmp_path / "a.json", [line]))
    assert examples[0].id == "7"
    assert examples[0].spans == [Span(0, 2, "address"), Span(3, 5, "address")]


def test_label_field_is_optional(tmp_path):
    path = write_lines(tmp_path / "a.json", [json.dumps({"text": "没有标注"}, ensure_ascii=False)])
    examples, _ = read_cluener(path)
    assert examples[0].spans == []


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"text": "abc", ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"label": {}}', 'missing "text"'),
        ('{"text": "abc", "label": []}', '"label" must be an object'),
        (record("叶老桂", {"person": {"叶老桂": [[0, 2]]}}), "unknown label 'person'"),
        (record("叶老桂", {"name": ["叶老桂"]}), "expected {entity"),
        (record("叶老桂", {"name": {"叶老桂": []}}), "non-empty list"),
        (record("叶老桂", {"name": {"叶老桂": [[0, "2"]]}}), "not [start, end] integers"),
        (record("叶老桂", {"name": {"叶老桂": [[0, 3]]}}), "outside the text"),
        (record("叶老桂", {"name": {"叶老桂": [[2, 1]]}}), "start is after end"),
        (record("叶老桂说", {"name": {"叶老桂": [[1, 3]]}}), "is '老桂说', not the entity string"),
    ],
)
def test_cluener_validation_errors_name_file_and_line(tmp_path, line, reason):
    path = write_lines(tmp_path / "bad.json", [GOOD, "", line])
    with pytest.raises(DataError) as info:
        read_cluener(path, labels=LABELS)
    assert str(info.value).startswith(f"{path}:3: ")
    assert reason in str(info.value)
    assert info.value.line == 3


def test_lenient_skips_and_reports_lines(tmp_path):
    bad = record("叶老桂", {"name": {"叶老桂": [[0, 5]]}})
    path = write_lines(tmp_path / "a.json", [GOOD, bad, GOOD, "{oops"])
    examples, report = read_cluener(path, labels=LABELS, lenient=True)
    assert len(examples) == 2
    assert [e.line for e in report.skipped] == [2, 4]
    assert "skipped 2 bad records at lines 2, 4" in report.summary()
    # Ids stay the record index in the file, so predictions still match gold after a skip.
    assert [ex.id for ex in examples] == ["0", "2"]


def test_empty_file_is_an_error_unless_allowed(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        read_cluener(path)
    examples, report = read_cluener(path, allow_empty=True)
    assert examples == [] and report.records == 0
    with pytest.raises(DataError, match="empty file"):
        read_bio(path)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "gbk.json"
    path.write_bytes(GOOD.encode() + b"\n" + '{"text": "中文"}'.encode("gbk") + b"\n")
    with pytest.raises(DataError, match=r"gbk.json:2: not valid UTF-8"):
        read_cluener(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read file"):
        read_cluener(tmp_path / "nope.json")


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n")
    examples, _ = read_cluener(path)
    assert examples[0].text == "浙商银行的叶老桂说"


def test_overlapping_spans_are_kept_and_reported(tmp_path):
    line = record("《招商银行年报》", {"book": {"《招商银行年报》": [[0, 7]]}, "company": {"招商银行": [[1, 4]]}})
    examples, report = read_cluener(write_lines(tmp_path / "a.json", [line]))
    assert len(examples[0].spans) == 2
    assert len(report.warnings) == 1 and "a.json:1: overlapping spans" in report.warnings[0]


def test_cluener_write_read_round_trip(tmp_path, cluener_dev):
    path = tmp_path / "dev.json"
    assert write_cluener(cluener_dev, path) == len(cluener_dev)
    again, _ = read_cluener(path)
    assert [(e.id, e.text, e.spans) for e in again] == [(e.id, e.text, e.spans) for e in cluener_dev]


# ---------------------------------------------------------------------------------------------
# Tags


@pytest.mark.parametrize("scheme", ["bio", "bioes", "bmes"])
def test_tags_round_trip(scheme):
    spans = [Span(0, 1, "PER"), Span(1, 4, "LOC"), Span(4, 6, "LOC"), Span(7, 8, "ORG")]
    tags = spans_to_tags(9, spans, scheme)
    assert tags_to_spans(tags, scheme) == spans
    assert detect_scheme(tags) == scheme


def test_tag_rendering_per_scheme():
    spans = [Span(0, 3, "X"), Span(3, 4, "Y")]
    assert spans_to_tags(5, spans, "bio") == ["B-X", "I-X", "I-X", "B-Y", "O"]
    assert spans_to_tags(5, spans, "bioes") == ["B-X", "I-X", "E-X", "S-Y", "O"]
    assert spans_to_tags(5, spans, "bmes") == ["B-X", "M-X", "E-X", "S-Y", "O"]


def test_overlapping_spans_cannot_become_tags():
    with pytest.raises(ValueError, match="overlapping"):
        spans_to_tags(5, [Span(0, 3, "X"), Span(1, 2, "Y")])


@pytest.mark.parametrize(
    "tags, scheme, reason",
    [
        (["O", "I-PER"], "bio", "I-PER with no B-PER before it"),
        (["B-PER", "I-LOC"], "bio", "I-LOC continues a PER entity"),
        (["B-PER", "I-PER", "O"], "bioes", "not closed by E-"),
        (["B-PER", "I-PER"], "bioes", "not closed by E-"),
        (["O", "E-PER"], "bioes", "E-PER with no B-PER"),
        (["B-PER", "I-PER", "E-PER"], "bmes", "prefix I- is not part of the BMES scheme"),
        (["PER"], "bio", "malformed tag"),
        (["S-PER"], "bio", "prefix S- is not part of the BIO scheme"),
    ],
)
def test_invalid_tag_sequences(tags, scheme, reason):
    with pytest.raises(ValueError, match=reason):
        tags_to_spans(tags, scheme)


def test_read_bio_file(tmp_path):
    path = write_lines(
        tmp_path / "msra.txt",
        [
            "张 B-PER",
            "三 I-PER",
            "在 O",
            "北 B-LOC",
            "京 I-LOC",
            "",
            "  O",
            "中\tB-ORG",
            "共 I-ORG",
            "",
        ],
    )
    examples, report = read_bio(path)
    assert [ex.text for ex in examples] == ["张三在北京", " 中共"]
    assert examples[0].spans == [Span(0, 2, "PER"), Span(3, 5, "LOC")]
    assert examples[1].spans == [Span(1, 3, "ORG")]
    assert report.records == 2


def test_read_bio_multi_character_tokens_keep_char_offsets(tmp_path):
    path = write_lines(tmp_path / "mixed.txt", ["iPhone B-PRODUCT", "在 O", "Apple B-ORG", "卖 O"])
    examples, _ = read_bio(path)
    ex = examples[0]
    assert ex.text == "iPhone在Apple卖"
    assert [ex.mention(s) for s in ex.spans] == ["iPhone", "Apple"]


def test_read_bio_error_names_the_tag_line(tmp_path):
    path = write_lines(tmp_path / "bad.txt", ["张 B-PER", "三 I-PER", "", "在 O", "京 I-LOC", ""])
    with pytest.raises(DataError) as info:
        read_bio(path)
    assert str(info.value).startswith(f"{path}:5: ") and "I-LOC with no B-LOC" in str(info.value)
    examples, report = read_bio(path, lenient=True)
    assert [ex.text for ex in examples] == ["张三"] and [e.line for e in report.skipped] == [5]


def test_read_bio_malformed_line_and_unknown_label(tmp_path):
    path = write_lines(tmp_path / "bad.txt", ["张 B-PER", "三", ""])
    with pytest.raises(DataError, match=r"bad.txt:2: expected 'CHAR TAG'"):
        read_bio(path)
    path = write_lines(tmp_path / "lab.txt", ["张 B-PER", "三 I-PER", "在 O", "京 B-GPE", ""])
    with pytest.raises(DataError, match=r"lab.txt:4: unknown label 'GPE'"):
        read_bio(path, labels=["PER", "LOC"])


@pytest.mark.parametrize("scheme", ["bio", "bioes", "bmes"])
def test_bio_write_read_round_trip_on_cluener_dev(tmp_path, cluener_dev, scheme):
    path = tmp_path / f"dev.{scheme}"
    assert write_bio(cluener_dev, path, scheme) == len(cluener_dev)
    again, _ = load_examples(path)  # auto: detects the tag file and its scheme
    assert [(e.text, e.spans) for e in again] == [(e.text, e.spans) for e in cluener_dev]


def test_write_bio_refuses_line_breaks(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        write_bio([Example("0", "a\nb", [])], tmp_path / "x.txt")


def test_load_examples_guesses_format(tmp_path):
    cl = write_lines(tmp_path / "a.json", [GOOD])
    bio = write_lines(tmp_path / "a.txt", ["张 S-PER", "三 O"])
    assert load_examples(cl)[0][0].spans[0].label == "company"
    assert load_examples(bio)[0][0].spans == [Span(0, 1, "PER")]
    with pytest.raises(ValueError, match="unknown input format"):
        load_examples(cl, "xml")


def test_outputs_get_the_mode_a_plain_open_gives(tmp_path):
    """Atomic writes go through mkstemp (0600); the renamed output must be 0666 less the umask,
    like `open(path, "w")`, or predictions and reports become private to their owner."""
    from llm_ner.data import write_annotations, write_text_atomic

    old = os.umask(0o022)
    try:
        examples = [Example("0", "张三在北京", [Span(0, 2, "name")])]
        write_cluener(examples, tmp_path / "a.json")
        write_annotations(examples, tmp_path / "b.json", "labelstudio")
        write_text_atomic("x", tmp_path / "c.txt")
        for name in ("a.json", "b.json", "c.txt"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    finally:
        os.umask(old)


def test_an_assigned_id_may_not_repeat_a_given_one(tmp_path):
    """A record without an id gets its index; if another record was given that id, evaluate would
    match two sentences to one: refused with both places named."""
    path = tmp_path / "ids.json"
    write_lines(path, ['{"id": "1", "text": "甲"}', '{"text": "乙"}'])
    with pytest.raises(DataError, match=r"ids.json:2: duplicate id '1' \(first at line 1\)"):
        read_cluener(path)
    write_lines(path, ['{"text": "甲"}', '{"id": "0", "text": "乙"}'])
    with pytest.raises(DataError, match=r"ids.json:2: duplicate id '0' \(first at line 1\)"):
        read_cluener(path)
    assert [e.id for e in read_cluener(path, lenient=True)[0]] == ["0"]


# ---------------------------------------------------------------------------------------------
# The format registry


def test_format_choices_come_from_the_registry_in_order():
    from llm_ner.data import FORMATS, INPUT_FORMATS, SENTENCE_INPUT_FORMATS

    assert INPUT_FORMATS == ("auto", "cluener", "bio", "bioes", "bmes", "labelstudio", "doccano")
    sentence_formats = ("auto", "text", "jsonl", "cluener", "bio", "bioes", "bmes", "labelstudio", "doccano")
    assert sentence_formats == SENTENCE_INPUT_FORMATS
    assert [fmt.name for fmt in FORMATS] == list(SENTENCE_INPUT_FORMATS[1:])


def test_every_writable_format_reads_back_what_it_writes(tmp_path):
    from llm_ner.data import FORMATS, get_format

    examples = [Example("0", "张三在北京", [Span(0, 2, "name"), Span(3, 5, "address")]), Example("1", "李四", [])]
    writable = [fmt for fmt in FORMATS if fmt.write is not None]
    assert {fmt.name for fmt in writable} >= {"cluener", "bio", "bioes", "bmes", "labelstudio", "doccano"}
    for fmt in writable:
        path = tmp_path / f"out.{fmt.name}"
        assert fmt.write(examples, path) == 2
        again, report = get_format(fmt.name).read(path)
        assert again == examples, fmt.name
        assert report.records == 2


def test_auto_recognises_sentences_and_labelled_data(tmp_path):
    from llm_ner.data import guess_format, read_inputs

    cl = write_lines(tmp_path / "a.json", [GOOD])
    tags = write_lines(tmp_path / "t.txt", ["张 B-PER", "三 I-PER"])
    text = write_lines(tmp_path / "s.txt", ["张三在北京", "李四"])
    assert [guess_format(p) for p in (cl, tags, text)] == ["cluener", "bio", "bio"]
    assert [guess_format(p, sentences=True) for p in (cl, tags, text)] == ["jsonl", "bio", "text"]
    assert [e.text for e in read_inputs(text)] == ["张三在北京", "李四"]
    with pytest.raises(ValueError, match="unknown input format 'text'"):
        load_examples(text, "text")  # sentences only: no labels to load


def test_a_module_in_the_formats_package_is_a_new_format(tmp_path, monkeypatch):
    """The registry finds formats by listing the package's modules: one new file is a new format."""
    import sys

    from llm_ner.data import formats

    (tmp_path / "toy.py").write_text(
        "from llm_ner.data.formats._base import InputFormat\n"
        "from llm_ner.data.types import Example, LoadReport\n"
        "def read(path, labels=None, lenient=False, allow_empty=False):\n"
        "    return [Example('0', 'toy')], LoadReport(str(path), records=1)\n"
        "FORMATS = (InputFormat('toy', order=70, read=read),)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(formats, "__path__", [*formats.__path__, str(tmp_path)])
    try:
        found = formats._discover()
    finally:
        sys.modules.pop("llm_ner.data.formats.toy", None)
    assert [fmt.name for fmt in found][-3:] == ["labelstudio", "doccano", "toy"]
    assert found[-1].read(tmp_path / "x")[0] == [Example("0", "toy")]


# ---------------------------------------------------------------------------------------------
# json_values: the JSON a record can be


def test_decode_json_refuses_what_text_cannot_be_and_says_the_line():
    from llm_ner.data import JsonSyntaxError, JsonValueError, decode_json
    from llm_ner.data.json_values import MAX_DEPTH

    assert decode_json('{"text": "\\ud83d\\ude00 \\\\ud800"}') == {"text": "😀 \\ud800"}  # a pair; an escaped "\"
    assert decode_json(b'\xef\xbb\xbf{"a": [1, 2.5]}\n') == {"a": [1, 2.5]}  # bytes, BOM
    assert decode_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    cases = [
        ('{"a":\n\n"\\udc00"}', 3, "lone surrogate \\udc00"),
        ('{"a":\n[' + "[" * 200 + "]" * 200 + "]}", 2, f"nested deeper than {MAX_DEPTH} levels"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), 1, "nested deeper"),
        ("\n" + "[" * 100_000, 2, "nested deeper"),  # Python's own limit, before any syntax error
        ('{"a": 1,\n "b": ' + "7" * 5000 + "}", 1, "an integer of more than 4300 digits"),
        ('{"a": -Infinity}', 1, "-Infinity is not a JSON value"),
        ('{"a": 1e400}', 1, "number '1e400' is out of range"),
        (b'{"a":\n "\xc3"}', 2, "not valid UTF-8"),
        ('{"a": 1}\n{"b": 2}', 2, "invalid JSON (Extra data at column 1)"),
        ('{"a": }', 1, "invalid JSON (Expecting value at column 7)"),
    ]
    for text, line, reason in cases:
        with pytest.raises(JsonValueError) as info:
            decode_json(text)
        assert (info.value.line, info.value.reason[: len(reason)]) == (line, reason), text[:30]
    with pytest.raises(JsonSyntaxError):
        decode_json("{")


def test_array_items_gives_lines_and_keeps_going_past_a_bad_item():
    from llm_ner.data import JsonValueError
    from llm_ner.data.json_values import array_items

    items = list(array_items('[\n {"a": 1},\n "\\ud800",\n\n [2]\n]\n'))
    assert [line for line, _ in items] == [2, 3, 5]
    assert items[0][1] == {"a": 1} and items[2][1] == [2]
    assert isinstance(items[1][1], JsonValueError) and "lone surrogate" in str(items[1][1])
    assert list(array_items(" [ ] ")) == []
    for text, line in [("[1,\n2 3]", 2), ("[1,\n]", 2), ("[1]\n]", 2), ("{}", 1), ("[1,\n" + "[" * 5000, 2)]:
        with pytest.raises(JsonValueError) as info:
            list(array_items(text))
        assert info.value.line == line, text[:20]


def test_check_value_walks_shared_and_cyclic_yaml_once():
    """YAML aliases share containers (a "billion laughs" must not take a billion steps) or hold themselves."""
    import time

    from llm_ner.data import JsonValueError, check_value

    laughs: list = ["lol"]
    for _ in range(22):
        laughs = [laughs, laughs]  # 4 million leaves if walked as a tree (seconds), 23 lists if not
    started = time.perf_counter()
    check_value(laughs)
    assert time.perf_counter() - started < 0.5
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(JsonValueError, match="nested deeper"):
        check_value(cycle)
    with pytest.raises(JsonValueError, match="lone surrogate"):
        check_value({1: [{"k\udfff": 2}]})  # YAML keys may be numbers; string keys are checked


def test_show_keeps_messages_short():
    from llm_ner.data import show

    assert len(show("长" * 10_000)) < 80 and len(show(10**4000)) < 60
    deep: list = []
    for _ in range(50):
        deep = [deep]
    assert len(show(deep)) < 40 and show(["a", 1]) == "['a', 1]"


def test_readers_read_real_data_as_before(cluener_dir):
    """The checks cost little and change nothing on valid data (CLUENER dev, or the sample)."""
    import time

    path = cluener_dir / "dev.json"
    started = time.perf_counter()
    examples, report = read_cluener(path)
    elapsed = time.perf_counter() - started
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [ex.text for ex in examples] == [r["text"] for r in lines] and not report.skipped
    print(f"\nread {len(examples)} records of {path} in {elapsed * 1000:.0f} ms")
