"""Baselines: CRF against brute force, character alignment on CLUENER dev, train/predict on a slice."""

import itertools
import json

import pytest
import torch

from llm_ner.baselines import BaselineConfig, TensorBatcher, for_tagging, load_baseline, predict_examples, tag_set
from llm_ner.baselines.crf import CRF
from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, read_cluener
from llm_ner.metrics import span_scores
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
    batcher = TensorBatcher(config, AutoTokenizer.from_pretrained(bert))
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
    assert len(history) == 2 and all("dev_f1" in h for h in history)
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
    # the saved model is the best dev epoch: its predictions score what the history says
    f1 = span_scores([ex.spans for ex in cluener_dev], [ex.spans for ex in predicted]).micro.f1
    assert f1 == pytest.approx(max(h["dev_f1"] for h in history), abs=1e-9)
    model, batcher = load_baseline(tmp_path / "model")
    again = predict_examples(model, batcher, cluener_dev[:50])
    assert [ex.spans for ex in again] == [ex.spans for ex in predicted[:50]]  # reloads deterministically


def test_crf_matches_brute_force_on_padded_batches():
    """Every row of a right-padded batch (random transitions, random emissions in the padding)
    gets the log Z, gold score and Viterbi path of brute force over its own length."""
    torch.manual_seed(3)
    for num_tags, lengths in [(3, [4, 1, 3, 2]), (4, [2, 4, 4, 1, 3]), (5, [3, 1, 2])]:
        crf = CRF(num_tags)
        with torch.no_grad():
            crf.transitions.normal_(0, 2)
            crf.start.normal_()
            crf.end.normal_()
        width = max(lengths)
        emissions = torch.randn(len(lengths), width, num_tags) * 2
        mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        tags = torch.randint(0, num_tags, (len(lengths), width))
        log_z = crf.log_partition(emissions, mask)
        gold = crf.score(emissions, tags, mask)
        decoded = crf.decode(emissions, mask)
        for row, length in enumerate(lengths):
            paths, scores = brute_force(crf, emissions[row : row + 1], length)
            assert torch.allclose(log_z[row], torch.logsumexp(scores, 0), atol=1e-4), (num_tags, row)
            assert decoded[row] == list(paths[int(scores.argmax())]), (num_tags, row)
            assert torch.allclose(gold[row], scores[paths.index(tuple(tags[row, :length].tolist()))], atol=1e-5)


def test_bilstm_reads_each_sentence_as_if_alone():
    """Padding never reaches a sentence's outputs, in either direction of the BiLSTM."""
    from llm_ner.baselines.models import BiLSTMCRF

    torch.manual_seed(0)
    model = BiLSTMCRF(vocab_size=20, num_tags=5, embedding_dim=8, hidden_size=12).eval()
    ids = torch.randint(2, 20, (3, 7))
    lengths = [7, 3, 5]
    mask = torch.arange(7).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    together = model.emissions({"char_ids": ids, "mask": mask})
    for row, length in enumerate(lengths):
        alone = model.emissions({"char_ids": ids[row : row + 1, :length], "mask": mask[row : row + 1, :length]})
        assert torch.allclose(together[row, :length], alone[0], atol=1e-6), row


def test_length_bucketed_batches_cover_every_piece_once_with_little_padding(cluener_dev):
    import random

    from llm_ner.baselines import length_bucketed_batches

    batches = length_bucketed_batches(cluener_dev, 16, random.Random(0))
    assert sorted(ex.id for b in batches for ex in b) == sorted(ex.id for ex in cluener_dev)
    assert [[ex.id for ex in b] for b in batches] == [
        [ex.id for ex in b] for b in length_bucketed_batches(cluener_dev, 16, random.Random(0))
    ]
    assert [[ex.id for ex in b] for b in batches] != [
        [ex.id for ex in b] for b in length_bucketed_batches(cluener_dev, 16, random.Random(1))
    ]
    padded = sum(len(b) * max(len(ex.text) for ex in b) for b in batches)
    assert padded <= 1.1 * sum(len(ex.text) for ex in cluener_dev)


def test_auto_batch_size_gives_small_corpora_enough_updates():
    from llm_ner.baselines import auto_batch_size

    assert [auto_batch_size(n) for n in (50, 1400, 3000, 10748, 100000)] == [8, 14, 30, 64, 64]


def test_training_keeps_the_best_dev_epoch_and_stops_after_patience(monkeypatch, cluener_dev, tmp_path):
    """Scripted dev F1 0.2, 0.5, 0.3, 0.1, ...: patience 2 stops after epoch 4, and the saved
    weights are those of epoch 2."""
    import types

    import llm_ner.baselines.training as baselines

    scripted = iter([0.2, 0.5, 0.3, 0.1, 0.05, 0.01])
    snapshots = []
    real_predict = baselines.predict_examples

    def predict(model, *args, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_predict(model, *args, **kwargs)

    def scores(*args, **kwargs):
        f1 = next(scripted)
        return types.SimpleNamespace(micro=types.SimpleNamespace(f1=f1, precision=f1, recall=f1))

    monkeypatch.setattr(baselines, "predict_examples", predict)
    monkeypatch.setattr(baselines, "span_scores", scores)
    config = BaselineConfig(epochs=6, patience=2, batch_size=8, embedding_dim=8, hidden_size=8, learning_rate=1e-2)
    result = baselines.train_baseline(cluener_dev[:40], cluener_dev[:8], config, tmp_path, progress=False, log=print)
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    assert result["best_epoch"] == 2 and result["best"] == 0.5
    model, _ = load_baseline(tmp_path)
    saved = model.state_dict()
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[3][k]) for k in saved)


def test_long_sentence_predictions_are_shifted_back_to_the_full_text():
    """Pieces of a long sentence are tagged apart; their spans land at full-text offsets."""
    from llm_ner.baselines import build_model

    labels = ("name",)
    config = BaselineConfig(
        arch="bilstm-crf",
        labels=labels,
        tags=tuple(tag_set(labels)),  # O, B-name, I-name
        chars=("[PAD]", "[UNK]", "张", "三", "说"),
        max_chars=10,
    )
    model, batcher = build_model(config)

    def emissions(batch):  # 张 -> B-name, 三 -> I-name, anything else -> O
        ids = batch["char_ids"]
        out = torch.full((*ids.shape, 3), -10.0)
        out[..., 0] = torch.where((ids == 2) | (ids == 3), -10.0, 10.0)
        out[..., 1] = torch.where(ids == 2, 10.0, -10.0)
        out[..., 2] = torch.where(ids == 3, 10.0, -10.0)
        return out

    model.emissions = emissions
    text = "说张三说说" * 8  # 40 characters: four pieces of 10, no name across a cut
    [result] = predict_examples(model, batcher, [Example("0", text)])
    assert result.spans == [Span(i + 1, i + 3, "name") for i in range(0, len(text), 5)]


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


def test_weights_of_the_former_bidirectional_lstm_still_load_and_agree():
    """Models saved before `BiLSTM` had one packed bidirectional nn.LSTM (`lstm.weight_ih_l0`,
    `lstm.weight_ih_l0_reverse`, ...): renamed on load, they give the same outputs as before."""
    from torch import nn

    from llm_ner.baselines import bilstm_state_renamed
    from llm_ner.baselines.models import BiLSTMCRF

    torch.manual_seed(0)
    old_lstm = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
    model = BiLSTMCRF(vocab_size=20, num_tags=5, embedding_dim=8, hidden_size=12).eval()
    old_state = {k: v for k, v in model.state_dict().items() if not k.startswith("lstm.")}
    old_state.update({f"lstm.{k}": v for k, v in old_lstm.state_dict().items()})
    missing, unexpected = model.load_state_dict(bilstm_state_renamed(old_state), strict=False)
    assert not missing and not unexpected
    x = torch.randn(3, 7, 8)
    lengths = torch.tensor([7, 3, 5])
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    before, _ = nn.utils.rnn.pad_packed_sequence(old_lstm(packed)[0], batch_first=True, total_length=7)
    after = model.lstm(x, mask)
    assert torch.allclose(after[mask], before[mask], atol=1e-6)


def test_crf_forward_backward_marginals_match_brute_force():
    """alpha + beta gives log Z at every position, and the probability of any stretch of tags equals the
    summed probabilities of the brute-force paths through it, in every row of a padded batch."""
    from llm_ner.baselines.crf import segment_log_probability

    torch.manual_seed(5)
    num_tags, lengths = 4, [4, 2, 3, 1]
    crf = CRF(num_tags)
    with torch.no_grad():
        crf.transitions.normal_(0, 1.5)
        crf.start.normal_()
        crf.end.normal_()
    width = max(lengths)
    emissions = torch.randn(len(lengths), width, num_tags) * 2
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    alpha, beta = crf.forward_backward(emissions, mask)
    log_z = crf.log_partition(emissions, mask).detach()
    transitions = crf.transitions.detach()
    checked = 0
    for row, length in enumerate(lengths):
        paths, scores = brute_force(crf, emissions[row : row + 1], length)
        probabilities = (scores - torch.logsumexp(scores, 0)).exp().detach()
        for t in range(length):
            assert torch.allclose(torch.logsumexp(alpha[row, t] + beta[row, t], 0), log_z[row], atol=1e-4)
        for start in range(length):
            for size in range(1, length - start + 1):
                for stretch in itertools.product(range(num_tags), repeat=size):
                    expected = sum(
                        float(p) for path, p in zip(paths, probabilities) if path[start : start + size] == stretch
                    )
                    got = segment_log_probability(
                        alpha[row], beta[row], emissions[row], transitions, log_z[row], start, list(stretch)
                    ).exp()
                    assert float(got) == pytest.approx(expected, abs=1e-5), (row, start, stretch)
                    checked += 1
    assert checked > 300


def test_baseline_prediction_scores_match_brute_force():
    """The entity scores and answer score of `predict_examples` against enumerating every tag path: an
    entity's score is P(its decoded tags, then no I- of its type), the answer score P(best path)^(1/n)."""
    from llm_ner.baselines.tagging import PAD, UNK

    labels = ("a", "b")
    chars = (PAD, UNK, *"甲乙丙丁戊")
    config = BaselineConfig(arch="bilstm-crf", labels=labels, tags=tuple(tag_set(labels)), chars=chars)
    tags = config.tags

    class TableTagger(torch.nn.Module):  # emissions looked up per character: easy to enumerate
        def __init__(self):
            super().__init__()
            torch.manual_seed(11)
            self.table = torch.randn(len(chars), len(tags)) * 2
            self.crf = CRF(len(tags))
            with torch.no_grad():
                self.crf.transitions.normal_(0, 1.5)

        def emissions(self, batch):
            return self.table[batch["char_ids"]]

    model = TableTagger()
    texts = ["甲乙丙丁", "丁丙乙甲", "戊甲甲乙", "乙戊丁丁", "丙丙甲戊", "甲乙戊丁"]
    examples = [Example(str(i), text) for i, text in enumerate(texts)]
    scores, answer_scores = {}, {}
    predicted = predict_examples(model, TensorBatcher(config), examples, 4, scores=scores, answer_scores=answer_scores)
    checked = boundary = 0
    for example in predicted:
        emissions = model.table[[chars.index(c) for c in example.text]].unsqueeze(0)
        paths, path_scores = brute_force(model.crf, emissions, len(example.text))
        probabilities = (path_scores - torch.logsumexp(path_scores, 0)).exp().detach()
        best = paths[int(path_scores.argmax())]
        assert answer_scores[example.id] == pytest.approx(float(probabilities.max()) ** (1 / len(example.text)))
        for span in example.spans:
            inside = tags.index(f"I-{span.label}")
            expected = sum(
                float(p)
                for path, p in zip(paths, probabilities)
                if path[span.start : span.end] == best[span.start : span.end]
                and (span.end == len(path) or path[span.end] != inside)
            )
            assert scores[example.id][span] == pytest.approx(expected, abs=1e-6), (example, span)
            checked += 1
            boundary += span.end < len(example.text)
    assert checked >= 4 and boundary >= 2  # entities were found, some followed by a character


def test_a_model_pt_cut_anywhere_is_a_damaged_file_not_a_traceback(tmp_path):
    """torch's zip reader reports a truncated model.pt as RuntimeError or, depending on where the file was
    cut, OSError(EINVAL): every cut gives the one-line DataError."""
    from llm_ner.baselines.training import WEIGHTS_FILE, build_model, save_baseline
    from llm_ner.errors import DataError

    config = BaselineConfig(arch="bilstm-crf", embedding_dim=8, hidden_size=8, labels=("name",),
                            tags=("O", "B-name", "I-name"), chars=tuple("浙商银行"))  # fmt: skip
    model, _ = build_model(config)
    save_baseline(model, config, tmp_path)
    whole = (tmp_path / WEIGHTS_FILE).read_bytes()
    load_baseline(tmp_path)  # the whole file loads
    for cut in range(1, 32):
        (tmp_path / WEIGHTS_FILE).write_bytes(whole[: len(whole) * cut // 32])
        with pytest.raises(DataError, match="cannot load the weights"):
            load_baseline(tmp_path)
