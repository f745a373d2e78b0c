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
