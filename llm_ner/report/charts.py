"""The report's PNG charts (matplotlib, imported on first use: only `llm-ner report` draws)."""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np

_Draw = TypeVar("_Draw", bound=Callable[..., None])
# Cut a sanitized system name to this many UTF-8 bytes: "confusion_" + stem + "-" + hash + ".png" stays
# well under the 255 bytes a file name may have.
_STEM_BYTES = 120


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed, same output everywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_text(draw: _Draw) -> _Draw:
    """Draw with mathtext off: system names and labels are data, so ``$\\foo$`` in one is shown as
    written rather than parsed as TeX (where an unknown command raises)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with _pyplot().rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sanitized(name: str) -> str:
    """``name`` with every character a file name may not hold (or that a shell would trip on) as ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def chart_stems(names: Iterable[str]) -> dict[str, str]:
    """Per system name, the stem of its chart files (``confusion_<stem>.png``): readable, deterministic, unique.

    An ordinary name (letters, digits, ``-_.``) is its own stem, as in earlier reports. Any other name
    is sanitized and gets the first hex digits of its SHA-1, so ``a/b`` and ``a_b`` no longer write the
    same file; so does a name whose stem equals another's up to case or Unicode normalization, which
    a case-insensitive file system (macOS, Windows) would store as one file.
    """
    names = list(names)
    plain = {name: _sanitized(name).encode("utf-8")[:_STEM_BYTES].decode("utf-8", "ignore") for name in names}
    hashed = {name for name in names if plain[name] != name}
    for digits in (8, 16, 40):  # a longer hash only where a shorter one still collides (never, in practice)
        stems = {
            name: f"{plain[name]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:digits]}" if name in hashed else stem
            for name, stem in plain.items()
        }
        folded = Counter(_folded(stem) for stem in stems.values())
        clashing = {name for name, stem in stems.items() if folded[_folded(stem)] > 1}
        if not clashing:
            break
        hashed |= clashing
    return stems


def _folded(stem: str) -> str:
    """The key under which a case- and normalization-insensitive file system compares file names."""
    return unicodedata.normalize("NFC", stem).casefold()


@_plain_text
def plot_f1_per_class(report: dict, path: str | Path) -> None:
    """A grouped bar chart of span F1 per class for every system (published ones hatched)."""
    plt = _pyplot()
    labels = report["labels"]
    series = [
        (name, [r["span"]["per_class"].get(label, {}).get("f1-score", 0.0) for label in labels], False)
        for name, r in report["systems"].items()
    ]
    for name, system in ((report.get("published") or {}).get("systems") or {}).items():
        series.append((f"{name} (published)", [system["summary_f1"].get(label, 0.0) for label in labels], True))
    width = 0.8 / max(1, len(series))
    figure, axis = plt.subplots(figsize=(max(8, len(labels) * 1.2), 4.5))
    x = np.arange(len(labels))
    for i, (name, values, published) in enumerate(series):
        axis.bar(
            x + i * width - 0.4 + width / 2,
            values,
            width,
            label=name,
            hatch="//" if published else None,
            alpha=0.6 if published else 1.0,
        )
    axis.set_xticks(x, labels, rotation=30, ha="right")
    axis.set_ylabel("span F1")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, ncol=2)
    axis.set_title("F1 per class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@_plain_text
def plot_confusion(confusion: dict, title: str, path: str | Path) -> None:
    """A confusion matrix as a heatmap (color: share of the gold row; numbers: counts)."""
    plt = _pyplot()
    names, matrix = confusion["labels"], np.array(confusion["matrix"], dtype=float)
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.0 + 0.6 * len(names), 0.8 + 0.55 * len(names)))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j]:
                color = "white" if shares[i, j] > 0.5 else "black"
                axis.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set_xlabel("predicted type")
    axis.set_ylabel("gold type")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@_plain_text
def plot_pr_curve(curve: dict, name: str, path: str | Path) -> None:
    """The precision-recall curve of `llm_ner.confidence.pr_curve` with the best-F1 threshold marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 4))
    recall = [p["recall"] for p in curve["points"]]
    precision = [p["precision"] for p in curve["points"]]
    axis.step(recall, precision, where="post", label=f"{name} (AUC {curve['auc']:.3f})")
    overall = precision[-1] if precision else 0.0
    axis.axhline(overall, color="grey", linestyle=":", label=f"random ranking (AUC {curve['random_auc']:.3f})")
    best = curve["best"]
    axis.plot([best["recall"]], [best["precision"]], "o", color="red")
    axis.annotate(
        f"best F1 {best['f1']:.3f}\nscore >= {best['threshold']:.3g}",
        (best["recall"], best["precision"]),
        textcoords="offset points",
        xytext=(8, -24),
        fontsize=8,
    )
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=8, loc="lower left")
    axis.set_title(f"{name}: precision-recall over the confidence threshold", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@_plain_text
def plot_learning_curve(series: dict[str, list[dict]], path: str | Path) -> None:
    """Dev F1 against labelled sentences, one line per arm (`learning_curve.curve_series`): the mean over
    seeds, each seed's points as dots and, with one seed, the 95% bootstrap interval as a band."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for arm, entries in series.items():
        x = [entry["labelled"] for entry in entries]
        (line,) = axis.plot(x, [entry["f1"] for entry in entries], marker="o", label=arm)
        if all(len(entry["points"]) == 1 and entry["points"][0].get("ci95") for entry in entries):
            low = [entry["points"][0]["ci95"][0] for entry in entries]
            high = [entry["points"][0]["ci95"][1] for entry in entries]
            axis.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
        else:
            for entry in entries:
                axis.plot(
                    [p["labelled"] for p in entry["points"]],
                    [p["f1"] for p in entry["points"]],
                    ".",
                    color=line.get_color(),
                    alpha=0.5,
                )
    from matplotlib.ticker import FuncFormatter

    counts = [entry["labelled"] for entries in series.values() for entry in entries]
    positive = [count for count in counts if count > 0]
    if positive and max(positive) >= 20 * min(positive):
        # Label counts that grow by multiples (160, 640, 2 240, 10 748) read on a log scale; 0 stays on it.
        axis.set_xscale("symlog", linthresh=min(positive))
        axis.set_xticks(sorted(set(counts)))
        axis.get_xaxis().set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axis.tick_params(axis="x", labelsize=7)
    axis.set_xlabel("labelled sentences")
    axis.set_ylabel("dev span micro-F1")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    axis.set_title("Learning curve", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
