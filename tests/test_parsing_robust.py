"""The parser against what models really emit, and against random input (hypothesis)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_ner.answer_format import answer_to_spans, format_answer, parse_answer
from llm_ner.data import Span
from llm_ner.prompting import load_prompt

SCHEMA = load_prompt().schema
TEXT = "浙商银行的叶老桂在ＣＳＯＬ比赛中见到了叶老桂"
GOLD = [Span(0, 4, "company"), Span(5, 8, "name"), Span(9, 13, "game"), Span(19, 22, "name")]


@pytest.mark.parametrize(
    "answer, expected, counters",
    [
        # single quotes / Python literals, trailing commas
        ("[{'text': '浙商银行', 'label': 'company'},]", [Span(0, 4, "company")], {"repaired": 1}),
        ('[{"text":"叶老桂","label":"name","extra":None}]', [Span(5, 8, "name")], {"repaired": 1}),
        # truncated: complete items are salvaged
        ('[{"text":"浙商银行","label":"company"},{"text":"叶老', [Span(0, 4, "company")], {"repaired": 1}),
        ('{"company":["浙商银行"],"name":["叶老', [Span(0, 4, "company")], {"repaired": 1}),
        # duplicates beyond the occurrences
        (
            '[{"text":"浙商银行","label":"company"},{"text":"浙商银行","label":"company"}]',
            [Span(0, 4, "company")],
            {"duplicates": 1},
        ),
        # Chinese label names, unknown labels
        (
            '[{"text":"叶老桂","label":"姓名"},{"text":"浙商银行","label":"银行"}]',
            [Span(5, 8, "name")],
            {"unknown_label": 1},
        ),
        # entity strings not in the text
        ('[{"text":"王五","label":"name"}]', [], {"hallucinated": 1}),
        # full-width vs half-width and stray spaces
        (
            '[{"text":"CSOL","label":"game"},{"text":"叶 老桂","label":"name"}]',
            [Span(9, 13, "game"), Span(19, 22, "name")],  # reading order: the 叶老桂 after CSOL
            {"normalized": 2},
        ),
        # other key names and shapes models use
        ('{"entities":[{"entity":"浙商银行","type":"company"}]}', [Span(0, 4, "company")], {"repaired": 1}),
        ('[["叶老桂","name"],{"浙商银行":"company"}]', [Span(5, 8, "name"), Span(0, 4, "company")], {}),
        # think blocks and fences together
        (
            '<think>\n要找人名 ["x"]\n</think>\n```json\n[{"text":"叶老桂","label":"name"}]\n```',
            [Span(5, 8, "name")],
            {"repaired": 1},
        ),
    ],
)
def test_what_models_emit(answer, expected, counters):
    spans, stats = answer_to_spans(TEXT, answer, SCHEMA)
    assert sorted(spans) == sorted(expected)
    for name, value in counters.items():
        assert getattr(stats, name) == value, name
    assert stats.parse_failures == 0


def test_no_think_text_leaks_into_spans():
    answer = '<think>叶老桂是人名</think>[{"text":"浙商银行","label":"company"}]'
    spans, _ = answer_to_spans(TEXT, answer, SCHEMA)
    assert spans == [Span(0, 4, "company")]
    # an unterminated think block holds no answer at all
    spans, stats = answer_to_spans(TEXT, '<think>[{"text":"叶老桂","label":"name"}]', SCHEMA)
    assert spans == [] and stats.parse_failures == 1


def test_parser_never_evaluates_code():
    spans, stats = answer_to_spans(TEXT, "[__import__('os').system('echo pwned')]", SCHEMA)
    assert spans == [] and stats.mentions == 0


GOLD_ANSWER = format_answer(__import__("llm_ner.data", fromlist=["Example"]).Example("0", TEXT, GOLD), "mentions")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_never_raises(answer):
    spans, stats = answer_to_spans(TEXT, answer, SCHEMA)
    assert all(0 <= s.start < s.end <= len(TEXT) and s.label in SCHEMA.keys for s in spans)
    assert stats.answers == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOLD_ANSWER)))
def test_truncated_answers_salvage_a_prefix_of_gold(cut):
    spans, stats = answer_to_spans(TEXT, GOLD_ANSWER[:cut], SCHEMA)
    assert set(spans) <= set(GOLD)
    assert stats.hallucinated == 0


mutation = st.tuples(st.integers(0, len(GOLD_ANSWER)), st.integers(0, 5), st.text(max_size=4))


@settings(max_examples=400, deadline=None)
@given(st.lists(mutation, max_size=4))
def test_mutated_answers_never_raise(mutations):
    answer = GOLD_ANSWER
    for position, delete, insert in mutations:
        answer = answer[:position] + insert + answer[position + delete :]
    spans, stats = answer_to_spans(TEXT, answer, SCHEMA)
    assert all(0 <= s.start < s.end <= len(TEXT) and s.label in SCHEMA.keys for s in spans)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_value_never_raises(value):
    pairs, found, stats = parse_answer(json.dumps(value, ensure_ascii=False), SCHEMA)
    assert found in ("mentions", "grouped", "none")
    assert all(label in SCHEMA.keys for _, label in pairs)


def test_deep_nesting_is_bounded():
    spans, stats = answer_to_spans(TEXT, "[" * 5000 + "]" * 5000, SCHEMA)
    assert spans == [] and stats.answers == 1


# Texts from a small alphabet so that strings repeat and mentions overlap; mentions are substrings.
ALPHABET = "北京大学南市长江"
LABELS = sorted(SCHEMA.keys)


@st.composite
def text_and_mentions(draw):
    text = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=30))
    mentions = []
    for _ in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, min(len(text), start + 6)))
        mentions.append((text[start:end], draw(st.sampled_from(LABELS))))
    return text, mentions


@settings(max_examples=300, deadline=None)
@given(text_and_mentions())
def test_aligned_spans_cover_their_mention(case):
    """Every aligned span's text is a mention of its label, in both answer formats."""
    from llm_ner.answer_format import align_spans

    text, mentions = case
    for answer_format in ("mentions", "grouped"):
        for span in align_spans(text, mentions, answer_format):
            assert (text[span.start : span.end], span.label) in mentions


@settings(max_examples=300, deadline=None)
@given(text_and_mentions())
def test_grouped_spans_never_overlap_and_longer_strings_win(case):
    """Grouped alignment: no two spans overlap, and every occurrence left out overlaps a chosen
    span at least as long (longest first, not leftmost first)."""
    from llm_ner.parsing import align_grouped

    text, mentions = case
    chosen = align_grouped(text, mentions)
    for a, b in zip(chosen, chosen[1:]):
        assert a.end <= b.start
    for mention, label in mentions:
        start = text.find(mention)
        while start >= 0:
            span = Span(start, start + len(mention), label)
            if span not in chosen:
                assert any(span.overlaps(c) and c.end - c.start >= len(mention) for c in chosen), (span, chosen)
            start = text.find(mention, start + 1)
