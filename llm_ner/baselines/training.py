"""Training, prediction, saving and loading of the baseline taggers."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pickle
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import Example, Span, atomic_path, split_long, tags_to_spans, write_text_atomic
from ..errors import DataError
from ..metrics import span_scores
from .config import ARCHS, BaselineConfig
from .crf import segment_log_probability
from .models import BertCRF, BiLSTMCRF, loss_and_paths
from .tagging import PAD, UNK, TensorBatcher, auto_batch_size, for_tagging, length_bucketed_batches, tag_set

log = logging.getLogger(__name__)

CONFIG_FILE = "baseline.json"
WEIGHTS_FILE = "model.pt"


def build_model(config: BaselineConfig, encoder_dir: str | None = None):
    """The network and its batcher; BERT encoders load from ``encoder_dir`` or ``config.encoder``."""
    if config.arch not in ARCHS:
        raise ValueError(f"unknown arch {config.arch!r} (choose from {', '.join(ARCHS)})")
    if config.arch == "bilstm-crf":
        model = BiLSTMCRF(
            len(config.chars), len(config.tags), config.embedding_dim, config.hidden_size, dropout=config.dropout
        )
        return model, TensorBatcher(config)
    from transformers import AutoModel, AutoTokenizer

    source = encoder_dir or config.encoder
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.is_fast:
        raise ValueError(f"{source}: a fast tokenizer is needed to map characters to sub-tokens")
    encoder = AutoModel.from_pretrained(source)
    lstm = config.hidden_size if config.arch == "bert-bilstm-crf" else None
    return BertCRF(encoder, len(config.tags), lstm_hidden=lstm, dropout=0.1), TensorBatcher(config, tokenizer)


def predict_examples(
    model,
    batcher: TensorBatcher,
    examples: Sequence[Example],
    batch_size: int = 64,
    progress: bool = False,
    scores: dict[str, dict[Span, float]] | None = None,
    answer_scores: dict[str, float] | None = None,
) -> list[Example]:
    """Spans for every example (long sentences split and shifted back).

    ``scores`` and ``answer_scores``, if given, are filled with the confidences `llm-ner extract` writes
    (see `llm_ner.confidence`): per sentence id, each entity's probability under the CRF (`entity_probability`)
    and the geometric mean over the characters of the conditional probabilities of the decoded path, i.e.
    P(path)^(1/characters), as an LLM's answer score is the geometric mean of its tokens' probabilities."""
    from tqdm.auto import tqdm

    tags = batcher.config.tags
    pieces = [
        (ex.id, offset, Example(ex.id, piece))
        for ex in examples
        for offset, piece in split_long(ex.text, batcher.config.max_chars)
    ]
    pieces.sort(key=lambda item: len(item[2].text))  # batches of similar lengths pad little
    found: dict[str, list[Span]] = {ex.id: [] for ex in examples}
    path_log_probability = {ex.id: 0.0 for ex in examples}
    model.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(pieces), batch_size), disable=not progress, unit="batch", desc="predict"):
            chunk = pieces[start : start + batch_size]
            batch = batcher([piece for _, _, piece in chunk], with_tags=False)
            emissions = model.emissions(batch)
            paths = model.crf.decode(emissions, batch["mask"])
            tables = _probability_tables(model.crf, emissions, batch["mask"], paths) if scores is not None else None
            for row, ((example_id, offset, piece), path) in enumerate(zip(chunk, paths)):
                labels = [tags[i] for i in path[: len(piece.text)]]
                # The CRF may still emit I- after O early in training: read it leniently.
                repaired = [
                    f"B-{t[2:]}" if t.startswith("I-") and (i == 0 or labels[i - 1][2:] != t[2:]) else t
                    for i, t in enumerate(labels)
                ]
                spans = tags_to_spans(repaired)
                found[example_id] += [Span(s.start + offset, s.end + offset, s.label) for s in spans]
                if tables is not None:
                    alpha, beta, emitted, log_z, path_scores = (table[row] for table in tables)
                    path_log_probability[example_id] += float(path_scores - log_z)
                    for span in spans:
                        probability = entity_probability(alpha, beta, emitted, model.crf, log_z, path, span, tags)
                        scores.setdefault(example_id, {})[Span(span.start + offset, span.end + offset, span.label)] = (
                            probability
                        )
    if answer_scores is not None:
        for ex in examples:
            answer_scores[ex.id] = math.exp(path_log_probability[ex.id] / max(1, len(ex.text)))
    return [Example(ex.id, ex.text, sorted(found[ex.id], key=lambda s: (s.start, s.end))) for ex in examples]


def _probability_tables(crf, emissions: torch.Tensor, mask: torch.Tensor, paths: list[list[int]]) -> tuple:
    """Per sentence of a batch, in float64: alpha, beta, emissions, log Z and the decoded path's score."""
    emissions = emissions.double()
    alpha, beta = crf.forward_backward(emissions, mask)
    lengths = mask.long().sum(1)
    rows = torch.arange(len(paths))
    log_z = torch.logsumexp(alpha[rows, lengths - 1] + crf.end.double(), dim=1)
    padded = torch.tensor([path + [0] * (emissions.shape[1] - len(path)) for path in paths])
    path_scores = crf.score(emissions, padded, mask)
    return alpha, beta, emissions, log_z, path_scores


def entity_probability(alpha, beta, emissions, crf, log_z, path: list[int], span: Span, tags: Sequence[str]) -> float:
    """P(the tagger reads exactly ``span``): the decoded tags over the span, then any tag but its I- tag
    (which would make it longer). Exact over all tag paths (forward-backward, `crf.segment_log_probability`)."""
    segment = path[span.start : span.end]
    transitions = crf.transitions.double()
    probability = segment_log_probability(alpha, beta, emissions, transitions, log_z, span.start, segment).exp()
    inside = f"I-{span.label}"
    if span.end < len(path) and inside in tags:
        longer = [*segment, tags.index(inside)]
        probability -= segment_log_probability(alpha, beta, emissions, transitions, log_z, span.start, longer).exp()
    return min(1.0, max(0.0, float(probability)))


def train_baseline(
    train: Sequence[Example],
    dev: Sequence[Example],
    config: BaselineConfig,
    out_dir: str | Path,
    progress: bool = True,
    log=print,
) -> dict:
    """Train, keep the weights with the best dev span micro-F1, return the history.

    ``config.batch_size`` 0 picks :func:`auto_batch_size`; with a dev set, training stops after
    ``config.patience`` epochs without a better dev F1."""
    from tqdm.auto import tqdm

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    labels = sorted({s.label for ex in train for s in ex.spans})
    chars = sorted({c for ex in train for c in ex.text})
    config = dataclasses.replace(
        config,
        labels=tuple(labels),
        tags=tuple(tag_set(labels)),
        chars=(PAD, UNK, *chars) if config.arch == "bilstm-crf" else (),
    )
    pieces, dropped = for_tagging(train, config.max_chars)
    if dropped:
        log(f"note: {dropped} training spans cannot be BIO-tagged (nested or across a cut) and were left out")
    if not config.batch_size:
        config = dataclasses.replace(config, batch_size=auto_batch_size(len(pieces)))
        log(f"batch size {config.batch_size} ({len(pieces)} training pieces / 100, between 8 and 64)")
    model, batcher = build_model(config)
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    groups = [{"params": head, "lr": config.learning_rate}]
    if config.arch != "bilstm-crf":
        groups.append({"params": list(model.encoder.parameters()), "lr": config.encoder_learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    history, best, best_epoch = [], float("-inf"), 0  # without dev the score is -loss, below -1 early on
    for epoch in range(1, config.epochs + 1):
        model.train()
        started, total, steps = time.perf_counter(), 0.0, 0
        bar = tqdm(
            length_bucketed_batches(pieces, config.batch_size, rng),
            disable=not progress,
            unit="batch",
            desc=f"epoch {epoch}/{config.epochs}",
        )
        for examples in bar:
            loss, _ = loss_and_paths(model, batcher(examples))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total += loss.item()
            steps += 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        seconds = time.perf_counter() - started
        entry = {"epoch": epoch, "train_loss": total / max(1, steps), "epoch_seconds": seconds}
        if dev:
            predicted = predict_examples(model, batcher, dev, max(64, config.batch_size))
            scores = span_scores([ex.spans for ex in dev], [ex.spans for ex in predicted], labels)
            entry.update(dev_f1=scores.micro.f1, dev_precision=scores.micro.precision, dev_recall=scores.micro.recall)
        history.append(entry)
        log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}))
        score = entry.get("dev_f1", -entry["train_loss"])
        if score > best:
            best, best_epoch = score, epoch
            save_baseline(model, config, out)
        elif dev and config.patience and epoch - best_epoch >= config.patience:
            log(f"early stop: no better dev F1 in {config.patience} epochs (best {best:.4f}, epoch {best_epoch})")
            break
    write_text_atomic(json.dumps(history, indent=2) + "\n", out / "history.json")
    return {"history": history, "best": best, "best_epoch": best_epoch}


def save_baseline(model, config: BaselineConfig, out: Path) -> None:
    # Temporary files renamed into place: a kill while saving never leaves a truncated model.pt.
    write_text_atomic(json.dumps(dataclasses.asdict(config), ensure_ascii=False, indent=2) + "\n", out / CONFIG_FILE)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        torch.save(state, tmp)
    if config.arch != "bilstm-crf":  # the fine-tuned encoder and its tokenizer, loadable on their own
        from transformers import AutoTokenizer

        model.encoder.save_pretrained(out / "encoder")
        AutoTokenizer.from_pretrained(config.encoder).save_pretrained(out / "encoder")


def load_baseline(model_dir: str | Path):
    """(model, batcher) of a trained baseline directory."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{model_dir}: no {CONFIG_FILE} (not a baseline directory)")
    try:
        raw = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        config = BaselineConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; TypeError: unknown fields
        raise DataError(model_dir / CONFIG_FILE, None, f"not a baseline config: {exc}") from None
    encoder_dir = str(model_dir / "encoder") if config.arch != "bilstm-crf" else None
    model, batcher = build_model(config, encoder_dir)
    weights = model_dir / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError):
        raise
    # Truncated or foreign: torch's zip reader says so with RuntimeError or, depending on where the file
    # was cut, OSError(EINVAL).
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(weights, None, f"cannot load the weights ({reason}): damaged or not from training") from None
    if not isinstance(state, dict):
        raise DataError(weights, None, "not a state dict of baseline weights")
    try:
        missing, unexpected = model.load_state_dict(bilstm_state_renamed(state), strict=False)
    except RuntimeError as exc:  # shapes differ
        raise DataError(weights, None, f"weights do not fit {CONFIG_FILE}: {str(exc).splitlines()[0]}") from None
    if unexpected or [k for k in missing if not k.startswith("encoder.")]:
        raise DataError(weights, None, f"weights do not fit {CONFIG_FILE} (missing or unexpected tensors)")
    return model, batcher


def bilstm_state_renamed(state: dict) -> dict:
    """Weights saved when ``lstm`` was one bidirectional ``nn.LSTM`` (``lstm.weight_ih_l0``,
    ``..._reverse``), renamed for `models.BiLSTM`'s two directions; other keys unchanged."""
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"lstm\.((?:weight|bias)_(?:ih|hh)_l0)(_reverse)?", key)
        if match:
            key = f"lstm.{'backward' if match[2] else 'forward'}_lstm.{match[1]}"
        renamed[key] = value
    return renamed


def log_stderr(message: str) -> None:
    """The training log of `llm-ner baseline train`: one line on stderr (the command's log)."""
    log.info(message)
