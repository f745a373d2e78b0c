"""README claim: Ctrl-C during extraction loses at most the batch in flight, and a rerun finishes
the rest. Ctrl-C is Python's KeyboardInterrupt, raised here inside the third batch's generation."""

import json

import pytest
from conftest import records

import llm_ner.generation
from llm_ner.backends import LocalBackend
from llm_ner.data import Example
from llm_ner.extraction import Annotator, ResumableOutput, RunSettings, extract
from llm_ner.prompting import load_prompt


def fake_answers(calls: list, interrupt_at: int | None):
    def generate_answers(model, tokenizer, conversations, texts, **kwargs):
        calls.append(list(texts))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return [json.dumps([{"text": text[:2], "label": "name"}], ensure_ascii=False) for text in texts]

    return generate_answers


def test_ctrl_c_loses_at_most_the_batch_in_flight(monkeypatch, tmp_path):
    examples = [Example(str(i), f"张三{'说' * (i % 7)}第{i}句") for i in range(20)]
    settings = RunSettings(model="fake", adapter=None, prompt=load_prompt(), answer_format="mentions")
    output = tmp_path / "pred.json"
    calls: list = []
    monkeypatch.setattr(llm_ner.generation, "generate_answers", fake_answers(calls, interrupt_at=3))
    with pytest.raises(KeyboardInterrupt):
        extract(Annotator(LocalBackend(None, None), settings), examples, output, batch_size=4, progress=False)
    finished = [text for batch in calls[:2] for text in batch]  # the two batches before the interrupt
    done = ResumableOutput(output).done_ids()
    assert done == {ex.id for ex in examples if ex.text in finished} and len(done) == 8

    rerun: list = []
    monkeypatch.setattr(llm_ner.generation, "generate_answers", fake_answers(rerun, interrupt_at=None))
    extract(Annotator(LocalBackend(None, None), settings), examples, output, batch_size=4, progress=False)
    assert sorted(text for batch in rerun for text in batch) == sorted(ex.text for ex in examples if ex.id not in done)
    assert ResumableOutput(output).merge([ex.id for ex in examples]) == 20
    written = records(output)
    assert [r["id"] for r in written] == [ex.id for ex in examples]
    assert all(r["label"] == {"name": {"张三": [[0, 1]]}} for r in written)
