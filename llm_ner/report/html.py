"""report.html: the report's tables and charts plus a sentence-by-sentence error browser, in one file.

Self-contained on purpose (opens from disk, no network): plain HTML and CSS, a little vanilla
JavaScript, the charts as inline PNGs and the sentences as JSON inside the page. The browser
pages through the sentences that pass the filters (system, class, error kind, text search,
"systems disagree"), so only one page of sentences is ever in the DOM: it stays fast on all of
CLUENER dev with several systems. The per-system counts are computed in the page from the
embedded data (the browser test checks them against report.json). The page's CSS, its JavaScript
and the browser's controls are the files in ``static/``, written into the page.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..data import Example, write_text_atomic
from ..metrics import PREDICTION_KINDS, classify_sentence
from .learning_curve import curve_series
from .tables import (
    BOOTSTRAP_HEADER,
    LEARNING_CURVE_NOTE,
    SCORES_HEADER,
    bootstrap_rows,
    error_rows,
    learning_curve_rows,
    scores_rows,
    summary_rows,
)

PAGE_SIZE = 50


def browser_data(
    gold: Sequence[Example],
    systems: dict[str, Sequence[Example]],
    labels: Sequence[str],
    scores: dict[str, dict[str, dict]] | None = None,
) -> dict:
    """The JSON the page reads: per sentence its gold spans and each system's classified predictions.

    ``systems`` must be aligned with ``gold`` (same order, see `metrics.match_predictions`);
    ``scores[system][sentence id][span]`` is a prediction's confidence where known.
    Spans are ``[start, end, label index]`` (end-exclusive); predictions add the kind index and
    the score (or null); ``missed`` lists, per system, the indices of the gold spans it missed.
    """
    names = list(systems)
    all_labels = list(dict.fromkeys([*labels, *sorted({s.label for ex in gold for s in ex.spans})]))
    for predictions in systems.values():
        all_labels += sorted({s.label for ex in predictions for s in ex.spans} - set(all_labels))
    label_index = {label: i for i, label in enumerate(all_labels)}
    kind_index = {kind: i for i, kind in enumerate(PREDICTION_KINDS)}
    sentences = []
    for i, example in enumerate(gold):
        gold_spans = list(example.spans)
        preds, missed = [], []
        for name in names:
            pred_spans = list(systems[name][i].spans)
            kinds, was_missed = classify_sentence(gold_spans, pred_spans)
            known = ((scores or {}).get(name) or {}).get(example.id) or {}
            preds.append(
                [
                    [s.start, s.end, label_index[s.label], kind_index[k], _rounded(known.get(s))]
                    for s, k in zip(pred_spans, kinds)
                ]
            )
            missed.append([j for j, m in enumerate(was_missed) if m])
        sentences.append(
            [example.id, example.text, [[s.start, s.end, label_index[s.label]] for s in gold_spans], preds, missed]
        )
    return {"labels": all_labels, "systems": names, "kinds": list(PREDICTION_KINDS), "sentences": sentences}


def _static(name: str) -> str:
    """A file of the page (CSS, JavaScript, the browser's controls) from ``static/``, shipped in the wheel."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(float(score), 4)


def _png(path: str | Path | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def confusion_heatmap(confusion: dict) -> str:
    """An HTML table of a confusion matrix, each cell shaded by its share of the row."""
    names = confusion["labels"]
    head = "<th>gold \\ predicted</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for name, row in zip(names, confusion["matrix"]):
        total = sum(row) or 1
        cells = []
        for j, value in enumerate(row):
            share = value / total
            diagonal = names[j] == name and name != "none"
            color = f"rgba(40,120,60,{share:.3f})" if diagonal else f"rgba(200,50,40,{share:.3f})"
            cells.append(f'<td style="background:{color}" title="{share:.1%} of the row">{value}</td>')
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return f'<table class="heatmap"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(report: dict, data: dict, images: dict[str, str] | None = None) -> str:
    """The text of report.html (``images``: chart name -> PNG path, embedded inline)."""
    images = images or {}
    parts = [
        "<h1>Side-by-side report</h1>",
        f"<p>{report['sentences']} sentences of <code>{html.escape(str(report.get('gold', 'the gold file')))}</code>. "
        "Scores are exact span matches (start, end and type).</p>",
    ]
    if report.get("note"):
        parts.append(f"<p>{html.escape(report['note'])}</p>")
    parts += [
        '<p><a href="#browser">sentences</a> · <a href="#charts">chart and intervals</a> · '
        + " · ".join(f'<a href="#system-{i}">{html.escape(name)}</a>' for i, name in enumerate(report["systems"]))
        + "</p>",
        "<h2>Summary: span F1 per class, micro F1 last</h2>",
        _table(*summary_rows(report)),
        "<h2>Counts per system</h2>",
        "<p>Computed in this page from the embedded sentences. Predictions by kind: correct, wrong type "
        "(right boundaries), wrong boundary (right type, overlapping), wrong type and boundary, spurious "
        "(overlapping no gold entity); missed: gold entities no prediction overlaps.</p>",
        '<table id="counts"></table>',
        "\n" + _static("browser.html"),  # on lines of its own in the page's source
        '<h2 id="charts">F1 per class</h2>',
        _png(images.get("f1_per_class")),
    ]
    if report.get("learning_curve"):
        curve = report["learning_curve"]
        parts += [
            "<h2>Learning curve</h2>",
            f"<p>{html.escape(LEARNING_CURVE_NOTE.format(path=curve['path']).replace('`', ''))}</p>",
            _table(*learning_curve_rows(curve_series(curve["points"]))),
            _png(images.get("learning_curve")),
        ]
    if report.get("bootstrap"):
        parts += [
            "<h2>Micro-F1 differences (paired bootstrap over sentences, 95% interval)</h2>",
            _table(BOOTSTRAP_HEADER, bootstrap_rows(report)),
        ]
    for number, (name, result) in enumerate(report["systems"].items()):
        parts.append(f'<h2 id="system-{number}">{html.escape(name)}</h2>')
        parts += [
            "<h3>Span level</h3>",
            _table(SCORES_HEADER, scores_rows(result["span"])),
        ]
        parts += [
            "<h3>Errors (gold spans by outcome; spurious by predicted class)</h3>",
            _table(*error_rows(result["errors"])),
        ]
        if result.get("confusion"):
            parts += [
                "<h3>Confusion of types (gold rows, predicted columns; none = missed / spurious)</h3>",
                confusion_heatmap(result["confusion"]),
            ]
        if result.get("pr_curve"):
            curve = result["pr_curve"]
            parts.append(
                f"<h3>Precision-recall over the confidence threshold</h3><p>AUC {curve['auc']:.4f} "
                f"(random ranking: {curve['random_auc']:.4f}); best F1 {curve['best']['f1']:.4f} at score &ge; "
                f"{curve['best']['threshold']:.4f}</p>"
            )
            held = curve.get("held_out")
            if held and held["applied_to"]:
                parts.append(
                    f"<p>Checked on unseen sentences: chosen on the first {held['chosen_on']} sentences, score &ge; "
                    f"{held['threshold']:.4f} takes F1 on the other {held['applied_to']} from {held['f1_all']:.4f} "
                    f"to {held['f1_thresholded']:.4f} ({held['dropped']} entities dropped).</p>"
                )
        parts.append(_png(images.get(f"confusion:{name}")))
        parts.append(_png(images.get(f"pr:{name}")))
    script = _static("report.js").replace("__PAGE__", str(PAGE_SIZE))
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="zh"><head><meta charset="utf-8"><title>llm-ner report</title>'
        f"<style>\n{_static('report.css')}</style></head><body>{''.join(parts)}"
        f'<script id="data" type="application/json">{payload}</script><script>\n{script}</script></body></html>\n'
    )


def write_report_html(report: dict, data: dict, path: str | Path, images: dict[str, str] | None = None) -> Path:
    """Write report.html via a temporary file and a rename."""
    path = Path(path)
    write_text_atomic(render_html(report, data, images), path)
    return path
