"""Baselines: CRF against brute force, character alignment on CLUENER dev, train/predict on a slice."""

import itertools
import json

import pytest
import torch

from llm_ner.baselines import BaselineConfig, Batcher, for_tagging, load_baseline, predict_examples, tag_set
from llm_ner.baselines.crf import CRF
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, read_cluener
from llm_ner.tiny import build_tiny_bert


def brute_force(crf, emissions, length):
    paths = list(itertools.product(range(crf.num_tags), repeat=length))
    mask = torch.ones(1, length, dtype=torch.bool)
    scores = torch.stack([crf.score(emissions[:, :length], torch.tensor([p]), mask)[0] for p in paths])
    return paths, scores


@pytest.mark.parametrize("num_tags, length", [(3, 1), (3, 4), (4, 3), (5, 2)])
def test_crf_partition_and_viterbi_match_brute_force(num_tags, length):
    torch.manual_seed(num_tags * 10 + length)
    crf = CRF(num_tags)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    emissions = torch.randn(1, length, num_tags)
    paths, scores = brute_force(crf, emissions, length)
    mask = torch.ones(1, length, dtype=torch.bool)
    assert torch.allclose(crf.log_partition(emissions, mask), torch.logsumexp(scores, 0), atol=1e-5)
    assert crf.decode(emissions, mask)[0] == list(paths[int(scores.argmax())])


def test_crf_masks_padding():
    """A padded sentence scores and decodes exactly like the same sentence alone."""
    torch.manual_seed(0)
    crf = CRF(4)
    short = torch.randn(1, 3, 4)
    padded = torch.cat([short, torch.randn(1, 2, 4)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 5, 4)])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    alone = torch.ones(1, 3, dtype=torch.bool)
    assert torch.allclose(crf.log_partition(batch, mask)[0], crf.log_partition(short, alone)[0], atol=1e-5)
    assert crf.decode(batch, mask)[0] == crf.decode(short, alone)[0]
    tags = torch.tensor([[1, 2, 3, 0, 0], [0, 1, 2, 3, 0]])
    assert torch.allclose(crf.score(batch, tags, mask)[0], crf.score(short, tags[:1, :3], alone)[0])


def test_crf_learns_a_fixed_mapping():
    torch.manual_seed(0)
    crf = CRF(3)
    emissions = torch.randn(8, 5, 3, requires_grad=True)
    tags = torch.randint(0, 3, (8, 5))
    mask = torch.ones(8, 5, dtype=torch.bool)
    optimizer = torch.optim.Adam([emissions, *crf.parameters()], lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        crf(emissions, tags, mask).backward()
        optimizer.step()
    assert crf.decode(emissions, mask) == tags.tolist()


def test_character_alignment_round_trip_on_cluener_dev(cluener_dev, tmp_path):
    """Every character of mixed Chinese/digit/Latin text gets exactly its own sub-token."""
    texts = [ex.text for ex in cluener_dev]
    bert = build_tiny_bert(tmp_path / "bert", texts)
    from transformers import AutoTokenizer

    labels = sorted({s.label for ex in cluener_dev for s in ex.spans})
    config = BaselineConfig(arch="bert-crf", labels=tuple(labels), tags=tuple(tag_set(labels)))
    batcher = Batcher(config, AutoTokenizer.from_pretrained(bert))
    pieces, dropped = for_tagging(cluener_dev, config.max_chars)
    assert dropped == 0 and len(pieces) == len(cluener_dev)
    for start in range(0, len(pieces), 128):
        chunk = pieces[start : start + 128]
        batch = batcher(chunk)
        for row, ex in enumerate(chunk):
            index = batch["char_token_index"][row, : len(ex.text)].tolist()
            assert index == sorted(set(index)) and min(index) >= 1  # one distinct sub-token per char, after [CLS]
            tokens = batch["input_ids"][row, index].tolist()
            back = AutoTokenizer.from_pretrained(bert).convert_ids_to_tokens(tokens)
            expected = [("_" if c.isspace() else c.lower()) for c in ex.text]
            assert [t if t != "[UNK]" else e for t, e in zip(back, expected)] == expected
    spans_back = [batch_tags_to_spans(batcher, [ex]) for ex in pieces[:200]]
    assert spans_back == [ex.spans for ex in pieces[:200]]


def batch_tags_to_spans(batcher, examples):
    from llm_ner.data import tags_to_spans

    batch = batcher(examples)
    tags = [batcher.config.tags[i] for i in batch["tags"][0, : len(examples[0].text)].tolist()]
    return tags_to_spans(tags)


def test_nested_spans_are_left_out_of_bio_and_counted():
    ex = Example("0", "《招商银行年报》", [Span(0, 8, "book"), Span(1, 5, "company")])
    pieces, dropped = for_tagging([ex], 256)
    assert dropped == 1 and pieces[0].spans == [Span(0, 8, "book")]


@pytest.mark.parametrize("arch", ["bilstm-crf", "bert-crf", "bert-bilstm-crf"])
def test_baseline_train_and_predict_on_a_slice(arch, cluener_dir, cluener_dev, tmp_path):
    args = [
        "baseline",
        "train",
        "--arch",
        arch,
        "--train",
        str(cluener_dir / "train.json"),
        "--dev",
        str(cluener_dir / "dev.json"),
        "--out",
        str(tmp_path / "model"),
        "--max-train-samples",
        "200",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--quiet",
    ]
    if arch != "bilstm-crf":
        args += [
            "--encoder",
            str(build_tiny_bert(tmp_path / "bert", [ex.text for ex in cluener_dev])),
            "--lr",
            "5e-3",
            "--encoder-lr",
            "1e-3",
        ]
    assert cli(args) == 0
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(history) == 2 and all("dev_f1" in h and h["epoch_seconds"] > 0 for h in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    pred = tmp_path / "pred.json"
    assert (
        cli(
            [
                "baseline",
                "predict",
                "--model",
                str(tmp_path / "model"),
                "--input",
                str(cluener_dir / "dev.json"),
                "--output",
                str(pred),
                "--quiet",
            ]
        )
        == 0
    )
    predicted, _ = read_cluener(pred)
    assert [ex.id for ex in predicted] == [ex.id for ex in cluener_dev]
    model, batcher = load_baseline(tmp_path / "model")
    again = predict_examples(model, batcher, cluener_dev[:50])
    assert [ex.spans for ex in again] == [ex.spans for ex in predicted[:50]]  # reloads deterministically


def test_long_sentences_are_split_for_prediction(tmp_path, cluener_dev):
    from llm_ner.baselines import build_model

    labels = ("name",)
    config = BaselineConfig(
        arch="bilstm-crf",
        labels=labels,
        tags=tuple(tag_set(labels)),
        chars=("[PAD]", "[UNK]", "张", "三"),
        max_chars=10,
    )
    model, batcher = build_model(config)
    text = "张三" * 40
    [result] = predict_examples(model, batcher, [Example("0", text)])
    assert all(0 <= s.start < s.end <= len(text) for s in result.spans)
