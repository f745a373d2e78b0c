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
