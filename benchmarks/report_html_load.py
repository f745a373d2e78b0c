"""Load time of report.html in headless Chromium: all of CLUENER dev with 3 systems (gold with
entities dropped, retyped, widened and spurious ones added at 5/10/15%), against an empty page.

    python benchmarks/report_html_load.py [--dev $LLM_NER_DATA/dev.json] [--runs 5]

Prints the medians of: the page's own timings (JavaScript: data parsed, counts, filters and the
first page of sentences; navigation start to the load event) and the wall time of
`chromium --headless --dump-dom` for the report and for an empty page (process start included).
"""

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import perturbed  # the test suite's systems, measured here

from llm_ner.cli import main as cli
from llm_ner.data import read_cluener, write_cluener
from llm_ner.data_sources import available_data_dir


def dump(browser: str, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default=str(available_data_dir() / "dev.json"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--browser", default="chromium")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="report_html_load."))
    gold, _ = read_cluener(args.dev)
    preds = []
    for number, name in enumerate(("llm", "bert-crf", "bilstm-crf")):
        write_cluener(perturbed(gold, number, 0.05 * (number + 1)), folder / f"{name}.json")
        preds += ["--pred", f"{name}={folder / f'{name}.json'}"]
    cli(["report", "--gold", args.dev, *preds, "--out", str(folder / "report"), "--resamples", "200"])
    page = folder / "report" / "report.html"
    empty = folder / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body>x</body></html>", encoding="utf-8")
    rows: dict[str, list[float]] = {"report_s": [], "empty_s": [], "js_ms": [], "load_ms": []}
    for _ in range(args.runs):  # interleaved: the machine may be shared
        seconds, dom = dump(args.browser, page.as_uri())
        rows["report_s"].append(seconds)
        rows["js_ms"].append(float(re.search(r'data-render-ms="([\d.]+)"', dom).group(1)))
        rows["load_ms"].append(float(re.search(r'data-load-ms="([\d.]+)"', dom).group(1)))
        rows["empty_s"].append(dump(args.browser, empty.as_uri())[0])
    median = {key: statistics.median(values) for key, values in rows.items()}
    print(
        f"{len(gold)} sentences x 3 systems, report.html {page.stat().st_size / 1e6:.2f} MB: in-page JavaScript "
        f"{median['js_ms']:.0f} ms, navigation start to load event {median['load_ms']:.0f} ms; chromium --dump-dom "
        f"{median['report_s']:.2f} s vs {median['empty_s']:.2f} s for an empty page (medians of {args.runs})"
    )


if __name__ == "__main__":
    main()
