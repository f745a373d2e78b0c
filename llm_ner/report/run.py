"""`llm-ner report`: read the gold and prediction files, compute the numbers, write every file of the report."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..data import (
    check_output_path,
    load_examples,
    naming_write_failures,
    remove_stale_temporaries,
    temporary_prefix,
)
from ..errors import DataError, UsageError
from ..metrics import match_predictions
from .charts import chart_stems, plot_confusion, plot_f1_per_class, plot_learning_curve, plot_pr_curve
from .html import browser_data, write_report_html
from .inputs import load_published, parse_counters, parse_failure_line, parse_pred_arguments, read_system_scores
from .learning_curve import curve_series, read_learning_curve
from .markdown import render_markdown
from .numbers import add_confusion_matrices, add_pr_curves, build_report
from .options import ReportOptions

log = logging.getLogger(__name__)


def _check_outputs(options: ReportOptions, pairs: list[tuple[str, str]], stems: dict[str, str]) -> Path:
    """The report folder; every file the report writes is checked not to be one of its inputs."""
    out = Path(options.out)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise UsageError(f"--out {options.out} exists and is not a folder; --out names the folder of the report")
    outputs = ["report.md", "report.json", "report.html", "f1_per_class.png", "learning_curve.png"]
    outputs += [f"{kind}_{stem}.png" for stem in stems.values() for kind in ("confusion", "pr")]
    inputs = {"--gold": options.gold, "--published": options.published, "--learning-curve": options.learning_curve}
    inputs.update({f"--pred {n}": p for n, p in pairs})
    for target in (out / name for name in outputs):
        check_output_path(target, inputs, "--out")
    check_output_path(out, inputs, "--out")  # a folder holding any other input: refused too, as the README says
    return out


def _scored_report(options: ReportOptions, gold, systems: dict, pairs, curve_points) -> dict:
    """Every number of the report (`build_report`), the parse counters of each system and its warnings, also
    said on the console (not only inside report.md)."""
    published = load_published(options.published) if options.published else None
    report = build_report(gold, systems, published, options.resamples, options.seed)
    report["gold"] = str(options.gold)
    report["predictions"] = dict(pairs)
    report["note"] = options.note
    if curve_points:
        report["learning_curve"] = {"path": str(options.learning_curve), "points": curve_points}
    for name, path in pairs:
        counts = parse_counters(path)
        report["systems"][name]["parsing"] = counts
        unparsed = parse_failure_line(counts)
        if unparsed:  # said below with the other warnings, as `llm-ner evaluate` says it
            report["systems"][name]["warnings"] = [*report["systems"][name].get("warnings", []), unparsed]
    for name, result in report["systems"].items():
        if result["missing_predictions"]:
            log.warning(
                f"warning: {name}: {result['missing_predictions']} of {report['sentences']} gold sentences have no "
                "prediction (scored as empty)"
            )
        for warning in result.get("warnings", []):
            log.warning(f"warning: {name}: {warning}")
    return report


def _write_files(staging: Path, report: dict, gold, systems: dict, scores: dict, stems: dict, curve_points) -> None:
    """report.md, report.json, report.html and the charts, written into ``staging``."""
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


def run_report(options: ReportOptions) -> Path:
    """`llm-ner report`: score every prediction file and write report.md, report.json, report.html and the charts;
    with a ``learning_curve`` (a file of `llm-ner curve` points) its table and learning_curve.png too."""
    pairs = parse_pred_arguments(options.pred)
    stems = chart_stems(name for name, _ in pairs)
    out = _check_outputs(options, pairs, stems)
    gold, _ = load_examples(options.gold)
    systems = {name: load_examples(path, "cluener")[0] for name, path in pairs}
    curve_points = None
    if options.learning_curve:
        curve_points = read_learning_curve(options.learning_curve)
        if not curve_points:
            raise DataError(options.learning_curve, None, "no learning-curve points (write them with `llm-ner curve`)")
    report = _scored_report(options, gold, systems, pairs, curve_points)
    scores = read_system_scores(dict(pairs))  # before --out is made: a bad score leaves no folder behind
    # Every file is written into a staging folder first and moved into place only when all exist: a
    # failure leaves the previous report as it was, never a mix of old and new files.
    # A full or read-only disk names the folder the user gave, not the staging one; the staging folders of
    # killed runs (their process gone) are removed first.
    with naming_write_failures(out, temporary=out / ".report."):
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out / "report")
        staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(out / "report"), dir=out))
        try:
            _write_files(staging, report, gold, systems, scores, stems, curve_points)
            for written in sorted(staging.iterdir()):
                os.replace(written, out / written.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'report.json'} and the charts")
    return out
