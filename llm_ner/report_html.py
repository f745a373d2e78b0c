"""report.html: the report's tables and charts plus a sentence-by-sentence error browser, in one file.

Self-contained on purpose (opens from disk, no network): plain HTML and CSS, a little vanilla
JavaScript, the charts as inline PNGs and the sentences as JSON inside the page. The browser
pages through the sentences that pass the filters (system, class, error kind, text search,
"systems disagree"), so only one page of sentences is ever in the DOM: it stays fast on all of
CLUENER dev with several systems. The per-system counts are computed in the page from the
embedded data (the browser test checks them against report.json).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

from .data import Example, write_text_atomic
from .metrics import PREDICTION_KINDS, SCORES_HEADER, classify_sentence, error_rows, scores_rows
from .report import summary_rows

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
        BROWSER_HTML,
        '<h2 id="charts">F1 per class</h2>',
        _png(images.get("f1_per_class")),
    ]
    if report.get("bootstrap"):
        rows = [
            [b["a"], b["b"], f"{b['difference']:+.4f}", f"[{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}]", b["resamples"]]
            for b in report["bootstrap"]
        ]
        parts += [
            "<h2>Micro-F1 differences (paired bootstrap over sentences, 95% interval)</h2>",
            _table(["A", "B", "A - B", "95% interval", "resamples"], rows),
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
        parts.append(_png(images.get(f"confusion:{name}")))
        parts.append(_png(images.get(f"pr:{name}")))
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="zh"><head><meta charset="utf-8"><title>llm-ner report</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}"
        f'<script id="data" type="application/json">{payload}</script><script>{SCRIPT}</script></body></html>\n'
    )


def write_report_html(report: dict, data: dict, path: str | Path, images: dict[str, str] | None = None) -> Path:
    """Write report.html via a temporary file and a rename."""
    path = Path(path)
    write_text_atomic(render_html(report, data, images), path)
    return path


STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}
.heatmap td{min-width:3em}
#controls{position:sticky;top:0;background:#f6f6f6;padding:.5em;border:1px solid #ddd;z-index:1}
#controls label{margin-right:1em}
.sent{border-bottom:1px solid #e4e4e4;padding:.4em 0}.sid{color:#888;font-size:12px}
.row{line-height:2.1;font-size:15px}.who{display:inline-block;width:7em;color:#555;font-size:12px}
.e{padding:1px 2px;border-radius:3px;border:2px solid transparent}
.e sub{font-size:9px;margin-left:1px}
.k-correct{border-color:#2a8a3a}.k-wrong_type{border-color:#e08a00}.k-wrong_boundary{border-color:#7a3fb0;border-style:dashed}
.k-wrong_type_and_boundary{border-color:#d02020;border-style:dashed}.k-spurious{border-color:#d02020;text-decoration:line-through}
.missed{background:none!important;border:2px dotted #888;color:#666}
.chip{font-size:12px;margin-left:.5em;color:#555}
#pager button{margin:0 .3em}.legend span{margin-right:1em}
"""

BROWSER_HTML = """
<h2 id="browser">Sentences</h2>
<p>Filters can be preset in the address:
<code>#kind=missed&amp;class=name&amp;q=北京&amp;disagree=1&amp;system=a,b</code>.</p>
<div id="controls">
<span id="system-boxes"></span>
<label>class <select id="f-class"><option value="">any</option></select></label>
<label>kind <select id="f-kind"><option value="">any</option><option value="error">any error</option></select></label>
<label>search <input id="f-search" size="16" placeholder="text or id"></label>
<label><input type="checkbox" id="f-disagree"> systems disagree</label>
<span id="pager"><button id="prev">&lt;</button><span id="page-info"></span><button id="next">&gt;</button></span>
<div class="legend"><span class="e k-correct">correct</span><span class="e k-wrong_type">wrong type</span>
<span class="e k-wrong_boundary">wrong boundary</span>
<span class="e k-wrong_type_and_boundary">wrong type and boundary</span>
<span class="e k-spurious">spurious</span><span class="e missed">missed</span></div>
</div>
<div id="sentences"></div>
"""

SCRIPT = """
"use strict";
const t0 = performance.now();
const D = JSON.parse(document.getElementById("data").textContent);
const S = D.sentences, L = D.labels, K = D.kinds, SYS = D.systems, PAGE = __PAGE__;
const colors = L.map((_, i) => `hsl(${Math.round(i * 360 / L.length)},70%,85%)`);
const el = (tag, attrs, text) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text; return e; };
// per-system counts from the data
function counts() {
  const t = document.getElementById("counts");
  const keys = ["predicted", "correct", "gold", "missed", ...K.filter(k => k !== "correct")];
  t.appendChild(el("tr")).append(el("th", {}, "system"), ...keys.map(k => el("th", {}, k.replaceAll("_", " "))),
    el("th", {}, "precision"), el("th", {}, "recall"), el("th", {}, "F1"));
  SYS.forEach((name, s) => {
    const c = Object.fromEntries(keys.map(k => [k, 0]));
    for (const x of S) { c.gold += x[2].length; c.missed += x[4][s].length; c.predicted += x[3][s].length;
      for (const p of x[3][s]) c[K[p[3]]] += 1; }
    const P = c.predicted ? c.correct / c.predicted : 0, R = c.gold ? c.correct / c.gold : 0;
    const F = P + R ? 2 * P * R / (P + R) : 0;
    const tr = t.appendChild(el("tr")); tr.appendChild(el("td", {}, name));
    keys.forEach(k => tr.appendChild(el("td", {"class": "count", "data-system": name, "data-key": k}, String(c[k]))));
    [P, R, F].forEach(v => tr.appendChild(el("td", {}, v.toFixed(4))));
  });
}
const shown = new Set(SYS.map((_, i) => i));
let page = 0, hits = [];
const $ = id => document.getElementById(id);
function setup() {
  SYS.forEach((name, i) => { const lab = el("label"); const box = el("input", {type: "checkbox", checked: ""});
    box.addEventListener("change", () => { box.checked ? shown.add(i) : shown.delete(i); refilter(); });
    lab.append(box, document.createTextNode(" " + name)); $("system-boxes").appendChild(lab); });
  L.forEach((l, i) => $("f-class").appendChild(el("option", {value: String(i)}, l)));
  K.forEach(k => $("f-kind").appendChild(el("option", {value: k}, k.replaceAll("_", " "))));
  $("f-kind").appendChild(el("option", {value: "missed"}, "missed"));
  for (const id of ["f-class", "f-kind", "f-disagree"]) $(id).addEventListener("change", refilter);
  let timer; $("f-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 150); });
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("system")) { const want = h.get("system").split(",");
    SYS.forEach((name, i) => { if (!want.includes(name)) { shown.delete(i);
      $("system-boxes").querySelectorAll("input")[i].checked = false; } }); }
  if (h.get("class") !== null) $("f-class").value = String(L.indexOf(h.get("class")));
  if (h.get("kind")) $("f-kind").value = h.get("kind");
  if (h.get("q")) $("f-search").value = h.get("q");
  if (h.get("disagree") === "1") $("f-disagree").checked = true;
  $("prev").addEventListener("click", () => { if (page > 0) { page--; render(); } });
  $("next").addEventListener("click", () => { if ((page + 1) * PAGE < hits.length) { page++; render(); } });
}
const key = p => p[0] + ":" + p[1] + ":" + p[2];
function disagree(x) {
  const sets = [...shown].map(s => x[3][s].map(key).sort().join("|"));
  return sets.some(v => v !== sets[0]);
}
function matches(x) {
  const q = $("f-search").value.trim(), cls = $("f-class").value, kind = $("f-kind").value;
  if (q && !x[1].includes(q) && !x[0].includes(q)) return false;
  if ($("f-disagree").checked && !disagree(x)) return false;
  if (!cls && !kind) return true;
  const c = cls === "" ? -1 : Number(cls);
  const okClass = l => c < 0 || l === c;
  if (!kind && x[2].some(g => okClass(g[2]))) return true;
  for (const s of shown) {
    if ((!kind || kind === "missed") && x[4][s].some(j => okClass(x[2][j][2]))) return true;
    if (kind === "missed") continue;
    for (const p of x[3][s]) {
      const k = K[p[3]];
      if (okClass(p[2]) && (!kind || k === kind || (kind === "error" && k !== "correct"))) return true;
    }
    if (kind === "error" && x[4][s].some(j => okClass(x[2][j][2]))) return true;
  }
  return false;
}
function refilter() { hits = []; S.forEach((x, i) => { if (matches(x)) hits.push(i); }); page = 0; render(); }
function line(text, marks) {
  // marks: [start, end, label, cls, title]; overlapping ones become chips after the text
  const div = el("span"), chips = [];
  let pos = 0;
  for (const m of [...marks].sort((a, b) => a[0] - b[0] || b[1] - a[1])) {
    if (m[0] < pos) { chips.push(m); continue; }
    div.appendChild(document.createTextNode(text.slice(pos, m[0])));
    const e = el("span", {"class": "e " + m[3], title: m[4]}, text.slice(m[0], m[1]));
    e.style.background = colors[m[2]]; e.appendChild(el("sub", {}, L[m[2]]));
    div.appendChild(e); pos = m[1];
  }
  div.appendChild(document.createTextNode(text.slice(pos)));
  for (const m of chips) { const e = el("span", {"class": "chip e " + m[3], title: m[4]},
    text.slice(m[0], m[1]) + "/" + L[m[2]]); e.style.background = colors[m[2]]; div.appendChild(e); }
  return div;
}
function render() {
  const box = $("sentences"); box.textContent = "";
  const pages = Math.max(1, Math.ceil(hits.length / PAGE));
  $("page-info").textContent = ` page ${page + 1}/${pages}, ${hits.length} of ${S.length} sentences `;
  $("page-info").dataset.hits = String(hits.length);
  const frag = document.createDocumentFragment();
  for (const i of hits.slice(page * PAGE, (page + 1) * PAGE)) {
    const x = S[i], div = el("div", {"class": "sent"});
    div.appendChild(el("div", {"class": "sid"}, "id " + x[0]));
    const g = el("div", {"class": "row"}); g.appendChild(el("span", {"class": "who"}, "gold"));
    g.appendChild(line(x[1], x[2].map(s => [s[0], s[1], s[2], "", L[s[2]]]))); div.appendChild(g);
    for (const s of shown) {
      const marks = x[3][s].map(p => [p[0], p[1], p[2], "k-" + K[p[3]],
        L[p[2]] + " · " + K[p[3]].replaceAll("_", " ") + (p[4] === null ? "" : " · score " + p[4])]);
      for (const j of x[4][s]) {
        const gs = x[2][j]; marks.push([gs[0], gs[1], gs[2], "missed", L[gs[2]] + " · missed"]);
      }
      const r = el("div", {"class": "row"}); r.appendChild(el("span", {"class": "who"}, SYS[s]));
      r.appendChild(line(x[1], marks)); div.appendChild(r);
    }
    frag.appendChild(div);
  }
  box.appendChild(frag);
}
counts(); setup(); refilter();
document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
// time from navigation start to the load event (page, inline charts and the first page of sentences)
addEventListener("load", () => setTimeout(() => { document.body.dataset.loadMs = performance.now().toFixed(0); }));
""".replace("__PAGE__", str(PAGE_SIZE))
