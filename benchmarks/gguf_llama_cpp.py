"""Our CPU engine against llama.cpp on the same sentences: F1, identical answers, speed, sizes, memory (issue 32).

    python benchmarks/gguf_llama_cpp.py --adapter runs/lora/adapter --dev ../shared/data/cluener/dev.json \\
        --limit 300 --types f16,q8_0 --out runs/gguf-bench

Smoke run on a random-weight adapter (what tests/test_gguf.py builds): --limit 8 --threads 2 --batch-size 8,
100 s on 2 busy cores.

Stages, each a child process whose peak RSS is measured (``os.wait4``; a server's ``VmHWM``):

1. **ours**: `llm-ner extract`'s engine in-process (`LocalBackend`, the adapter merged at load, ``--dtype
   auto``, batch ``--batch-size``), the load and the extraction timed apart: sentences/s with the model loaded.
2. **export**: `llm-ner export-model --adapter ... --gguf TYPES` (merge, llama.cpp's converter, metadata,
   Modelfile, card scored with ours' predictions); its seconds and the file sizes.
3. **llama.cpp, per type**: llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (``--n_threads``,
   ``--n_batch``), timed from start to ready, then `llm-ner extract --backend openai --api-dialect
   llama-cpp-python --concurrency C` against it (the model loaded: sentences/s); the server's peak RSS. The
   client's seconds include its own start (Python, llm_ner, the tokenizer: a few seconds), so llama.cpp's
   sentences/s is a slight underestimate on 300 sentences.

4. **llama-server, per type** (with ``--llama-server PATH``): llama.cpp's own server with ``--parallel`` slots
   decoded together (llama-cpp-python's server has one lock, no slots), the client sending that many requests.

Every prediction file is scored with `llm_ner.metrics.evaluate` against the first ``--limit`` gold sentences
(span micro-F1, per-class F1), and its raw answers compared with ours (identical in N of M). Results:
OUT/results.json. A stage whose output exists is reused (delete OUT to start over).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import free_port, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent


def run_child(argv: list[str], log: Path) -> dict:
    """Run a command to its end: seconds, peak RSS (GiB), exit status checked."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{log.read_text(encoding='utf-8', errors='replace')[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def ours(args) -> None:
    """The in-process stage: load timed apart from extraction (printed as JSON on the last line)."""
    from llm_ner.data import read_inputs
    from llm_ner.extraction import (
        Annotator,
        ModelOptions,
        ResumableOutput,
        extract,
        extraction_fingerprint,
        make_backend,
        run_settings,
    )

    model_options = ModelOptions(adapter=args.adapter, dtype=args.dtype, device="cpu")
    settings = run_settings(model_options)
    start = time.perf_counter()
    backend = make_backend(model_options, settings, device="cpu")  # as `llm-ner extract` builds it
    loaded = time.perf_counter()
    examples = read_inputs(args.input, "auto")
    store = ResumableOutput(args.output)
    store.clear()
    store.start(extraction_fingerprint(settings, model_options))
    annotator = Annotator(backend, settings, model_options.max_chars)
    try:
        extract(annotator, examples, args.output, batch_size=args.batch_size, progress=False)
    finally:
        annotator.close()
    done = time.perf_counter()
    store.merge([ex.id for ex in examples])
    print(json.dumps({"load_seconds": round(loaded - start, 1), "extract_seconds": round(done - loaded, 1)}))


def peak_rss_gib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 3)
    return float("nan")


def python_server_command(args, gguf: Path, name: str, port: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server: one request at a time (its `Llama` sits behind a lock)."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", name]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(args.n_ctx)]
    command += ["--n_threads", str(args.threads), "--n_batch", str(args.n_batch), "--verbose", "false"]
    # The server's default logits_all=True projects every prompt token onto the 151 936-word vocabulary; only
    # logprobs need that, so off: it is the faster setting for extraction.
    return command + ["--logits_all", str(args.logits_all).lower()]


def native_server_command(args, gguf: Path, name: str, port: int) -> list[str]:
    """llama.cpp's own ``llama-server``: ``--parallel`` slots decoded together (continuous batching); the context
    is shared by the slots, so it is ``--n-ctx`` per slot."""
    command = [args.llama_server, "-m", str(gguf), "--alias", name, "--host", "127.0.0.1", "--port", str(port)]
    command += ["-t", str(args.threads), "-b", str(args.n_batch), "-np", str(args.parallel)]
    return command + ["-c", str(args.n_ctx * args.parallel), "--no-webui", "--log-disable"]


def serve_and_extract(command: list[str], port: int, ready_path: str, concurrency: int, gguf: Path, name: str,
                      dev: Path, output: Path, log: Path) -> dict:  # fmt: skip
    """Start the server ``command`` on ``port``, wait until ``ready_path`` answers 200 (the model loaded), then
    `llm-ner extract --backend openai` against it with ``concurrency`` requests in flight."""
    start = time.perf_counter()
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed in finally, after the server stops)
    server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        # a real model loads in seconds; a hung start must not hang the run
        wait_for(f"http://127.0.0.1:{port}{ready_path}", server, 600, log=log)
        ready = time.perf_counter() - start
        extract = [sys.executable, "-m", "llm_ner", "extract", "--backend", "openai", "--api-dialect"]
        extract += ["llama-cpp-python", "--base-url", f"http://127.0.0.1:{port}/v1", "--served-model", name]
        extract += ["--model", str(gguf.parent), "--input", str(dev), "--output", str(output), "--quiet"]
        extract += ["--restart", "--concurrency", str(concurrency)]
        client = run_child(extract, log.with_suffix(".extract.log"))
        return {
            "server_ready_seconds": round(ready, 1),
            "extract_seconds": client["seconds"],
            "server_peak_rss_gib": peak_rss_gib(server.pid),
            "client_peak_rss_gib": client["peak_rss_gib"],
        }
    finally:
        stop(server)
        handle.close()


def score(gold: Path, pred: Path, reference: Path | None) -> dict:
    from llm_ner.data import load_examples
    from llm_ner.metrics import evaluate

    gold_examples, _ = load_examples(str(gold), "auto")
    pred_examples, _ = load_examples(str(pred), "cluener", allow_empty=True)
    labels = sorted({s.label for ex in gold_examples for s in ex.spans})
    span = evaluate(gold_examples, pred_examples, labels, pred_path=str(pred))["span"]
    result = {
        "micro_f1": span["micro avg"]["f1-score"],
        "precision": span["micro avg"]["precision"],
        "recall": span["micro avg"]["recall"],
        "per_class_f1": {label: round(v["f1-score"], 4) for label, v in span["per_class"].items()},
    }
    raws = [json.loads(line) for line in pred.read_text(encoding="utf-8").splitlines() if line]
    result["parse_failures"] = sum(r.get("parse", {}).get("parse_failures", 0) for r in raws)
    if reference is not None:
        mine = {r["id"]: r for r in (json.loads(x) for x in reference.read_text().splitlines() if x)}
        result["identical_answers"] = sum(mine[r["id"]]["raw"] == r["raw"] for r in raws)
        result["identical_entities"] = sum(mine[r["id"]]["label"] == r["label"] for r in raws)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--dev", required=True, help="CLUENER dev.json (its first --limit lines are used)")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", default="auto", help="our engine's --dtype")
    parser.add_argument("--batch-size", type=int, default=64, help="our engine's batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp's n_threads")
    parser.add_argument("--n-batch", type=int, default=512, help="llama.cpp's prompt batch (n_batch)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--logits-all", action="store_true", help="llama.cpp logits for every prompt token")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight to the llama.cpp server")
    parser.add_argument(
        "--llama-server",
        help="also llama.cpp's own llama-server binary (from the vendored llama.cpp: cmake --target llama-server)",
    )
    parser.add_argument("--parallel", type=int, default=4, help="llama-server's slots (-np), and requests in flight")
    parser.add_argument("--base-model-id", default=None, help="the card's base_model")
    parser.add_argument("--name", default="cluener-ner")
    parser.add_argument("--stage-ours", action="store_true", help=argparse.SUPPRESS)  # the in-process child
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_ours:
        ours(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = out / f"dev{args.limit}.json"
    lines = Path(args.dev).read_text(encoding="utf-8").splitlines()[: args.limit]
    dev.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["setup"] = {
        "adapter": args.adapter,
        "sentences": len(lines),
        "cpu_cores": os.cpu_count(),
        "ours": {"dtype": args.dtype, "batch_size": args.batch_size},
        "llama_cpp": {
            "n_threads": args.threads,
            "n_batch": args.n_batch,
            "n_ctx": args.n_ctx,
            "logits_all": args.logits_all,
            "concurrency": args.concurrency,
            "llama_server_parallel": args.parallel if args.llama_server else None,
        },  # fmt: skip
    }

    ours_pred = out / "ours.pred.json"
    if "ours" not in results:
        print("== ours", file=sys.stderr, flush=True)
        child = [sys.executable, __file__, "--stage-ours", "--adapter", args.adapter, "--dtype", args.dtype]
        child += ["--batch-size", str(args.batch_size), "--input", str(dev), "--output", str(ours_pred)]
        child += ["--dev", args.dev, "--out", args.out]
        figures = run_child(child, out / "ours.log")
        timing = json.loads((out / "ours.log").read_text().strip().splitlines()[-1])
        results["ours"] = {
            **figures,
            **timing,
            "sentences_per_second_loaded": round(len(lines) / timing["extract_seconds"], 2),
        }
        results_path.write_text(json.dumps(results, indent=2))

    gguf_dir = out / "gguf"
    types = args.types.split(",")
    if "export" not in results:
        print("== export", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "llm_ner", "export-model", "--adapter", args.adapter, "--out", str(gguf_dir)]
        command += ["--gguf", args.types, "--name", args.name, "--gold", str(dev), "--pred", str(ours_pred)]
        command += ["--eval-name", f"CLUENER2020 dev, first {len(lines)} sentences"]
        if args.base_model_id:
            command += ["--base-model-id", args.base_model_id]
        results["export"] = run_child(command, out / "export.log")
        results["export"]["files_mib"] = {
            p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(gguf_dir.glob("*.gguf"))
        }
        results_path.write_text(json.dumps(results, indent=2))

    # (results key, GGUF type, file stem, server command, readiness path, requests in flight) of each server stage:
    # llama-cpp-python's server, then llama.cpp's own, whose slots decode together (the batching the first lacks).
    stages = [(f"llama.cpp {kind}", kind, f"llama-{kind}", python_server_command, "/v1/models", args.concurrency)
              for kind in types]  # fmt: skip
    if args.llama_server:  # /health answers 200 only once the model is loaded (503 before)
        slots = f"np{args.parallel}"
        stages += [(f"llama-server {kind} {slots}", kind, f"llama-server-{kind}-{slots}", native_server_command,
                    "/health", args.parallel) for kind in types]  # fmt: skip
    for key, kind, stem, server_command, ready_path, concurrency in stages:
        if key in results:
            continue
        print(f"== {key}", file=sys.stderr, flush=True)
        gguf, port = gguf_dir / f"{args.name}-{kind}.gguf", free_port()
        command = server_command(args, gguf, args.name, port)
        pred, log = out / f"{stem}.pred.json", out / f"{stem}.log"
        figures = serve_and_extract(command, port, ready_path, concurrency, gguf, args.name, dev, pred, log)
        figures["sentences_per_second_loaded"] = round(len(lines) / figures["extract_seconds"], 2)
        results[key] = figures
        results_path.write_text(json.dumps(results, indent=2))

    results["scores"] = {"ours": score(dev, ours_pred, None)}
    for kind in types:
        results["scores"][f"llama.cpp {kind}"] = score(dev, out / f"llama-{kind}.pred.json", ours_pred)
    for key in [k for k in results if k.startswith("llama-server ")]:  # every --parallel measured so far
        _, kind, slots = key.split()
        results["scores"][key] = score(dev, out / f"llama-server-{kind}-{slots}.pred.json", ours_pred)
    results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
