"""Few-shot prompts never show a query its own gold, and the prompt budget is honest (issue 31).

A labelled file used both as the shots pool and as the input, with ``--max-chars`` cutting its sentences into
pieces, must never put a piece's source sentence (or a shot containing the piece) into the piece's prompt; a
``--max-prompt-tokens`` below the zero-shot prompt is refused in one line before any model loads; prompts sent
over the budget are counted and warned about once; the run's end says how many shots were actually used. The
prompts are checked as rendered, through a backend that records them (no generation)."""

import json
import logging
from pathlib import Path

import pytest
from conftest import one_layer_qwen3

from llm_ner.backends import Answer
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, example_to_cluener, read_inputs
from llm_ner.errors import UsageError
from llm_ner.extraction import Annotator, ModelOptions, run_settings
from llm_ner.extraction.local import extract
from llm_ner.shots import ShotPool


class Recorder:
    """A backend that answers ``[]`` and keeps every conversation it was asked (with its text)."""

    def __init__(self, tokenizer=None):
        self.tokenizer, self.asked = tokenizer, []

    def answer(self, conversations, texts):
        self.asked += list(zip(texts, conversations))
        return [Answer("[]") for _ in texts]

    def close(self):
        pass


def write_cluener(path: Path, examples) -> Path:
    path.write_text("".join(json.dumps(example_to_cluener(e), ensure_ascii=False) + "\n" for e in examples), "utf-8")
    return path


def shot_turns(conversation: list[dict]) -> list[str]:
    """The user turns of a conversation's shots (between the system prompt and the question)."""
    return [m["content"] for m in conversation[1:-1] if m["role"] == "user"]


@pytest.mark.parametrize("selection", ["similar", "random", "fixed"])
def test_no_piece_is_shown_the_sentence_it_was_cut_from(cluener_dev, tmp_path, selection):
    """The issue's run: CLUENER dev as both pool and input, --max-chars 20 cutting most sentences."""
    labelled = write_cluener(tmp_path / "dev.json", cluener_dev[:60])
    options = ModelOptions(
        model="m", prompt="cluener_zh_short", answer_format="mentions", shots=4, shots_from=str(labelled),
        shot_selection=selection, max_chars=20,
    )  # fmt: skip
    settings = run_settings(options)
    recorder = Recorder()
    inputs = read_inputs(labelled, "auto")
    extract(Annotator(recorder, settings, options.max_chars), inputs, tmp_path / "out.json", progress=False)
    source_of = {piece: ex.text for ex in inputs for _, piece in Annotator(None, settings, 20).pieces(ex.text)}
    assert len(recorder.asked) > 1.5 * len(inputs)  # most sentences were cut
    shot_text = {settings.prompt.messages(ex.text)[-1]["content"]: ex.text for ex in inputs}  # a shot's turn
    leaks = 0
    for piece, conversation in recorder.asked:
        shots = [shot_text[turn] for turn in shot_turns(conversation)]
        assert len(shots) == 4  # the pool of 60 has plenty of others
        leaks += source_of[piece] in shots or any(piece in shot for shot in shots)
    assert leaks == 0, f"{leaks} of {len(recorder.asked)} prompts show their own sentence"


def test_a_piece_is_not_shown_another_piece_of_its_own_record(tmp_path):
    """Shots that are parts of the record a piece was cut from are its gold too: every path passes the record."""
    record = Example("r", "张三去北京，李四去上海。", [Span(0, 2, "name"), Span(3, 5, "address"), Span(6, 8, "name")])
    other = Example("o", "李四去上海。", [Span(0, 2, "name"), Span(3, 5, "address")])
    pool = [record, other, Example("w", "今天天气很好。")]
    options = ModelOptions(
        model="m", prompt="cluener_zh_short", answer_format="mentions", shots=2,
        shots_from=str(write_cluener(tmp_path / "pool.json", pool)), shot_selection="fixed", max_chars=6,
    )  # fmt: skip
    settings = run_settings(options)
    through_api, through_extract = Recorder(), Recorder()
    Annotator(through_api, settings, options.max_chars).annotate([record])
    extract(Annotator(through_extract, settings, options.max_chars), [record], tmp_path / "o.json", progress=False)
    from llm_ner.extraction.ray_run import BatchAnswerer  # a Ray actor's work, called here without Ray

    actor = BatchAnswerer(options, settings, None, None, 0, Recorder)
    rows = [{"file": 0, "pos": 0, "k": k, "n": 2, "id": "r", "text": record.text} for k in (0, 1)]
    actor({"rows": [json.dumps(rows, ensure_ascii=False)]})
    for asked in (through_api.asked, through_extract.asked, actor.annotator.backend.asked):
        assert [piece for piece, _ in asked] == ["张三去北京，", "李四去上海。"]
        for _, conversation in asked:  # neither the record, nor its other piece: only the unrelated sentence
            assert shot_turns(conversation) == [settings.prompt.messages("今天天气很好。")[-1]["content"]]
    assert ShotPool(pool, "fixed").select("张三去北京，", 2) != ShotPool(pool, "fixed").select(
        "张三去北京，", 2, record.text
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, cluener_dev):
    return one_layer_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3", [e.text for e in cluener_dev[:20]])


def test_a_budget_below_the_zero_shot_prompt_is_one_line_before_anything_runs(
    tiny_model, cluener_dev, tmp_path, capsys, monkeypatch
):
    import llm_ner.extraction.local as local

    def must_not_run(*args, **kwargs):
        raise AssertionError("got past the budget check")

    monkeypatch.setattr(local, "make_backend", must_not_run)
    labelled = write_cluener(tmp_path / "dev.json", cluener_dev[:5])
    output = tmp_path / "out.json"
    output.write_text("earlier results\n", encoding="utf-8")
    argv = ["extract", "--model", str(tiny_model), "--input", str(labelled), "--output", str(output), "--restart",
            "--prompt", "cluener_zh_short", "--shots", "2", "--shots-from", str(labelled), "--quiet"]  # fmt: skip
    assert cli([*argv, "--max-prompt-tokens", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    from llm_ner.generation import chat_prompt_ids, load_tokenizer
    from llm_ner.prompting import load_prompt

    floor = len(chat_prompt_ids(load_tokenizer(str(tiny_model)), load_prompt("cluener_zh_short").messages("")))
    assert f"--max-prompt-tokens 20 is below the zero-shot prompt of prompt cluener_zh_short: {floor} tokens" in err
    assert output.read_text(encoding="utf-8") == "earlier results\n"  # --restart discarded nothing
    import ray

    monkeypatch.setattr(ray, "init", must_not_run)  # --engine ray: refused on the driver, before Ray starts
    assert cli([*argv, "--max-prompt-tokens", "20", "--engine", "ray"]) == 2
    assert "--max-prompt-tokens 20 is below the zero-shot prompt" in capsys.readouterr().err


def test_prompts_over_the_budget_are_warned_once_and_counted(qwen_tokenizer_dir, caplog):
    from transformers import AutoTokenizer

    from llm_ner.extraction import RunSettings
    from llm_ner.prompting import load_prompt
    from llm_ner.shots import prompt_token_counter

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir("qwen2.5"))
    count = prompt_token_counter(tokenizer)
    prompt = load_prompt("cluener_zh_short")
    short, long = "王五去南京", "".join(chr(0x4E00 + 37 * i) for i in range(300))  # rare characters: many tokens
    pool = ShotPool([Example("a", "张三去北京", [Span(0, 2, "name")]), Example("b", "李四在上海工作")])
    budget = count(prompt.messages(short, "mentions", pool.select(short, 2)))  # a short sentence fits 2 shots
    assert count(prompt.messages(long)) > budget > count(prompt.messages(""))
    settings = RunSettings("m", None, prompt, "mentions", shot_pool=pool, shots=5, max_prompt_tokens=budget)
    annotator = Annotator(Recorder(tokenizer), settings)
    with caplog.at_level(logging.WARNING, logger="llm_ner"):
        annotator.answer([short, long, long])
        annotator.answer([long, short])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"2 of 3 prompts over --max-prompt-tokens {budget} even with no shots: sent as they are "
                        "(a lower --max-chars cuts long sentences shorter); warned once, `shot_counts` counts the "
                        "rest"]  # fmt: skip
    counts = annotator.shot_counts
    assert (counts.over_budget, counts.trimmed, dict(counts.prompts_with)) == (3, 3, {2: 2, 0: 3})
    assert counts.line(5, len(pool), budget) == (
        f"shots used: 4 in 5 prompts, 0-2 a prompt (--shots 5, pool 2); 3 prompts with fewer shots to fit "
        f"--max-prompt-tokens {budget}; 3 prompts over --max-prompt-tokens {budget} even with no shots, sent as "
        "they are (a lower --max-chars cuts long sentences shorter)"
    )


def test_the_shots_notes_count_the_pool_and_the_shots_used(tmp_path, capsys):
    """--shots 10 from a pool of 3 over the pool itself: the notes say at most 3 and, at the end, 2 used a prompt."""
    from test_openai_backend import FlakyServer

    pool = [
        Example("a", "张三去北京", [Span(0, 2, "name")]),
        Example("b", "李四在上海工作"),
        Example("c", "今天天气很好"),
    ]
    labelled = write_cluener(tmp_path / "pool.json", pool)
    server = FlakyServer(failures=0)
    try:
        argv = ["extract", "--backend", "openai", "--base-url", server.url, "--served-model", "m", "--quiet",
                "--input", str(labelled), "--output", str(tmp_path / "out.json"), "--prompt", "cluener_zh_short",
                "--format", "mentions", "--shots", "10", "--shots-from", str(labelled)]  # fmt: skip
        assert cli(argv) == 0
    finally:
        server.close()
    err = capsys.readouterr().err
    assert f"at most 3 similar shots per sentence from {labelled}: it holds 3 labelled sentences (--shots 10)" in err
    assert "shots used: 6 in 3 prompts, 2-2 a prompt (--shots 10, pool 3)" in err
    assert all(len(body["messages"]) == 1 + 2 * 2 + 1 for body in server.bodies)  # its own sentence never a shot
    with pytest.raises(UsageError, match="--max-prompt-tokens 1 is below"):
        run_settings(ModelOptions(model="m", prompt="cluener_zh_short", shots=1, shots_from=str(labelled),
                                  max_prompt_tokens=1)).check_prompt_budget()  # fmt: skip
