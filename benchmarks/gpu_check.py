"""One GPU check: training speed and memory, QLoRA memory, extraction speed and correctness, in one run.

    python benchmarks/gpu_check.py --out OUT                 # one H100/H200, at most ~8 minutes
    python benchmarks/gpu_check.py --out OUT --smoke         # the same code paths on CPU, tiny shapes, < 1 min

Random weights of the real shapes (`../shared/qwen_shapes.json`) are made directly on the device
(no download) and saved once; the real Qwen tokenizers (`--tokenizers`, a folder with `qwen2.5/`
and `qwen3/`; `*.gz` files are unpacked) and CLUENER (`--data`, train.json + dev.json) feed them.
Random weights give the real shapes' speed and memory, not quality. Items, cheapest first:

1. correctness on the device: answers with the shared-prefix cache equal plain one-at-a-time
   `generate` in float32 (bf16 differences are counted and shown); the constrained decoder's
   guarantee (no mention outside the sentence, no label outside the schema); 4-bit extraction runs;
2. extraction of every dev sentence at the Qwen2.5-0.5B shape, answers fixed at 32 tokens:
   one-at-a-time (timed on a subset, extrapolated), our static-cache batches at several sizes,
   constrained at the best size, and transformers' continuous batching (`generate_batch`);
3. training at the Qwen2.5-0.5B shape with configs/qwen2.5-0.5b-lora.yaml (bf16 LoRA r=16): ours
   (`llm_ner.training.train`) versus the naive recipe (Trainer + DataCollatorForSeq2Seq + PEFT,
   full-vocabulary logits, random order), same steps; tokens/s and peak memory;
4. QLoRA NF4 at the Qwen2.5-7B shape with configs/qwen2.5-7b-qlora.yaml: peak memory, tokens/s;
5. bf16 LoRA at the Qwen3-8B shape with configs/qwen3-8b-lora.yaml: peak memory.

Writes OUT/gpu_check.json (every figure) and OUT/gpu_check.md (tables, targets met or not). An item
that fails is recorded with its error and the run goes on; the exit status is 1 if any failed.
`--budget-s` skips (and records) the items left when the time is spent.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml
from harness import PeakMemory, naive_data, one_at_a_time, sync, timed

from llm_ner import tiny
from llm_ner.data import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {"small": "Qwen2.5-0.5B-Instruct", "qlora": "Qwen2.5-7B-Instruct", "lora8b": "Qwen3-8B"}
CONFIGS = {
    "small": "configs/qwen2.5-0.5b-lora.yaml",
    "qlora": "configs/qwen2.5-7b-qlora.yaml",
    "lora8b": "configs/qwen3-8b-lora.yaml",
}
# --smoke: every shape shrunk to this (the real vocabulary and tokenizer stay).
SMOKE_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    # At this width the default 0.02 gives every sentence the same answer, and equal answers of a
    # model that always says the same thing would prove nothing; the real shapes vary at 0.02.
    "initializer_range": 0.5,
}
TARGETS = {
    "train_speedup": 1.5,  # ours / naive tokens per second
    "qlora_peak_gib": 16.0,
    "extract_free_s": 5.0,  # whole dev, best free engine
    "constrained_over_free": 1.2,
}
ANSWER_TOKENS = 32


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_model_dir(shape: str, shapes_file: Path, tokenizers: Path, out: Path, smoke: bool, seed: int) -> Path:
    """Random weights of a real shape (made on the device), saved with the real tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from llm_ner.generation import disable_thinking_by_default

    spec = dict(tiny.read_shape(shape, shapes_file))
    model_type = spec.pop("model_type")
    if smoke:
        spec.update(SMOKE_SHAPE)
    source = tokenizers / tiny.TOKENIZER_FOLDERS[model_type]
    if not source.is_dir():
        raise FileNotFoundError(f"no tokenizer folder {source} (--tokenizers)")
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():  # gzipped copies travel to the GPU machine (64 MiB carry limit)
        if path.suffix == ".gz":
            with gzip.open(path) as packed, open(out / path.stem, "wb") as unpacked:
                shutil.copyfileobj(packed, unpacked)
        elif path.is_file():
            shutil.copyfile(path, out / path.name)  # not the read-only mode of a shared copy
    tokenizer = AutoTokenizer.from_pretrained(out)
    disable_thinking_by_default(tokenizer)
    config = AutoConfig.for_model(model_type, **spec)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    with torch.device(_device()):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    model = None  # free the weights before the next load
    _free()
    (out / "gpu_check_shape.json").write_text(json.dumps({"shape": shape, "parameters": parameters, **spec}))
    return out


# ---------------------------------------------------------------------------------------------
# Training


def _config(name: str, model_dir: Path, data: Path, output_dir: Path, steps: int, smoke: bool) -> dict:
    """A shipped training config, shortened to ``steps`` optimizer steps without evaluation or saving."""
    config = yaml.safe_load((ROOT / CONFIGS[name]).read_text(encoding="utf-8"))
    config.pop("eval_file", None)
    if smoke:
        config.update(dtype="float32", bf16=False, use_cpu=True, per_device_train_batch_size=2)
        config.update(gradient_accumulation_steps=1, lora_r=4, lora_alpha=8)
    config.update(
        model_name_or_path=str(model_dir),
        train_file=str(data / "train.json"),
        output_dir=str(output_dir),
        max_steps=steps,
        max_train_samples=steps * config["per_device_train_batch_size"] * config["gradient_accumulation_steps"],
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        f1_eval_samples=0,
        logging_steps=steps,
        report_to="none",
        dataloader_num_workers=0,
    )
    return config


def _train_timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            sync()
            self.seconds = time.perf_counter() - self.start

    return Timer()


def _memory_figures(memory: PeakMemory) -> dict:
    if memory.cuda:  # the allocator's peak over everything the run held, model weights included
        return {"peak_memory_gib": memory.peak / 2**30, "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
    return {"peak_memory_gib": memory.used / 2**30, "memory_note": "CPU: resident-memory growth"}


def train_ours(name: str, model_dir: Path, data: Path, workdir: Path, steps: int, smoke: bool) -> dict:
    """`llm_ner.training.train` with a shipped config (LoRA / QLoRA exactly as a user runs it)."""
    from llm_ner.training import make_parser, train

    config = _config(name, model_dir, data, workdir / f"ours-{name}", steps, smoke)
    data_args, training_args, model_args = make_parser().parse_dict(config)
    timer = _train_timer()
    _free()
    with PeakMemory() as memory:
        trainer = train(data_args, training_args, model_args, callbacks=[timer])
    tokens = trainer._total_train_tokens
    result = {
        "config": CONFIGS[name],
        "steps": trainer.state.global_step,
        "batch": f"{training_args.per_device_train_batch_size} x {training_args.gradient_accumulation_steps}",
        "gradient_checkpointing": training_args.gradient_checkpointing,
        "load_in_4bit": bool(model_args.load_in_4bit),
        "tokens": tokens,
        "seconds": timer.seconds,
        "tokens_per_s": tokens / timer.seconds,
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
        **_memory_figures(memory),
    }
    if model_args.load_in_4bit:
        import bitsandbytes as bnb

        base = trainer.model.get_base_model()
        result["linear4bit_modules"] = sum(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    del trainer
    _free()
    return result


def train_naive(name: str, model_dir: Path, data: Path, workdir: Path, steps: int, smoke: bool) -> dict:
    """The public tutorials' recipe with the same LoRA and batches: Trainer + DataCollatorForSeq2Seq,
    every batch padded to its longest sample, random order, full-vocabulary logits everywhere."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from llm_ner.training import NERDataArguments, load_split

    config = _config(name, model_dir, data, workdir / f"naive-{name}", steps, smoke)
    data_args = NERDataArguments(train_file=config["train_file"], prompt=config["prompt"])
    _, records, _ = load_split(data_args.train_file, data_args, _prompt(config["prompt"]), config["max_train_samples"])
    dataset, counting_collator, counter = naive_data(AutoTokenizer.from_pretrained(model_dir), records)

    timer = _train_timer()
    _free()
    with PeakMemory() as memory:
        dtype = config["dtype"] if config["dtype"] == "auto" else getattr(torch, config["dtype"])
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
        model = get_peft_model(
            model,
            LoraConfig(
                r=config["lora_r"],
                lora_alpha=config["lora_alpha"],
                lora_dropout=config["lora_dropout"],
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
        )
        args = TrainingArguments(
            output_dir=config["output_dir"],
            per_device_train_batch_size=config["per_device_train_batch_size"],
            gradient_accumulation_steps=config["gradient_accumulation_steps"],
            max_steps=steps,
            learning_rate=config["learning_rate"],
            logging_steps=steps,
            save_strategy="no",
            report_to="none",
            seed=config["seed"],
            bf16=config["bf16"],
            use_cpu=config.get("use_cpu", False),
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=counting_collator, callbacks=[timer]
        )
        result = trainer.train()
    figures = {
        "recipe": "Trainer + DataCollatorForSeq2Seq + PEFT LoRA (same r, alpha, targets)",
        "steps": trainer.state.global_step,
        "tokens": counter["tokens"],
        "seconds": timer.seconds,
        "tokens_per_s": counter["tokens"] / timer.seconds,
        "train_loss": result.training_loss,
        **_memory_figures(memory),
    }
    del trainer, model
    _free()
    return figures


def _prompt(name: str):
    from llm_ner.prompting import load_prompt

    return load_prompt(name)


# ---------------------------------------------------------------------------------------------
# Extraction


def _parse_stats(texts, answers, prompt) -> dict:
    from llm_ner.answer_format import answer_to_spans
    from llm_ner.parsing import ParseStats

    stats = ParseStats()
    for text, answer in zip(texts, answers):
        stats += answer_to_spans(text, answer, prompt.schema)[1]
    return stats.as_dict()


def _continuous_config(smoke: bool):
    """A small paged cache on CPU (the default sizes itself for a GPU and takes a minute on CPU)."""
    if not smoke:
        return None
    from transformers import ContinuousBatchingConfig

    return ContinuousBatchingConfig(num_blocks=32, max_batch_tokens=1024)


def extraction(
    model_dir: Path, texts: list[str], sizes: list[int], one_by_one: int, answer_tokens: int, smoke: bool
) -> dict:
    """Whole-dev seconds of each engine at a fixed answer length (random weights never stop)."""
    from llm_ner.generation import generate_answers, generate_answers_continuous, load_model
    from llm_ner.generation.constrained import MentionsConstraint

    prompt = _prompt("cluener_zh")
    model, tokenizer = load_model(str(model_dir))
    conversations = [prompt.messages(t) for t in texts]
    fixed = {"max_new_tokens": answer_tokens, "min_new_tokens": answer_tokens}
    generate_answers(model, tokenizer, conversations[:8], texts=texts[:8], batch_size=8, **fixed)  # warm-up
    results: dict = {"sentences": len(texts), "answer_tokens": answer_tokens, "engines": {}}
    engines = results["engines"]

    _, seconds = timed(
        lambda: one_at_a_time(model, tokenizer, conversations[:one_by_one], answer_tokens, answer_tokens)
    )
    engines["one-at-a-time"] = {
        "measured_sentences": one_by_one,
        "measured_seconds": seconds,
        "seconds": seconds * len(texts) / one_by_one,
        "note": f"timed on the first {one_by_one} sentences, extrapolated to all",
    }
    for size in sizes:
        answers, seconds = timed(
            lambda size=size: generate_answers(model, tokenizer, conversations, texts=texts, batch_size=size, **fixed)
        )
        engines[f"static bs={size}"] = {"seconds": seconds, "batch_size": size}
    best = min(sizes, key=lambda s: engines[f"static bs={s}"]["seconds"])
    results["best_batch_size"] = best
    constraint = MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys)
    answers, seconds = timed(
        lambda: generate_answers(
            model, tokenizer, conversations, texts=texts, batch_size=best, logits_processor_factory=constraint, **fixed
        )
    )
    engines[f"constrained bs={best}"] = {"seconds": seconds, "batch_size": best}
    try:
        generate_answers_continuous(
            model, tokenizer, conversations[:8], batching_config=_continuous_config(smoke), **fixed
        )  # warm-up (CUDA graphs)
        answers, seconds = timed(
            lambda: generate_answers_continuous(
                model, tokenizer, conversations, batching_config=_continuous_config(smoke), **fixed
            )
        )
        engines["continuous (generate_batch)"] = {"seconds": seconds}
    except Exception as error:  # an older transformers without it, or a paged-attention failure
        engines["continuous (generate_batch)"] = {"skipped": f"{type(error).__name__}: {error}"}
    free = {k: v["seconds"] for k, v in engines.items() if "seconds" in v and k.startswith(("static", "continuous"))}
    results["fastest_free_engine"] = min(free, key=free.get)
    results["fastest_free_seconds"] = free[results["fastest_free_engine"]]
    results["constrained_over_free"] = (
        engines[f"constrained bs={best}"]["seconds"] / engines[f"static bs={best}"]["seconds"]
    )
    model = None  # free the weights before the next load
    _free()
    return results


def correctness(model_dir: Path, texts: list[str], answer_tokens: int, smoke: bool) -> dict:
    """Prefix-cache answers against plain `generate` (float32 exact, bf16 counted), the constrained
    guarantee, and a 4-bit extraction."""
    from llm_ner.generation import generate_answers, load_model
    from llm_ner.generation.constrained import MentionsConstraint

    prompt = _prompt("cluener_zh")
    conversations = [prompt.messages(t) for t in texts]
    results: dict = {"sentences": len(texts)}
    dtypes = ["float32"] + (["bfloat16"] if torch.cuda.is_available() else [])
    for dtype in dtypes:
        model, tokenizer = load_model(str(model_dir), dtype=dtype)
        plain = one_at_a_time(model, tokenizer, conversations, answer_tokens)
        cached = generate_answers(
            model, tokenizer, conversations, texts=texts, batch_size=16, max_new_tokens=answer_tokens
        )
        differ = [i for i, (a, b) in enumerate(zip(plain, cached)) if a != b]
        results[f"prefix_cache_vs_generate_{dtype}"] = {
            "differences": len(differ),
            "distinct_answers": len(set(plain)),  # equality of one repeated string would prove nothing
            "examples": [{"sentence": i, "generate": plain[i], "prefix_cache": cached[i]} for i in differ[:3]],
        }
        if dtype == "float32":
            # The guarantee: every mention is a substring of its sentence with a schema label.
            constrained = generate_answers(
                model,
                tokenizer,
                conversations,
                texts=texts,
                batch_size=16,
                logits_processor_factory=MentionsConstraint.for_tokenizer(tokenizer, prompt.schema.keys),
                max_new_tokens=3 * answer_tokens if smoke else None,  # None: the bound from the sentence
            )
            stats = _parse_stats(texts, constrained, prompt)
            results["constrained_guarantee"] = {
                **stats,
                "holds": stats["hallucinated"] == 0 and stats["unknown_label"] == 0 and stats["invalid_items"] == 0,
            }
        model = None  # free the weights before the next load
        _free()
    results["fp32_equal"] = results["prefix_cache_vs_generate_float32"]["differences"] == 0
    try:
        import bitsandbytes  # noqa: F401

        model, tokenizer = load_model(str(model_dir), load_in_4bit=True)
        answers, seconds = timed(
            lambda: generate_answers(
                model, tokenizer, conversations, texts=texts, batch_size=16, max_new_tokens=answer_tokens
            )
        )
        results["extraction_4bit"] = {"ran": True, "seconds": seconds, "distinct_answers": len(set(answers))}
        model = None  # free the weights before the next load
        _free()
    except Exception as error:  # recorded, not raised: the other figures of this item stay
        word = "skipped" if smoke else "failed"
        results["extraction_4bit"] = {word: f"{type(error).__name__}: {error}"[:300]}
    return results


# ---------------------------------------------------------------------------------------------
# The run


def write_report(out: Path, report: dict) -> None:
    """gpu_check.json and gpu_check.md, each written through a temporary file."""
    write_text_atomic(json.dumps(report, indent=2, ensure_ascii=False) + "\n", out / "gpu_check.json")
    write_text_atomic(markdown(report) + "\n", out / "gpu_check.md")


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def markdown(report: dict) -> str:
    items = report["items"]
    lines = [
        f"# GPU check ({'smoke, tiny shapes on CPU' if report['smoke'] else 'real shapes, random weights'})",
        "",
        f"Device: {report['device']}; torch {report['versions']['torch']}, transformers "
        f"{report['versions']['transformers']}, trl {report['versions']['trl']}; {report['seconds']:.0f} s in all.",
        "",
        "| item | status |",
        "|---|---|",
    ]
    lines += [f"| {name} | {item.get('status')} |" for name, item in items.items()]
    train = items.get("train_small", {})
    if train.get("status") == "ok":
        lines += ["", "## Training, Qwen2.5-0.5B shape, " + CONFIGS["small"], ""]
        lines += ["| setup | tokens/s | peak GiB | seconds | loss |", "|---|---|---|---|---|"]
        for setup in ("naive", "ours"):
            r = train[setup]
            lines.append(
                f"| {setup} | {r['tokens_per_s']:.0f} | {r['peak_memory_gib']:.2f} | {r['seconds']:.1f} | "
                f"{r['train_loss']:.3f} |"
            )
        lines.append(
            f"\nSpeed-up {train['speedup']:.2f}x (target >= {TARGETS['train_speedup']}): "
            f"{_verdict(train['speedup'] >= TARGETS['train_speedup'])}."
        )
    for key, title in (("train_qlora", "QLoRA NF4, Qwen2.5-7B shape"), ("train_lora8b", "bf16 LoRA, Qwen3-8B shape")):
        r = items.get(key, {})
        if r.get("status") == "ok":
            lines += ["", f"## {title}, {r['config']}", ""]
            reserved = f" (reserved {r['peak_reserved_gib']:.2f})" if "peak_reserved_gib" in r else ""
            lines.append(
                f"Peak memory {r['peak_memory_gib']:.2f} GiB{reserved}, {r['tokens_per_s']:.0f} tokens/s, "
                f"batch {r['batch']}, gradient checkpointing {r['gradient_checkpointing']}."
            )
            if key == "train_qlora":
                ok = r["peak_memory_gib"] <= TARGETS["qlora_peak_gib"] if not report["smoke"] else None
                lines.append(f"Target <= {TARGETS['qlora_peak_gib']} GiB: {_verdict(ok)}.")
    ext = items.get("extraction", {})
    if ext.get("status") == "ok":
        lines += [
            "",
            f"## Extraction, {ext['sentences']} dev sentences, answers fixed at {ext['answer_tokens']} tokens",
            "",
        ]
        lines += ["| engine | whole-dev seconds | note |", "|---|---|---|"]
        for name, r in ext["engines"].items():
            lines.append(
                f"| {name} | {r['seconds']:.2f} | {r.get('note', '')} |"
                if "seconds" in r
                else f"| {name} | - | {r['skipped']} |"
            )
        free_ok = ext["fastest_free_seconds"] <= TARGETS["extract_free_s"] if not report["smoke"] else None
        ratio_ok = ext["constrained_over_free"] <= TARGETS["constrained_over_free"] if not report["smoke"] else None
        lines.append(
            f"\nFastest free engine: {ext['fastest_free_engine']} ({ext['fastest_free_seconds']:.2f} s; target <= "
            f"{TARGETS['extract_free_s']} s: {_verdict(free_ok)}). Constrained / free at bs={ext['best_batch_size']}: "
            f"{ext['constrained_over_free']:.2f}x (target <= {TARGETS['constrained_over_free']}: "
            f"{_verdict(ratio_ok)})."
        )
    cor = items.get("correctness", {})
    if cor.get("status") == "ok":
        lines += ["", f"## Correctness on {report['device']}, {cor['sentences']} dev sentences", ""]
        for key, r in cor.items():
            if key.startswith("prefix_cache_vs_generate"):
                lines.append(f"- {key}: {r['differences']} differences, {r['distinct_answers']} distinct answers")
                lines += [
                    f"  - sentence {e['sentence']}: `{e['generate']}` vs `{e['prefix_cache']}`" for e in r["examples"]
                ]
        lines.append(
            f"- constrained guarantee holds: {cor['constrained_guarantee']['holds']} ({cor['constrained_guarantee']})"
        )
        lines.append(f"- 4-bit extraction: {cor['extraction_4bit']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, the same code paths (< 1 min)")
    parser.add_argument("--data", help="folder with CLUENER train.json and dev.json (default: $LLM_NER_DATA)")
    parser.add_argument(
        "--tokenizers",
        default=str(tiny.shared_dir() / "tokenizers"),
        help="folder with the real tokenizers in qwen2.5/ and qwen3/ (files may be gzipped)",
    )
    parser.add_argument("--shapes-file", default=str(tiny.shared_dir() / "qwen_shapes.json"))
    parser.add_argument(
        "--items",
        default="correctness,extraction,train_small,train_qlora,train_lora8b",
        help="comma-separated subset, run in this order",
    )
    parser.add_argument("--batch-sizes", default="64,128,256,512", help="static-cache batch sizes to try")
    parser.add_argument("--train-steps", type=int, default=30, help="optimizer steps of the 0.5B comparison")
    parser.add_argument("--budget-s", type=float, default=450, help="skip the items left after this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import transformers
    import trl

    from llm_ner.data import read_cluener
    from llm_ner.data_sources import available_data_dir

    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke on CPU")
    data = Path(args.data) if args.data else available_data_dir()
    dev, _ = read_cluener(data / "dev.json")
    texts = [ex.text for ex in dev]
    smoke = args.smoke
    if smoke:
        texts, sizes, one_by_one, answer_tokens = texts[:4], [2, 4], 1, 4
        steps = {"small": 2, "qlora": 1, "lora8b": 1}
        correct_texts = texts[:4]
    else:
        sizes, one_by_one, answer_tokens = [int(s) for s in args.batch_sizes.split(",")], 32, ANSWER_TOKENS
        steps = {"small": args.train_steps, "qlora": 10, "lora8b": 5}
        correct_texts = texts[:64]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    report = {
        "smoke": smoke,
        "device": device,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "data": str(data),
        "items": {},
    }
    start = time.perf_counter()
    tokenizers, shapes_file = Path(args.tokenizers), Path(args.shapes_file)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        workdir = Path(tmp)
        models: dict[str, Path] = {}

        def model(key: str) -> Path:
            if key not in models:
                models[key] = make_model_dir(SHAPES[key], shapes_file, tokenizers, workdir / key, smoke, args.seed)
            return models[key]

        def drop(key: str) -> None:  # the 7B/8B copies are 15 GiB each on disk
            if key in models:
                shutil.rmtree(models.pop(key), ignore_errors=True)

        runs = {
            "correctness": lambda: correctness(model("small"), correct_texts, 16 if not smoke else 4, smoke),
            "extraction": lambda: extraction(model("small"), texts, sizes, one_by_one, answer_tokens, smoke),
            "train_small": lambda: _compare(model("small"), data, workdir, steps["small"], smoke),
            "train_qlora": lambda: train_ours("qlora", model("qlora"), data, workdir, steps["qlora"], smoke),
            "train_lora8b": lambda: train_ours("lora8b", model("lora8b"), data, workdir, steps["lora8b"], smoke),
        }
        items = args.items.split(",")
        unknown = [name for name in items if name not in runs]
        if unknown:  # before any item spends device time
            parser.error(f"unknown item(s) {', '.join(map(repr, unknown))}; choose from {', '.join(runs)}")
        for name in items:
            elapsed = time.perf_counter() - start
            if elapsed > args.budget_s:
                report["items"][name] = {"status": f"skipped: time budget spent ({elapsed:.0f} s > {args.budget_s} s)"}
                continue
            print(f"[{elapsed:6.0f} s] {name} ...", file=sys.stderr, flush=True)
            item_start = time.perf_counter()
            try:
                result = runs[name]()
                status = "ok"
                if "failed" in result.get("extraction_4bit", {}):
                    status = "failed: 4-bit extraction: " + result["extraction_4bit"]["failed"]
                report["items"][name] = {"status": status, **result}
            except Exception as error:
                skip = smoke and name == "train_qlora" and _is_bnb_error(error)
                report["items"][name] = {
                    "status": ("skipped: " if skip else "failed: ") + f"{type(error).__name__}: {error}"[:500],
                    **({} if skip else {"traceback": traceback.format_exc()[-3000:]}),
                }
            report["items"][name]["item_seconds"] = time.perf_counter() - item_start
            if name in ("train_qlora", "train_lora8b"):
                drop(name.removeprefix("train_"))
            report["seconds"] = time.perf_counter() - start
            write_report(Path(args.out), report)  # after every item: a timeout still leaves figures
    report["seconds"] = time.perf_counter() - start
    write_report(Path(args.out), report)
    print(markdown(report))
    failed = [name for name, item in report["items"].items() if item["status"].startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)} (tracebacks in {args.out}/gpu_check.json)", file=sys.stderr)
    return 1 if failed else 0


def _is_bnb_error(error: Exception) -> bool:
    text = f"{type(error).__name__} {error} {traceback.format_exc()}".lower()
    return "bitsandbytes" in text or "bnb" in text or "4bit" in text or "quantiz" in text


def _compare(model_dir: Path, data: Path, workdir: Path, steps: int, smoke: bool) -> dict:
    """Naive and ours on the same model, data, batches and steps (naive first, then ours)."""
    naive = train_naive("small", model_dir, data, workdir, steps, smoke)
    ours = train_ours("small", model_dir, data, workdir, steps, smoke)
    return {"naive": naive, "ours": ours, "speedup": ours["tokens_per_s"] / naive["tokens_per_s"]}


if __name__ == "__main__":
    sys.exit(main())
