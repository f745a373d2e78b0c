"""report.html and the confusion matrices: checked in a real headless Chromium against report.json."""

import json
import random
import re
import subprocess
import time
from pathlib import Path

import pytest

from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, write_cluener
from llm_ner.metrics import classify_sentence, confusion_matrix, error_breakdown
from llm_ner.report import browser_data, render_html

ROOT = Path(__file__).resolve().parent.parent


def perturbed(examples, seed, rate):
    """Gold with entities dropped, retyped, widened and spurious ones added, each at ``rate``."""
    rng = random.Random(seed)
    labels = sorted({s.label for ex in examples for s in ex.spans})
    out = []
    for ex in examples:
        spans = []
        for s in ex.spans:
            r = rng.random()
            if r < rate:
                continue
            if r < 2 * rate:
                s = Span(s.start, s.end, rng.choice([label for label in labels if label != s.label]))
            elif r < 3 * rate and s.end < len(ex.text):
                s = Span(s.start, s.end + 1, s.label)
            spans.append(s)
        if rng.random() < rate and len(ex.text) > 2:
            start = rng.randrange(len(ex.text) - 1)
            spans.append(Span(start, start + 2, rng.choice(labels)))
        out.append(Example(ex.id, ex.text, sorted(set(spans))))
    return out


def test_classify_and_confusion_on_a_known_sentence():
    gold = [Span(0, 2, "name"), Span(3, 5, "address"), Span(6, 8, "company"), Span(9, 11, "game")]
    pred = [Span(0, 2, "name"), Span(3, 5, "company"), Span(6, 9, "company"), Span(12, 14, "book")]
    kinds, missed = classify_sentence(gold, pred)
    assert kinds == ["correct", "wrong_type", "wrong_boundary", "spurious"]
    assert missed == [False, False, False, True]
    confusion = confusion_matrix([gold], [pred], ["address", "book", "company", "game", "name"])
    names, matrix = confusion["labels"], confusion["matrix"]
    cell = {(g, p): matrix[names.index(g)][names.index(p)] for g in names for p in names}
    assert names[-1] == "none"
    assert cell[("name", "name")] == 1 and cell[("address", "company")] == 1
    assert cell[("company", "company")] == 1 and cell[("game", "none")] == 1 and cell[("none", "book")] == 1
    assert sum(map(sum, matrix)) == 5


def test_confusion_agrees_with_error_breakdown(cluener_dev):
    pred = perturbed(cluener_dev, seed=3, rate=0.1)
    gold_spans, pred_spans = [ex.spans for ex in cluener_dev], [ex.spans for ex in pred]
    errors = error_breakdown(gold_spans, pred_spans)
    labels = sorted(errors)
    confusion = confusion_matrix(gold_spans, pred_spans, labels)
    index = {name: i for i, name in enumerate(confusion["labels"])}
    matrix = confusion["matrix"]
    for label, counts in errors.items():
        row = matrix[index[label]]
        assert sum(row) == sum(v for k, v in counts.items() if k != "spurious")  # every gold span once
        assert row[index["none"]] == counts["missed"]
        assert matrix[index["none"]][index[label]] == counts["spurious"]
        assert row[index[label]] == counts["correct"] + counts["wrong_boundary"]
    totals = {"spurious": 0, "missed": 0}
    for g, p in zip(gold_spans, pred_spans):
        kinds, missed = classify_sentence(g, p)
        totals["spurious"] += kinds.count("spurious")
        totals["missed"] += sum(missed)
    assert totals == {k: sum(c[k] for c in errors.values()) for k in totals}


def test_page_data_cannot_close_its_script_tag():
    text = "</script><script>alert(1)</script>张三"
    gold = [Example("0", text, [Span(len(text) - 2, len(text), "name")])]
    report = {"sentences": 1, "labels": ["name"], "systems": {}, "bootstrap": []}
    page = render_html(report, browser_data(gold, {"s": gold}, ["name"]))
    assert page.count("<script") == 2 and "alert(1)</script>" not in page


def chromium() -> str:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install_chromium.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no headless Chromium: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().splitlines()[-1]


def dump_dom(browser: str, url: str) -> str:
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_html_in_chromium_shows_the_counts_of_report_json(cluener_dir, cluener_dev, tmp_path):
    browser = chromium()
    preds = []
    systems = {}
    for number, name in enumerate(("llm", "bert-crf", "bilstm-crf")):
        systems[name] = perturbed(cluener_dev, seed=number, rate=0.05 * (number + 1))
        write_cluener(systems[name], tmp_path / f"{name}.json")
        preds += ["--pred", f"{name}={tmp_path / f'{name}.json'}"]
    out = tmp_path / "report"
    gold_path = str(cluener_dir / "dev.json")
    assert cli(["report", "--gold", gold_path, *preds, "--out", str(out), "--resamples", "100"]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for name in systems:
        assert (out / f"confusion_{name}.png").stat().st_size > 5000
        assert report["systems"][name]["confusion"]["labels"][-1] == "none"
    url = (out / "report.html").as_uri()
    started = time.perf_counter()
    dom = dump_dom(browser, url)
    load_seconds = time.perf_counter() - started
    shown = {
        (m.group(1), m.group(2)): int(m.group(3))
        for m in re.finditer(r'<td class="count" data-system="([^"]+)" data-key="([^"]+)">(\d+)</td>', dom)
    }
    assert len(shown) == 3 * 8, "the page did not compute its counts (JavaScript failed?)"
    for name, result in report["systems"].items():
        micro = result["span"]["micro avg"]
        assert shown[(name, "correct")] == micro["correct"]
        assert shown[(name, "predicted")] == micro["predicted"]
        assert shown[(name, "gold")] == micro["support"]
        for kind in ("missed", "spurious"):
            assert shown[(name, kind)] == sum(c[kind] for c in result["errors"].values())
    hits = int(re.search(r'data-hits="(\d+)"', dom).group(1))
    assert hits == len(cluener_dev)
    assert dom.count('class="sent"') == 50  # one page of sentences in the DOM, not all 1343
    render_ms = float(re.search(r'data-render-ms="([\d.]+)"', dom).group(1))
    print(
        f"\nreport.html: {len(cluener_dev)} sentences x 3 systems, JS render {render_ms:.0f} ms, "
        f"chromium --dump-dom {load_seconds:.2f} s"
    )

    # Filters preset in the address: missed entities of bert-crf; names that the systems disagree on.
    dom = dump_dom(browser, url + "#kind=missed&system=bert-crf")
    expected = sum(any(classify_sentence(g.spans, p.spans)[1]) for g, p in zip(cluener_dev, systems["bert-crf"]))
    assert int(re.search(r'data-hits="(\d+)"', dom).group(1)) == expected
    dom = dump_dom(browser, url + "#class=name&disagree=1")
    expected = sum(
        1
        for i, g in enumerate(cluener_dev)
        if len({tuple(systems[n][i].spans) for n in systems}) > 1
        and any(s.label == "name" for ex in [g, *(systems[n][i] for n in systems)] for s in ex.spans)
    )
    assert int(re.search(r'data-hits="(\d+)"', dom).group(1)) == expected

    shot = tmp_path / "report_browser.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            "--window-size=1400,1800",
            f"--screenshot={shot}",
            url + "#disagree=1",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1800, 1400) and pixels[..., :3].std() > 0.05  # not a blank page
    print(f"screenshot: {shot}")
