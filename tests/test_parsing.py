import pytest

from llm_ner.answer_format import answer_to_spans, format_answer, parse_answer
from llm_ner.data import Span
from llm_ner.metrics import span_scores
from llm_ner.parsing import ParseStats, align_grouped, align_mentions
from llm_ner.prompting import load_prompt

SCHEMA = load_prompt().schema


@pytest.mark.parametrize("answer_format, threshold", [("mentions", 0.999), ("grouped", 0.995)])
def test_round_trip_on_cluener_dev(cluener_dev, answer_format, threshold):
    """gold -> answer -> parse -> align reproduces the gold spans."""
    totals = ParseStats()
    predicted = []
    for ex in cluener_dev:
        spans, stats = answer_to_spans(ex.text, format_answer(ex, answer_format, SCHEMA.keys), SCHEMA)
        totals += stats
        predicted.append(spans)
    micro = span_scores([ex.spans for ex in cluener_dev], predicted).micro
    print(
        f"\nround trip {answer_format}: micro-F1 {micro.f1:.5f} "
        f"(P {micro.precision:.5f} R {micro.recall:.5f}) on {len(cluener_dev)} dev sentences"
    )
    assert micro.f1 >= threshold
    assert totals.parse_failures == 0 and totals.hallucinated == 0 and totals.unknown_label == 0


def test_cursor_maps_repeats_to_successive_occurrences():
    text = "北京人在北京大学，北京"
    spans = align_mentions(text, [("北京", "address"), ("北京大学", "organization"), ("北京", "address")])
    assert spans == [Span(0, 2, "address"), Span(4, 8, "organization"), Span(9, 11, "address")]


def test_cursor_handles_nested_mentions():
    text = "《招商银行年报》"
    spans = align_mentions(text, [("《招商银行年报》", "book"), ("招商银行", "company")])
    assert spans == [Span(0, 8, "book"), Span(1, 5, "company")]


def test_cursor_counts_hallucinations_and_surplus_repeats():
    stats = ParseStats()
    spans = align_mentions("张三说", [("张三", "name"), ("李四", "name"), ("张三", "name")], stats)
    assert spans == [Span(0, 2, "name")]
    assert stats.hallucinated == 1 and stats.duplicates == 1 and stats.aligned == 1


def test_grouped_takes_all_occurrences_longest_first():
    text = "北京大学在北京"
    spans = align_grouped(text, [("北京", "address"), ("北京大学", "organization")])
    assert spans == [Span(0, 4, "organization"), Span(5, 7, "address")]


def test_grouped_prefers_the_longer_of_two_overlapping_strings_even_when_it_starts_later():
    text = "南京市长江大桥"
    spans = align_grouped(text, [("南京", "address"), ("市长", "position"), ("长江大桥", "scene")])
    assert spans == [Span(0, 2, "address"), Span(3, 7, "scene")]


def test_parse_both_formats_and_chinese_label_names():
    pairs, found, _ = parse_answer('[{"text":"张三","label":"姓名"}]', SCHEMA)
    assert (pairs, found) == ([("张三", "name")], "mentions")
    pairs, found, _ = parse_answer('{"name":["张三","李四"],"公司":"腾讯"}', SCHEMA)
    assert (pairs, found) == ([("张三", "name"), ("李四", "name"), ("腾讯", "company")], "grouped")


def test_parse_counts_unknown_labels_and_bad_items():
    pairs, _, stats = parse_answer('[{"text":"张三","label":"person"}, 3, {"text": 5, "label": "name"}]', SCHEMA)
    assert pairs == [] and stats.unknown_label == 1 and stats.invalid_items == 2


@pytest.mark.parametrize(
    "answer",
    [
        '```json\n[{"text":"张三","label":"name"}]\n```',
        '<think>\n先想想 [1]\n</think>\n\n[{"text":"张三","label":"name"}]',
        '答案如下：[{"text":"张三","label":"name"}] 以上。',
    ],
)
def test_parse_repairs_common_wrappers(answer):
    spans, stats = answer_to_spans("张三说", answer, SCHEMA)
    assert spans == [Span(0, 2, "name")] and stats.repaired == 1


@pytest.mark.parametrize("answer", ["", "没有实体", "42", "null", '"text"', "<think>[1]", "]]", "{:}"])
def test_unreadable_answers_are_counted_not_raised(answer):
    spans, stats = answer_to_spans("张三说", answer, SCHEMA)
    assert spans == [] and stats.parse_failures == 1
