"""The side-by-side report: every system scored by `llm_ner.metrics` on the same gold file.

    llm-ner report --gold dev.json --pred qwen=runs/q/dev.pred.json --pred bilstm=runs/b/dev.pred.json \\
        --published eval/published_cluener.json --out runs/report

writes ``report.md`` (per-system tables, the summary of F1 per class with micro F1 last,
published figures as extra rows marked "published, not re-run", error breakdowns, paired
bootstrap confidence intervals of micro-F1 differences), ``report.json`` and ``f1_per_class.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import Example, check_output_path, load_examples
from .errors import DataError, UsageError
from .metrics import evaluate, format_error_table, format_scores_table, markdown_table, match_predictions

PUBLISHED_MARK = "published, not re-run"


def parse_counters(path: str | Path) -> dict[str, int] | None:
    """The sum of the ``parse`` counters `llm-ner extract` writes per record (None if there are none)."""
    totals: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                counts = json.loads(line).get("parse")
            except (json.JSONDecodeError, AttributeError):
                continue  # load_examples has validated the file; nothing to count here
            if isinstance(counts, dict):
                for key, value in counts.items():
                    if isinstance(value, int):
                        totals[key] = totals.get(key, 0) + value
    return totals or None


def read_system_scores(predictions: dict[str, str]) -> dict[str, dict]:
    """Per system the entity confidences its prediction file carries (`llm-ner extract`), if any."""
    from .confidence import read_scores

    return {name: read_scores(path) for name, path in predictions.items()}


def parse_pred_arguments(values: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=FILE`` pairs, names unique."""
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--pred expects NAME=FILE, got {value!r}")
        if name in {n for n, _ in pairs}:
            raise UsageError(f"--pred name {name!r} given twice")
        pairs.append((name, path))
    return pairs


def _per_sentence_counts(gold: Sequence[Example], pred: Sequence[Example]) -> np.ndarray:
    """(sentences, 3): correct, predicted, gold spans of every sentence."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gold_set, pred_set = set(g.spans), set(p.spans)
        counts[i] = (len(gold_set & pred_set), len(pred_set), len(gold_set))
    return counts


def _micro_f1(counts: np.ndarray) -> np.ndarray:
    correct, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = predicted + gold
    return np.where(denominator > 0, 2 * correct / np.maximum(denominator, 1), 0.0)


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Micro-F1 of A minus B with a 95% interval from resampling sentences (paired)."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(counts_a), size=(resamples, len(counts_a)))
    diffs = _micro_f1(counts_a[index].sum(1)) - _micro_f1(counts_b[index].sum(1))
    observed = float(_micro_f1(counts_a.sum(0)) - _micro_f1(counts_b.sum(0)))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": observed,
        "ci95": [float(low), float(high)],
        "resamples": resamples,
        "p_b_better_or_equal": float((diffs <= 0).mean()),
    }


def build_report(
    gold: Sequence[Example],
    systems: dict[str, Sequence[Example]],
    published: dict | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """All numbers of the report as a JSON-ready dict."""
    labels = sorted({s.label for ex in gold for s in ex.spans})
    result = {"sentences": len(gold), "labels": labels, "systems": {}, "bootstrap": [], "published": None}
    counts = {}
    for name, predictions in systems.items():
        aligned, _ = match_predictions(gold, predictions)
        result["systems"][name] = evaluate(gold, predictions, labels)
        counts[name] = _per_sentence_counts(gold, aligned)
    names = list(systems)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            result["bootstrap"].append({"a": a, "b": b, **paired_bootstrap(counts[a], counts[b], resamples, seed)})
    if published:
        result["published"] = published
    return result


def summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: span F1 per class and micro F1 of every system, then the
    published figures (marked as not re-run)."""
    labels = report["labels"]
    rows = []
    for name, result in report["systems"].items():
        per = result["span"]["per_class"]
        cells = [f"{per[label]['f1-score']:.4f}" if label in per else "-" for label in labels]
        rows.append([name, *cells, f"{result['span']['micro avg']['f1-score']:.4f}"])
    published = report.get("published") or {}
    for name, system in (published.get("systems") or {}).items():
        summary = system["summary_f1"]
        cells = [f"{summary[label]:.2f}" if label in summary else "-" for label in labels]
        rows.append([f"{name} ({PUBLISHED_MARK})", *cells, f"{summary['micro avg']:.2f}"])
    return ["system", *labels, "micro avg"], rows


def render_markdown(report: dict, chart: str | None = None) -> str:
    """The text of report.md."""
    parts = [
        "# Side-by-side report",
        "",
        f"{report['sentences']} sentences of `{report.get('gold', 'the gold file')}`. Scores are exact span "
        "matches (start, end and type) computed by `llm-ner evaluate` for every system on the same gold file.",
        "",
        *([report["note"], ""] if report.get("note") else []),
        "## Summary: span-level F1 per class, micro F1 last",
        "",
        markdown_table(*summary_rows(report)),
    ]
    published = report.get("published")
    if published:
        parts += [
            "",
            f'Rows marked "{PUBLISHED_MARK}": {published.get("source", "")} '
            f"{published.get('scoring', '')} {published.get('note', '')}".rstrip(),
        ]
    if chart:
        parts += ["", f"![F1 per class]({chart})"]
    if report["bootstrap"]:
        parts += [
            "",
            "## Micro-F1 differences (paired bootstrap over sentences, 95% interval)",
            "",
            "| A | B | A - B | 95% interval | resamples |",
            "|---|---|---:|---|---:|",
        ]
        for row in report["bootstrap"]:
            low, high = row["ci95"]
            parts.append(
                f"| {row['a']} | {row['b']} | {row['difference']:+.4f} | [{low:+.4f}, {high:+.4f}] "
                f"| {row['resamples']} |"
            )
    parsing = {name: r["parsing"] for name, r in report["systems"].items() if r.get("parsing")}
    if parsing:
        keys = ("answers", "parse_failures", "hallucinated", "unknown_label", "duplicates", "repaired", "normalized")
        parts += [
            "",
            "## Answer parsing (systems whose predictions carry the raw answers)",
            "",
            "Counted by `llm-ner extract` for every answer: unreadable answers (parse failures), entity strings "
            "not in the sentence (hallucinated), types outside the schema, surplus repeats, answers read only "
            "after repair, mentions found only after width/case/space folding. See the README's "
            "troubleshooting when these are high.",
            "",
            "| system | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for name, counts in parsing.items():
            parts.append(f"| {name} | " + " | ".join(str(counts.get(k, 0)) for k in keys) + " |")
    for name, result in report["systems"].items():
        parts += [
            "",
            f"## {name}",
            "",
            "Span level:",
            "",
            format_scores_table(result["span"]),
            "",
            "CLUENER string level (the leaderboard's scoring):",
            "",
            format_scores_table(result["cluener_string"]),
            "",
            "Errors:",
            "",
            format_error_table(result["errors"]),
        ]
        if result["missing_predictions"]:
            parts.append(f"\n{result['missing_predictions']} gold sentences had no prediction (scored as empty).")
    return "\n".join(parts) + "\n"


def plot_f1_per_class(report: dict, path: str | Path) -> None:
    """A grouped bar chart of span F1 per class for every system (published ones hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def load_published(path: str | Path) -> dict:
    """Published figures (see eval/published_cluener.json), checked: `DataError` naming the file otherwise."""
    try:
        published = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(published, dict) or not isinstance(published.get("systems"), dict):
        raise DataError(path, None, 'expected a JSON object with "systems": {name: {"summary_f1": {...}}}')
    for name, system in published["systems"].items():
        summary = system.get("summary_f1") if isinstance(system, dict) else None
        if not isinstance(summary, dict):
            raise DataError(path, None, f'system {name!r}: no "summary_f1" object {{class: F1, "micro avg": F1}}')
        if "micro avg" not in summary:
            raise DataError(path, None, f'system {name!r}: "summary_f1" has no "micro avg"')
        for key, value in summary.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(path, None, f"system {name!r}: summary_f1[{key!r}] is {value!r}, not a number")
    return published


def plot_confusion(confusion: dict, title: str, path: str | Path) -> None:
    """A confusion matrix as a heatmap (color: share of the gold row; numbers: counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _file_name(system: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in system)


def write_browser_and_matrices(
    report: dict,
    gold: Sequence[Example],
    systems: dict[str, Sequence[Example]],
    out: Path,
    scores: dict[str, dict] | None = None,
) -> dict[str, str]:
    """Confusion matrices (into ``report`` and as PNGs), PR curves of scored systems, and report.html.

    Returns the chart files written, by name. ``scores[system]`` maps sentence id -> {span: score}.
    """
    from .metrics import confusion_matrix
    from .report_html import browser_data, write_report_html

    images = {"f1_per_class": str(out / "f1_per_class.png")}
    aligned = {}
    for name, predictions in systems.items():
        aligned[name], _ = match_predictions(gold, predictions)
        confusion = confusion_matrix([ex.spans for ex in gold], [ex.spans for ex in aligned[name]], report["labels"])
        report["systems"][name]["confusion"] = confusion
        path = out / f"confusion_{_file_name(name)}.png"
        plot_confusion(confusion, f"{name}: gold type x predicted type", path)
        images[f"confusion:{name}"] = str(path)
    for name, by_id in (scores or {}).items():
        if by_id:
            from .confidence import plot_pr_curve, pr_curve

            curve = pr_curve(gold, aligned[name], by_id)
            report["systems"][name]["pr_curve"] = {k: v for k, v in curve.items() if k != "points"}
            path = out / f"pr_{_file_name(name)}.png"
            plot_pr_curve(curve, name, path)
            images[f"pr:{name}"] = str(path)
    data = browser_data(gold, aligned, report["labels"], scores)
    write_report_html(report, data, out / "report.html", images)
    return images


def run_report(
    gold_path: str,
    preds: Sequence[str],
    out_dir: str,
    published_path: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    note: str | None = None,
) -> Path:
    """`llm-ner report`: score every prediction file and write report.md, report.json and the chart."""
    out = Path(out_dir)
    outputs = {name: out / name for name in ("report.md", "report.json", "f1_per_class.png")}
    pairs = parse_pred_arguments(preds)
    for target in outputs.values():
        check_output_path(target, {"--gold": gold_path, **{f"--pred {n}": p for n, p in pairs}}, "--out")
    gold, _ = load_examples(gold_path)
    systems = {}
    parsing = {}
    for name, path in pairs:
        systems[name], _ = load_examples(path, "cluener", allow_empty=True)
        parsing[name] = parse_counters(path)
    published = load_published(published_path) if published_path else None
    report = build_report(gold, systems, published, resamples, seed)
    report["gold"] = str(gold_path)
    report["predictions"] = dict(pairs)
    report["note"] = note
    for name, counts in parsing.items():
        report["systems"][name]["parsing"] = counts
    for name, result in report["systems"].items():  # on the console too, not only inside report.md
        if result["missing_predictions"]:
            print(
                f"warning: {name}: {result['missing_predictions']} of {report['sentences']} gold sentences have no "
                "prediction (scored as empty)",
                file=sys.stderr,
            )
        for warning in result.get("warnings", []):
            print(f"warning: {name}: {warning}", file=sys.stderr)
    # Every file is written into a staging folder first and moved into place only when all exist: a
    # failure leaves the previous report as it was, never a mix of old and new files.
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report.", dir=out))
    try:
        plot_f1_per_class(report, staging / "f1_per_class.png")
        write_browser_and_matrices(report, gold, systems, staging, read_system_scores(report["predictions"]))
        (staging / "report.md").write_text(render_markdown(report, "f1_per_class.png"), encoding="utf-8")
        (staging / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        for written in sorted(staging.iterdir()):
            os.replace(written, out / written.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
