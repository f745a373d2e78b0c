import json

import pytest

from llm_ner.answer_format import format_answer
from llm_ner.data import Example, Span
from llm_ner.prompting import load_prompt, resolve_prompt_path, to_conversation

CLUENER_KEYS = [
    "address",
    "book",
    "company",
    "game",
    "government",
    "movie",
    "name",
    "organization",
    "position",
    "scene",
]


def test_cluener_schema_follows_the_label_guide():
    prompt = load_prompt("cluener_zh")
    assert prompt.schema.keys == CLUENER_KEYS
    names = {t.key: t.name for t in prompt.schema.types}
    assert names["government"] == "政府" and names["scene"] == "景点"
    assert all(t.definition for t in prompt.schema.types)
    assert "中国人民银行" in next(t for t in prompt.schema.types if t.key == "company").definition


@pytest.mark.parametrize("name", ["cluener_zh", "cluener_zh_short"])
@pytest.mark.parametrize("answer_format", ["mentions", "grouped"])
def test_prompt_variants_render(name, answer_format):
    prompt = load_prompt(name)
    messages = prompt.messages("温格的球队", answer_format)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.endswith("文本：温格的球队")
    assert all(key in user for key in CLUENER_KEYS)
    assert ("[]" if answer_format == "mentions" else "{}") in user


def test_variants_differ_in_definitions():
    long = load_prompt("cluener_zh").messages("x")[1]["content"]
    short = load_prompt("cluener_zh_short").messages("x")[1]["content"]
    assert "海洋馆" in long and "海洋馆" not in short
    assert len(short) < len(long) / 2


def test_prompt_without_labels_takes_them_from_data():
    prompt = load_prompt("generic_zh")
    assert prompt.schema is None
    with pytest.raises(ValueError, match="no labels"):
        prompt.messages("x")
    user = prompt.with_labels(["PER", "LOC"]).messages("x")[1]["content"]
    assert "LOC、PER" in user


def test_user_prompt_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "labels:\n  - {key: drug, name: 药物}\n"
        "user: '找出{{ labels[0].name }}：{{ text }} {{ format_instruction }}'\n"
        "format_instructions: {mentions: '输出[]'}\n",
        encoding="utf-8",
    )
    prompt = load_prompt(path)
    assert prompt.messages("阿司匹林") == [{"role": "user", "content": "找出药物：阿司匹林 输出[]"}]


@pytest.mark.parametrize(
    "content, reason",
    [
        ("user: [unclosed", "invalid YAML"),
        ("user: x\nfoo: 1\n", "unknown fields"),
        ("system: x\n", "needs a 'user' template"),
        ("user: x\nlabels: [{key: a}, {key: a}]\n", "duplicate label keys"),
        ("user: x\nformat_instructions: {tabular: x}\n", "unknown answer format"),
    ],
)
def test_bad_prompt_files(tmp_path, content, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=reason):
        load_prompt(path)


def test_unknown_prompt_name_lists_shipped():
    with pytest.raises(FileNotFoundError, match="cluener_zh_short"):
        resolve_prompt_path("nope")


EXAMPLE = Example("3", "北京人在北京大学", [Span(0, 2, "address"), Span(4, 6, "address"), Span(4, 8, "organization")])


def test_mentions_answer_in_reading_order_with_repeats():
    answer = json.loads(format_answer(EXAMPLE, "mentions"))
    assert answer == [
        {"text": "北京", "label": "address"},
        {"text": "北京", "label": "address"},
        {"text": "北京大学", "label": "organization"},
    ]


def test_grouped_answer_unique_strings_in_schema_order():
    answer = format_answer(EXAMPLE, "grouped", label_order=["organization", "address"])
    assert answer == '{"organization":["北京大学"],"address":["北京"]}'


def test_empty_answers_are_json():
    empty = Example("0", "无", [])
    assert format_answer(empty, "mentions") == "[]"
    assert format_answer(empty, "grouped") == "{}"


def test_conversation_record_is_trl_prompt_completion():
    record = to_conversation(EXAMPLE, load_prompt(), "mentions")
    assert set(record) == {"id", "prompt", "completion"}
    assert record["id"] == "3"
    assert [m["role"] for m in record["prompt"]] == ["system", "user"]
    assert record["completion"][0]["role"] == "assistant"
    assert json.loads(record["completion"][0]["content"])[2]["label"] == "organization"
    with pytest.raises(ValueError, match="unknown answer format"):
        to_conversation(EXAMPLE, load_prompt(), "xml")


# ---------------------------------------------------------------------------------------------
# A converted file carries its prompt (issue 19)


def _convert(tmp_path, cluener_dir, prompt="cluener_zh_short", *extra, name="train.jsonl"):
    from llm_ner.cli import main

    out = tmp_path / name
    assert (
        main(["convert", "--input", str(cluener_dir / "dev.json"), "--output", str(out), "--prompt", prompt, *extra])
        == 0
    )
    return out


def test_convert_writes_the_prompt_beside_the_records(tmp_path, cluener_dir, capsys):
    """OUTPUT.meta.json names the prompt (and its content hash), holds a full copy whose messages are those of the
    records, the answer format, and the sha256 of the file it describes; the records stay plain TRL lines."""
    from llm_ner.prompting import prompt_from_yaml, prompt_identity, read_conversion

    out = _convert(tmp_path, cluener_dir, "cluener_zh_short", "--format", "grouped")
    sidecar = tmp_path / "train.jsonl.meta.json"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    shipped = load_prompt("cluener_zh_short")
    assert meta["prompt_name"] == "cluener_zh_short" and meta["answer_format"] == "grouped"
    assert meta["prompt_sha256"] == prompt_identity(shipped) and meta["prompt_sha256"] in capsys.readouterr().err
    assert meta["prompt_yaml"] == shipped.to_yaml()
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert meta["records"] == len(records) and all(set(r) == {"id", "prompt", "completion"} for r in records)
    copy = prompt_from_yaml(meta["prompt_yaml"], sidecar)
    text = records[0]["prompt"][1]["content"].split("文本：")[-1]
    assert copy.messages(text, "grouped") == records[0]["prompt"]
    conversion = read_conversion(out)
    assert conversion.prompt_identity == meta["prompt_sha256"] and conversion.describes(out)
    out.write_text(out.read_text(encoding="utf-8").replace("}\n", "} \n", 1), encoding="utf-8")
    assert not conversion.describes(out)  # rewritten after conversion: the sidecar no longer vouches for it


def test_a_label_free_prompt_records_the_labels_of_the_data(tmp_path, cluener_dir):
    from llm_ner.prompting import read_conversion

    conversion = read_conversion(_convert(tmp_path, cluener_dir, "generic_zh"))
    assert conversion.prompt.name == "generic_zh" and conversion.prompt.schema.keys == CLUENER_KEYS


@pytest.mark.parametrize("name", ["cluener_zh", "cluener_zh_short", "msra_zh"])
def test_a_prompt_copy_reads_back_identically(name, tmp_path):
    from llm_ner.prompting import prompt_from_yaml, prompt_identity

    prompt = load_prompt(name)
    copy = prompt_from_yaml(prompt.to_yaml(), tmp_path / "copy.yaml")
    assert copy.to_yaml() == prompt.to_yaml() and prompt_identity(copy) == prompt_identity(prompt)
    assert copy.messages("温格的球队") == prompt.messages("温格的球队")


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{", "invalid JSON"),
        ('{"prompt_yaml": "user: x"}', "not a convert sidecar"),
        (
            '{"prompt_yaml": "user: x", "answer_format": "xml", "records": 1, "file_sha256": "s"}',
            "unknown answer format",
        ),
        ('{"prompt_yaml": "[", "answer_format": "mentions", "records": 1, "file_sha256": "s"}', "invalid YAML"),
    ],
)
def test_a_broken_sidecar_is_named(tmp_path, content, reason):
    from llm_ner.errors import DataError
    from llm_ner.prompting import read_conversion

    (tmp_path / "t.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "t.jsonl.meta.json").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"t\.jsonl\.meta\.json: .*{reason}"):
        read_conversion(tmp_path / "t.jsonl")


def _resolve(warnings=None, **arguments):
    from llm_ner.training import NERDataArguments, resolve_prompt

    return resolve_prompt(NERDataArguments(**arguments), warn=(warnings if warnings is not None else []).append)


def test_training_adopts_the_prompt_of_a_converted_file(tmp_path, cluener_dir):
    """No prompt asked for: the converted file's, not the default cluener_zh; the same prompt asked for is fine."""
    train = str(_convert(tmp_path, cluener_dir, "cluener_zh_short", "--format", "grouped"))
    raw = str(cluener_dir / "dev.json")
    warnings = []
    for arguments in ({}, {"prompt": "cluener_zh_short"}, {"answer_format": "grouped"}, {"eval_file": raw}):
        prompt, answer_format = _resolve(warnings, train_file=train, **arguments)
        assert (prompt.name, answer_format) == ("cluener_zh_short", "grouped")
        assert prompt.to_yaml() == load_prompt("cluener_zh_short").to_yaml()
    assert warnings == []
    prompt, answer_format = _resolve(warnings, train_file=raw)  # a raw file: the defaults, as before
    assert (prompt.name, answer_format, warnings) == ("cluener_zh", "mentions", [])


def test_training_refuses_a_prompt_other_than_the_converted_files(tmp_path, cluener_dir):
    from llm_ner.errors import UsageError
    from llm_ner.prompting import prompt_identity

    train = _convert(tmp_path, cluener_dir, "cluener_zh_short")
    short, long = load_prompt("cluener_zh_short"), load_prompt("cluener_zh")

    message = (
        f"train_file {train} was converted with prompt cluener_zh_short ({prompt_identity(short)}); the config or "
        f"command line says prompt cluener_zh ({prompt_identity(long)}): drop one, or convert again with "
        "--prompt cluener_zh"
    )
    with pytest.raises(UsageError) as refused:
        _resolve(train_file=str(train), prompt="cluener_zh")
    assert str(refused.value) == message
    with pytest.raises(UsageError, match="eval_file .* was converted with prompt cluener_zh_short"):
        _resolve(train_file=str(cluener_dir / "dev.json"), eval_file=str(train), prompt="cluener_zh")
    with pytest.raises(UsageError, match="converted with --format mentions; .* says answer_format grouped"):
        _resolve(train_file=str(train), answer_format="grouped")
    dev = _convert(tmp_path, cluener_dir, "cluener_zh", name="dev.jsonl")
    with pytest.raises(
        UsageError, match="train_file .*cluener_zh_short.*; eval_file .*cluener_zh .*convert both alike"
    ):
        _resolve(train_file=str(train), eval_file=str(dev))


def test_a_converted_file_without_its_sidecar_is_used_with_a_warning(tmp_path, cluener_dir):
    """Files converted before sidecars (or rewritten since) keep training with the asked-for prompt, and say so."""
    train = _convert(tmp_path, cluener_dir, "cluener_zh_short")
    content = train.read_text(encoding="utf-8")
    train.write_text(content + content.splitlines()[0] + "\n", encoding="utf-8")
    warnings = []
    prompt, _ = _resolve(warnings, train_file=str(train), prompt="cluener_zh")
    assert prompt.name == "cluener_zh"
    assert warnings == [
        f"train_file {train} changed after train.jsonl.meta.json was written: its prompt could not be checked; "
        "the run records prompt cluener_zh, mentions"
    ]
    (tmp_path / "train.jsonl.meta.json").unlink()
    warnings.clear()
    prompt, _ = _resolve(warnings, train_file=str(train))
    assert prompt.name == "cluener_zh" and len(warnings) == 1
    assert (
        "has no train.jsonl.meta.json (converted by an older llm-ner?): its prompt could not be checked" in warnings[0]
    )
