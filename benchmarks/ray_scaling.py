"""`llm-ner extract --engine ray` on one machine: scaling over workers, the driver's own cost, driver memory.

    python benchmarks/ray_scaling.py                  # all three, a local Ray runtime of 2 CPUs
    python benchmarks/ray_scaling.py --skip-scaling   # driver cost and memory only (a null engine)

(a) scaling: the same --sentences CLUENER dev sentences with 1 worker, then 2 workers of 1 thread each
    (--cpus-per-worker 1), a random-weight Qwen3 (hidden --hidden, --layers layers, tokenizer built
    here); random weights never stop, so every answer is --max-new-tokens tokens and both runs do equal
    work. Throughput: records / (first to last answered block), model loading and planning excluded.
(b) driver cost: a null engine (answers [] at once) on --null-sentences sentences: what the driver
    spends per record (reading the actors' blocks, dedupe, shard append + fsync; the final merge apart),
    hence how many records per second one driver can take in, and so how many GPU workers it can feed.
(c) driver memory: 20 files of 2 000 then 20 000 sentences, null engine, each run a fresh driver process
    joined to the runtime; its peak RSS (VmHWM). The driver holds ids, not texts: the ratio stays near 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class NullBackend:
    """Answers every conversation with an empty list at once: the pipeline without a model."""

    def answer(self, conversations, texts):
        return [("[]", None) for _ in conversations]

    def close(self):
        pass


def null_backend() -> NullBackend:
    return NullBackend()


def sentences(count: int) -> list[str]:
    """``count`` CLUENER sentences (train then dev, repeated when fewer)."""
    from llm_ner.data import read_cluener
    from llm_ner.data_sources import available_data_dir

    folder = available_data_dir()
    texts = [ex.text for name in ("train.json", "dev.json") for ex in read_cluener(folder / name)[0]]
    return [texts[i % len(texts)] for i in range(count)]


def write_corpus(folder: Path, count: int, files: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    texts = sentences(count)
    per = -(-count // files)
    for index in range(files):
        chunk = texts[index * per : (index + 1) * per]
        (folder / f"part{index:02d}.txt").write_text("".join(t + "\n" for t in chunk), encoding="utf-8")
    return folder


def run(
    model: str | None, source: Path, output: Path, workers: int, batch_size: int, max_new_tokens: int, factory=None
) -> dict:
    from llm_ner.extraction import ExtractOptions, ModelOptions
    from llm_ner.extraction.options import RayOptions
    from llm_ner.extraction.ray_run import run_ray_extraction

    timings: dict = {}
    began = time.perf_counter()
    code = run_ray_extraction(
        ModelOptions(model=model or "null", max_new_tokens=max_new_tokens),
        ExtractOptions(input=source, output=output, batch_size=batch_size, quiet=True, max_parse_failures=1),
        RayOptions(workers=workers, cpus_per_worker=1),
        backend_factory=factory,
        timings=timings,
    )
    assert code == 0, code
    timings["wall_seconds"] = time.perf_counter() - began
    return timings


def peak_rss_driver(address: str, source: Path, output: Path) -> int:
    """Peak RSS (kB) of a fresh driver process running the null engine over ``source``."""
    here = str(Path(__file__).parent)
    script = "\n".join(
        [
            f"import sys, pathlib, ray; sys.path.insert(0, {here!r})",
            f"ray.init(address={address!r}, log_to_driver=False)",
            "import ray_scaling; ray.cloudpickle.register_pickle_by_value(ray_scaling)",
            f"ray_scaling.run(None, pathlib.Path({str(source)!r}), pathlib.Path({str(output)!r}), 2, 64, 1, "
            "ray_scaling.null_backend)",
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--null-sentences", type=int, default=20000)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    import ray

    from llm_ner.tiny import build_tiny_model, default_texts

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_scaling:
            model = build_tiny_model(
                work / "model", "qwen3", default_texts(), hidden_size=args.hidden, num_layers=args.layers
            )
            source = work / "scaling.txt"
            source.write_text("".join(t + "\n" for t in sentences(args.sentences)), encoding="utf-8")
            rates = {}
            for workers in (1, 2):
                t = run(
                    str(model), source, work / f"scaling{workers}.json", workers, args.batch_size, args.max_new_tokens
                )
                rates[workers] = t["records"] / t["answer_seconds"]
                print(
                    f"(a) {workers} worker(s): {rates[workers]:.2f} sentences/s ({t['records']} in "
                    f"{t['answer_seconds']:.1f} s answering, {t['wall_seconds']:.1f} s in all)",
                    flush=True,
                )
            results["scaling"] = {"rates": rates, "ratio": rates[2] / rates[1]}
            print(f"(a) 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x", flush=True)
        source = write_corpus(work / "null", args.null_sentences, 20)
        t = run(None, source, work / "null.json", 2, 64, 1, null_backend)
        per_record = 1000 * t["driver_seconds"] / t["records"]
        results["driver"] = {**t, "ms_per_record": per_record}
        print(
            f"(b) null engine, {t['records']} records in 20 files: driver {per_record:.3f} ms per record "
            f"(~{1000 / per_record:,.0f} records/s), merge {1000 * t['merge_seconds'] / t['records']:.3f} ms "
            f"per record; pipeline {t['records'] / t['answer_seconds']:,.0f} records/s",
            flush=True,
        )
        if not args.skip_memory:
            small = write_corpus(work / "small", args.null_sentences // 10, 20)
            rss = {
                "small": peak_rss_driver(address, small, work / "small.json"),
                "large": peak_rss_driver(address, source, work / "large.json"),
            }
            results["memory_kb"] = rss
            print(
                f"(c) driver peak RSS: {args.null_sentences // 10} sentences {rss['small'] / 1024:.0f} MiB, "
                f"{args.null_sentences} sentences {rss['large'] / 1024:.0f} MiB: "
                f"{rss['large'] / rss['small']:.3f}x",
                flush=True,
            )
    print(json.dumps(results, default=str))
    ray.shutdown()


if __name__ == "__main__":
    main()
