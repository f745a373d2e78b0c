"""`llm-ner report`: read the gold and prediction files, compute the numbers, write every file of the report."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..data import check_output_path, load_examples
from ..errors import DataError, UsageError
from ..metrics import match_predictions
from .charts import chart_stems, plot_confusion, plot_f1_per_class, plot_learning_curve, plot_pr_curve
from .html import browser_data, write_report_html
from .inputs import load_published, parse_counters, parse_failure_line, parse_pred_arguments, read_system_scores
from .learning_curve import curve_series, read_learning_curve
from .markdown import render_markdown
from .numbers import add_confusion_matrices, add_pr_curves, build_report


def run_report(
    gold_path: str,
    preds: Sequence[str],
    out_dir: str,
    published_path: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    note: str | None = None,
    learning_curve: str | None = None,
) -> Path:
    """`llm-ner report`: score every prediction file and write report.md, report.json, report.html and the charts;
    with ``learning_curve`` (a file of `llm-ner curve` points) its table and learning_curve.png too."""
    out = Path(out_dir)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder; --out names the folder of the report")
    pairs = parse_pred_arguments(preds)
    stems = chart_stems(name for name, _ in pairs)
    outputs = ["report.md", "report.json", "report.html", "f1_per_class.png", "learning_curve.png"]
    outputs += [f"{kind}_{stem}.png" for stem in stems.values() for kind in ("confusion", "pr")]
    for target in (out / name for name in outputs):
        inputs = {"--gold": gold_path, "--published": published_path, "--learning-curve": learning_curve}
        inputs.update({f"--pred {n}": p for n, p in pairs})
        check_output_path(target, inputs, "--out")
    gold, _ = load_examples(gold_path)
    systems = {}
    parsing = {}
    for name, path in pairs:
        systems[name], _ = load_examples(path, "cluener", allow_empty=True)
        parsing[name] = parse_counters(path)
    published = load_published(published_path) if published_path else None
    curve_points = None
    if learning_curve:
        curve_points = read_learning_curve(learning_curve)
        if not curve_points:
            raise DataError(learning_curve, None, "no learning-curve points (write them with `llm-ner curve`)")
    report = build_report(gold, systems, published, resamples, seed)
    report["gold"] = str(gold_path)
    report["predictions"] = dict(pairs)
    report["note"] = note
    if curve_points:
        report["learning_curve"] = {"path": str(learning_curve), "points": curve_points}
    for name, counts in parsing.items():
        report["systems"][name]["parsing"] = counts
        unparsed = parse_failure_line(counts)
        if unparsed:  # printed below with the other warnings, as `llm-ner evaluate` prints it
            report["systems"][name]["warnings"] = [*report["systems"][name].get("warnings", []), unparsed]
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
        scores = read_system_scores(report["predictions"])
        aligned = {name: match_predictions(gold, predictions)[0] for name, predictions in systems.items()}
        add_confusion_matrices(report, gold, aligned)
        curves = add_pr_curves(report, gold, aligned, scores)
        images = {}
        if systems:  # a report of a learning curve alone has no systems to chart
            images["f1_per_class"] = str(staging / "f1_per_class.png")
            plot_f1_per_class(report, images["f1_per_class"])
        for name in systems:
            images[f"confusion:{name}"] = str(staging / f"confusion_{stems[name]}.png")
            plot_confusion(
                report["systems"][name]["confusion"], f"{name}: gold type x predicted type", images[f"confusion:{name}"]
            )
        for name, curve in curves.items():
            images[f"pr:{name}"] = str(staging / f"pr_{stems[name]}.png")
            plot_pr_curve(curve, name, images[f"pr:{name}"])
        if curve_points:
            images["learning_curve"] = str(staging / "learning_curve.png")
            plot_learning_curve(curve_series(curve_points), images["learning_curve"])
        data = browser_data(gold, aligned, report["labels"], scores)
        write_report_html(report, data, staging / "report.html", images)
        markdown = render_markdown(
            report, "f1_per_class.png" if systems else None, "learning_curve.png" if curve_points else None
        )
        (staging / "report.md").write_text(markdown, encoding="utf-8")
        (staging / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        for written in sorted(staging.iterdir()):
            os.replace(written, out / written.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
