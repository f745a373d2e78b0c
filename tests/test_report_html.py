"""report.html and the confusion matrices: checked in a real headless Chromium against report.json."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from harness import perturbed

from llm_ner.cli import main as cli
from llm_ner.data import Example, Span, write_cluener
from llm_ner.metrics import classify_sentence, confusion_matrix, error_breakdown
from llm_ner.report import browser_data, render_html

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.parametrize("prefix", ["𠀀𠀁😀", "𠀀😀"])
def test_report_html_highlights_entities_after_characters_outside_the_bmp(prefix, tmp_path):
    # Offsets count code points; JavaScript's String.slice counts UTF-16 units, in which 𠀀 (CJK
    # Extension B, used in names) and an emoji are two each: the page highlighted shifted text. With
    # "𠀀😀" the old page marked 😀 as the name 张三; with "𠀀𠀁😀" it split surrogate pairs, and
    # Chromium crashed writing out the page.
    browser = chromium()
    text = prefix + "张三在北京🎉和李四。"

    def span(mention, label):
        start = text.index(mention)
        return Span(start, start + len(mention), label)

    gold = [Example("0", text, [span("张三", "name"), span("北京", "address"), span("李四", "name")])]
    # correct 张三; 在北京 and the overlapping 北京 (drawn as a chip after the text); 李四 missed
    pred = [Example("0", text, [span("张三", "name"), span("在北京", "organization"), span("北京", "address")])]
    write_cluener(gold, tmp_path / "gold.json")
    write_cluener(pred, tmp_path / "pred.json")
    out = tmp_path / "report"
    args = ["report", "--gold", str(tmp_path / "gold.json"), "--pred", f"sys={tmp_path / 'pred.json'}"]
    assert cli([*args, "--out", str(out), "--resamples", "10"]) == 0
    dom = dump_dom(browser, (out / "report.html").as_uri())
    rows = re.findall(r'<div class="row"><span class="who">([^<]*)</span>(.*?)</div>', dom)
    assert [who for who, _ in rows] == ["gold", "sys"], "the page drew no sentence (JavaScript failed?)"
    marked = {
        who: [
            (m.group(1).strip(), m.group(2), m.group(3))
            for m in re.finditer(r'<span class="((?:chip )?e[^"]*)"[^>]*>([^<]*)(?:<sub>([^<]*)</sub>)?</span>', row)
        ]
        for who, row in rows
    }
    assert marked["gold"] == [("e", "张三", "name"), ("e", "北京", "address"), ("e", "李四", "name")]
    assert marked["sys"] == [
        ("e k-correct", "张三", "name"),
        ("e k-wrong_type_and_boundary", "在北京", "organization"),
        ("e missed", "李四", "name"),
        ("chip e k-correct", "北京/address", None),
    ]
    # the text between the marks is whole too: the row reads as the sentence
    assert re.sub(r"<sub>[^<]*</sub>|<[^>]+>", "", rows[0][1]) == text
