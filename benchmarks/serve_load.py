"""Load test of `llm-ner serve` (127.0.0.1 only, bounded in requests and time).

Starts `llm-ner serve` with a tiny random-weight Qwen3, then:
1. C concurrent clients for T seconds (one text per request): requests/s, p50/p99 latency, errors;
2. the same N requests one at a time: the dynamic-batching speedup is the ratio of the two rates;
3. a burst of B requests above --max-queue: every request must get 200 or 503 (none hangs).

    python benchmarks/serve_load.py --clients 16 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(url: str, text: str, timeout: float = 120) -> tuple[int, float]:
    body = json.dumps({"texts": [text]}, ensure_ascii=False).encode()
    request = urllib.request.Request(url + "/extract", data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = -1  # connection error or timeout: counted as an error
    return status, time.perf_counter() - start


def closed_loop(url: str, texts: list[str], clients: int, seconds: float, cap: int) -> dict:
    """``clients`` clients, each sending its next request when the last one answered."""
    deadline = time.perf_counter() + seconds
    results: list[tuple[int, float]] = []

    def client(index: int) -> None:
        i = index
        while time.perf_counter() < deadline and len(results) < cap:
            results.append(one(url, texts[i % len(texts)]))
            i += clients

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - start
    return summary(results, elapsed)


def summary(results: list[tuple[int, float]], elapsed: float) -> dict:
    ok = sorted(latency for status, latency in results if status == 200)
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "rps": len(ok) / elapsed,
        "p50_s": statistics.median(ok) if ok else float("nan"),
        "p99_s": ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-requests", type=int, default=400, help="cap on requests per phase")
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=24)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--model", help="model directory (default: a tiny random Qwen3 built here)")
    args = parser.parse_args()

    from harness import free_port, stop, wait_for

    from llm_ner.data import read_cluener
    from llm_ner.data_sources import available_data_dir
    from llm_ner.tiny import build_tiny_model, default_texts

    texts = [ex.text for ex in read_cluener(available_data_dir() / "dev.json")[0][:200]]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_model(Path(tmp) / "qwen3", "qwen3", default_texts(), hidden_size=64))
        port = free_port()
        command = [sys.executable, "-m", "llm_ner", "serve", "--model", model, "--prompt", "cluener_zh"]
        command += ["--format", "mentions", "--port", str(port), "--max-new-tokens", str(args.max_new_tokens)]
        command += ["--max-queue", str(args.max_queue), "--max-batch", str(args.max_batch), "--max-wait-ms", "10"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(url + "/health", process)
            one(url, texts[0])  # warm-up
            rows = []
            # Concurrent, then serial, then concurrent again: the machine is shared, so compare medians.
            for phase, clients in (("concurrent", args.clients), ("one at a time", 1), ("concurrent", args.clients)):
                row = closed_loop(url, texts, clients, args.seconds, args.max_requests)
                rows.append((phase, clients, row))
                print(f"{phase:14s} C={clients:3d}: {json.dumps({k: round(v, 3) for k, v in row.items()})}")
            with urllib.request.urlopen(url + "/health") as response:
                health = json.loads(response.read())
            concurrent = statistics.median([r["rps"] for p, _, r in rows if p == "concurrent"])
            serial = rows[1][2]["rps"]
            print(f"batches {health['batches']}, largest {health['largest_batch']} texts")
            print(f"dynamic-batching speedup: {concurrent / serial:.2f}x ({concurrent:.2f} vs {serial:.2f} requests/s)")
            start = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                burst = list(pool.map(lambda i: one(url, texts[i % len(texts)]), range(args.burst)))
            statuses = [s for s, _ in burst]
            counts = {s: statuses.count(s) for s in sorted(set(statuses))}
            took = time.perf_counter() - start
            print(f"burst of {args.burst} (queue limit {args.max_queue}): {counts} in {took:.1f} s")
            bad = [s for s in statuses if s not in (200, 503)]
            errors = sum(r["errors"] for _, _, r in rows)
            print("table:")
            print("| phase | clients | requests | requests/s | p50 s | p99 s | errors |")
            print("|---|---|---|---|---|---|---|")
            for phase, clients, r in rows:
                print(
                    f"| {phase} | {clients} | {r['requests']} | {r['rps']:.2f} | {r['p50_s']:.3f} | "
                    f"{r['p99_s']:.3f} | {r['errors']} |"
                )
            return 1 if bad or errors else 0
        finally:
            stop(process)


if __name__ == "__main__":
    sys.exit(main())
