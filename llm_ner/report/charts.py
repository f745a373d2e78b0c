"""The report's PNG charts (matplotlib, imported on first use: only `llm-ner report` draws)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed, same output everywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
