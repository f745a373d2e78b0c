"""The Python API a notebook user calls: `llm_ner.load` once, then the annotator on texts. Its entities are the
records `llm-ner extract` writes for the same texts (one annotator behind both), on a tiny random Qwen3 whose
answers differ from sentence to sentence (random weights: plumbing, not quality)."""

import json
import logging

import pytest
from conftest import noisy_model, records

import llm_ner
from llm_ner.cli import main as cli
from llm_ner.extraction import Entity


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return noisy_model(tmp_path_factory.mktemp("api") / "noisy")


@pytest.mark.parametrize("constrained", [False, True], ids=["free", "constrained"])
def test_load_then_call_gives_the_entities_extract_writes(noisy, cluener_dev, tmp_path, constrained):
    """The annotator of `llm_ner.load` answers each text as `extract` does (the same raw answers, which differ
    from sentence to sentence, and the same spans), and returns them as `Entity` objects. Free answers of random
    weights rarely parse; constrained ones always do, so that run has entities whose offsets are checked."""
    from llm_ner.data import Example

    texts = [ex.text for ex in cluener_dev[:12]]
    ner = llm_ner.load(
        str(noisy), prompt="cluener_zh_short", dtype="float32", device="cpu", max_chars=24, constrained=constrained
    )
    found = ner(texts)
    assert len(found) == len(texts) and all(isinstance(e, Entity) for es in found for e in es)
    for text, entities in zip(texts, found):
        assert all(text[e.start : e.end] == e.text for e in entities)  # exact offsets, end exclusive
    assert ner(texts[0]) == found[0]  # one text in, its entities out
    raws = [record["raw"] for record, _ in ner.annotate([Example(str(i), t) for i, t in enumerate(texts)])]
    assert len(set(map(str, raws))) > 1  # answers that differ: a mix-up of sentences would show

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    output = tmp_path / "pred.json"
    argv = ["extract", "--model", str(noisy), "--prompt", "cluener_zh_short", "--dtype", "float32", "--device", "cpu"]
    argv += ["--max-chars", "24", "--max-parse-failures", "1"]  # random answers rarely parse
    argv += ["--constrained"] if constrained else []
    assert cli([*argv, "--input", str(source), "--output", str(output), "--quiet"]) == 0
    written = records(output)
    assert [r["raw"] for r in written] == raws
    spans = [
        sorted(
            (start, end + 1, label)
            for label, ms in r["label"].items()
            for ranges in ms.values()
            for start, end in ranges
        )
        for r in written
    ]
    assert [[(e.start, e.end, e.label) for e in entities] for entities in found] == spans


class EchoBackend:
    """Names characters 1-2 of every text it is asked about as a person: known answers, different for each piece."""

    def answer(self, conversations, texts):
        from llm_ner.backends import Answer

        return [Answer(json.dumps([{"text": text[1:3], "label": "name"}], ensure_ascii=False)) for text in texts]

    def close(self):
        pass


def test_entities_carry_the_offsets_of_the_whole_text(cluener_dev):
    """Long texts are cut into pieces and answered piece by piece: each entity's start and (exclusive) end are
    offsets into the whole text, the piece's offset added."""
    from llm_ner.data.text import split_long
    from llm_ner.extraction import Annotator, ModelOptions
    from llm_ner.extraction.settings import run_settings

    texts = [ex.text for ex in cluener_dev[:20]]
    settings = run_settings(ModelOptions(model="unused", prompt="cluener_zh_short"))
    found = Annotator(EchoBackend(), settings, max_chars=24)(texts)
    expected = []
    for text in texts:
        pieces = [(offset + piece.find(piece[1:3]), piece[1:3]) for offset, piece in split_long(text, 24)]
        expected.append(sorted({(start, start + len(mention)) for start, mention in pieces if mention}))
    assert sum(map(len, expected)) > len(texts)  # pieces, not only whole sentences
    assert [[(e.start, e.end) for e in entities] for entities in found] == expected
    assert all(
        e.text == t[e.start : e.end] and e.label == "name" and e.score is None
        for t, es in zip(texts, found)
        for e in es
    )


def test_a_server_needs_its_model_name(noisy):
    from llm_ner.errors import UsageError

    with pytest.raises(UsageError, match="served_model="):
        llm_ner.load(base_url="http://127.0.0.1:9/v1", prompt="cluener_zh_short")


def test_quiet_and_verbose_set_what_the_command_line_says(tmp_path, cluener_dir, capfd):
    """Library code logs; the command line shows information by default, only warnings with --quiet."""
    gold = cluener_dir / "dev.json"
    pred = tmp_path / "pred.json"
    pred.write_text("".join(gold.read_text(encoding="utf-8").splitlines(keepends=True)[:5]), encoding="utf-8")
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--gold", str(gold), "--pred", str(pred), "--json", str(out)]) == 0
    assert f"wrote {out}" in capfd.readouterr().err
    assert cli(["--quiet", "evaluate", "--gold", str(gold), "--pred", str(pred), "--json", str(out)]) == 0
    captured = capfd.readouterr()
    assert "wrote" not in captured.err and "micro avg" in captured.out  # the tables are the output, not talk
    assert json.loads(out.read_text(encoding="utf-8"))["pred"] == str(pred)
    assert cli(["--verbose", "evaluate", "--gold", str(gold), "--pred", str(pred)]) == 0
    assert logging.getLogger("llm_ner").isEnabledFor(logging.DEBUG)
    cli(["evaluate", "--gold", str(gold), "--pred", str(pred)])  # back to the default for the other tests
