"""What several benchmarks (and the tests' servers) share: timing, peak memory, model folders of a
real shape, the naive training data, a git revision's constraint module, a local server's life
cycle, perturbed predictions.

Scripts in benchmarks/ import it as ``harness`` (Python puts a script's folder on sys.path); the
test suite reaches it through pytest's ``pythonpath`` setting in pyproject.toml. Only public
llm-ner functions are used here.
"""

from __future__ import annotations

import importlib.util
import random
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import torch

from llm_ner.data import Example, Span

ROOT = Path(__file__).resolve().parent.parent


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(function):
    sync()
    start = time.perf_counter()
    result = function()
    sync()
    return result, time.perf_counter() - start


def one_at_a_time(model, tokenizer, conversations, max_new_tokens=512, min_new_tokens=None):
    from llm_ner.generation import stop_token_ids

    answers = []
    stops = stop_token_ids(tokenizer, model)
    device = next(model.parameters()).device
    for messages in conversations:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
        )
        inputs = tokenizer([text], return_tensors="pt").to(device)
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        answers.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


class PeakMemory:
    """Peak GPU allocation, or peak RSS above the starting RSS sampled every 5 ms on CPU."""

    def __init__(self):
        self.cuda = torch.cuda.is_available()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            import os

            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        import contextlib
        import ctypes
        import gc

        gc.collect()
        # Hand freed heap back to the OS so the previous run's peak does not hide this one's.
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.peak = self._rss()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.running = False
            self.thread.join()
        self.used = self.peak - self.base


def build_model_dir(args, workdir: Path) -> Path:
    """Random weights (a CPU-sized width, or ``--shape``) beside the real Qwen2.5 tokenizer (Qwen3's for
    a Qwen3 shape)."""
    from llm_ner.tiny import (
        TOKENIZER_FOLDERS,
        build_tiny_model,
        default_texts,
        read_shape,
        real_tokenizer_dir,
        shape_arguments,
    )

    if args.model:
        return Path(args.model)
    real = read_shape(args.shape, args.shapes_file) if args.shape else None
    folder = TOKENIZER_FOLDERS[real["model_type"]] if real else "qwen2.5"
    tokenizer = None if args.tokenizer == "tiny" else Path(args.tokenizer or real_tokenizer_dir(folder))
    if tokenizer is not None and not (tokenizer / "tokenizer.json").is_file():
        raise SystemExit(f"error: no tokenizer in {tokenizer} (pass --tokenizer DIR, or --tokenizer tiny)")
    arch, vocab_size = (None if tokenizer else "qwen3"), None
    shape = {"hidden_size": args.hidden_size, "num_layers": args.num_layers}
    if real:
        arch, vocab_size, shape = real["model_type"], real["vocab_size"], shape_arguments(real)
    texts = () if tokenizer else default_texts()
    return build_tiny_model(
        workdir / "model", arch, texts, seed=args.seed, tokenizer_dir=tokenizer, vocab_size=vocab_size, **shape
    )


def describe_model(model_dir: Path) -> str:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    return (
        f"{config.model_type} hidden {config.hidden_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}"
    )


def naive_data(tokenizer, records):
    """The tutorials' data path: prompt + answer + ``<|im_end|>\n`` tokenized one by one, labels on the
    answer, `DataCollatorForSeq2Seq` padding to each batch's longest. Returns the dataset, a collator
    that counts the tokens it passes on, and that counter."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq

    from llm_ner.generation import chat_prompt_ids

    answer_end = [tokenizer.convert_tokens_to_ids("<|im_end|>")] + tokenizer("\n")["input_ids"]

    def tokenize(record):
        prompt = chat_prompt_ids(tokenizer, record["prompt"])
        answer = tokenizer(record["completion"][0]["content"])["input_ids"] + answer_end
        ids = prompt + answer
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt) + answer}

    counter = {"tokens": 0}
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)

    def counting_collator(features):
        batch = collator(features)
        counter["tokens"] += int(batch["attention_mask"].sum())
        return batch

    return Dataset.from_list([tokenize(r) for r in records]), counting_collator, counter


def load_constraint_module(revision: str):
    """`llm_ner.generation.constrained` as it was at a git revision (for before/after figures): the file of that
    revision (llm_ner/constrained.py before the generation package), with today's package around it."""
    places = (("llm_ner/generation/constrained.py", "llm_ner.generation"), ("llm_ner/constrained.py", "llm_ner"))
    for path, package in places:  # noqa: B007 (the package of the file found is used below)
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"], capture_output=True, text=True)
        if shown.returncode == 0:
            break
    else:
        raise SystemExit(f"no constrained decoding module at revision {revision}")
    spec = importlib.util.spec_from_loader(f"constrained_{revision}", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__package__"] = package
    exec(compile(shown.stdout, f"constrained@{revision}", "exec"), module.__dict__)  # our own file from git, not data
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 120, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output (its stdout pipe, or ``log`` where it
    writes into a file) if it dies or times out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log else process.stdout.read()
            raise RuntimeError(f"server exited with {process.returncode}: {output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server did not answer {url} in {seconds} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
