"""The `llm-ner` command line: one subcommand per pipeline stage."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .answer_format import ANSWER_FORMATS
from .data import (
    INPUT_FORMATS,
    SENTENCE_INPUT_FORMATS,
    check_output_path,
    guess_format,
    load_examples,
    write_cluener,
    write_jsonl_atomic,
    write_text_atomic,
)
from .data_sources import CLUENER_URL
from .errors import DataError, UsageError, user_facing_error
from .options import device_name, non_negative_int, positive_float, positive_int
from .prompting import DEFAULT_PROMPT, load_prompt, to_conversation

DTYPES = ("auto", "float32", "bfloat16", "float16")


# ---------------------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_output_path(args.output, {"--input": args.input})
    prompt = load_prompt(args.prompt)
    labels = prompt.schema.keys if prompt.schema else None
    examples, report = load_examples(args.input, args.input_format, labels=labels, lenient=args.lenient)
    if prompt.schema is None:
        prompt = prompt.with_labels(s.label for ex in examples for s in ex.spans)
    count = write_jsonl_atomic((to_conversation(ex, prompt, args.format) for ex in examples), args.output)
    report.print()
    print(
        f"wrote {count} {args.format} conversations to {args.output} "
        f"(prompt {prompt.name}) in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import evaluate
    from .report import format_evaluation

    if args.json:
        check_output_path(args.json, {"--gold": args.gold, "--pred": args.pred}, "--json")
    gold, gold_report = load_examples(args.gold, args.gold_format, lenient=args.lenient)
    pred, pred_report = load_examples(args.pred, args.pred_format, lenient=args.lenient, allow_empty=True)
    if args.min_score is not None:
        pred = _filter_min_score(args.pred, args.pred_format, pred, args.min_score)
    for report in (gold_report, pred_report):
        if report.skipped or report.warnings:
            report.print()
    labels = sorted({s.label for ex in gold for s in ex.spans})
    result = evaluate(gold, pred, labels, pred_path=args.pred, skipped_gold=gold_report.skipped)
    result = {"gold": str(args.gold), "pred": str(args.pred), **result}
    print(format_evaluation(result))
    if args.json:
        write_text_atomic(json.dumps(result, ensure_ascii=False, indent=2) + "\n", args.json)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _filter_min_score(path: str, input_format: str, pred: list, min_score: float) -> list:
    """`evaluate --min-score`: drop predicted entities scoring below the threshold."""
    from .confidence import filter_by_score, read_scores

    if min_score > 1:
        raise UsageError(f"--min-score is a probability: between 0 and 1, got {min_score}")
    scores = read_scores(path, input_format)
    if not scores:
        raise DataError(path, None, "carries no entity scores for --min-score (write them with `llm-ner extract`)")
    kept, dropped = filter_by_score(pred, scores, min_score)
    total = sum(len(ex.spans) for ex in pred)
    print(f"--min-score {min_score}: kept {total - dropped} of {total} predicted entities", file=sys.stderr)
    return kept


def cmd_export(args: argparse.Namespace) -> int:
    from .confidence import read_scores
    from .data import write_annotations

    examples, report = load_examples(args.pred, args.input_format, lenient=args.lenient, allow_empty=True)
    if report.skipped or report.warnings:
        report.print()
    if args.to == "cluener":
        if args.gold:
            raise UsageError("--gold goes with --to labelstudio (gold spans as annotations beside the predictions)")
        count = write_cluener(examples, args.output)
    else:
        gold = None
        if args.gold:
            if args.to != "labelstudio":
                raise UsageError("--gold needs --to labelstudio (doccano has no separate pre-annotations)")
            gold_examples, gold_report = load_examples(args.gold, args.gold_format, lenient=args.lenient)
            gold = {ex.id: ex for ex in gold_examples}
        scores = read_scores(args.pred, args.input_format)
        count = write_annotations(examples, args.output, args.to, scores, gold, as_annotation=args.as_annotation)
    print(f"wrote {count} {args.to} records to {args.output}", file=sys.stderr)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from .confidence import select_for_annotation

    if args.by == "disagreement" and len(args.pred) != 2:
        raise UsageError("--by disagreement needs two --pred files (two systems on the same sentences)")
    if args.by == "uncertainty" and len(args.pred) != 1:
        raise UsageError("--by uncertainty takes one --pred file (with scores from `llm-ner extract`)")
    records = select_for_annotation(args.pred, args.n, args.by, args.input_format, args.lenient)
    count = write_jsonl_atomic(records, args.output)
    print(f"wrote {count} sentences to annotate next ({args.by}) to {args.output}", file=sys.stderr)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data_sources import locate_cluener

    located = locate_cluener(
        download=not args.no_download, allow_sample=args.allow_sample, url=args.url, timeout=args.timeout
    )
    if located.check is not None:
        print(f"CLUENER ({located.source}) {located.check.summary()}", file=sys.stderr)
    print(located.folder)
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from .tiny import build_tiny_model, default_texts, read_shape, shape_arguments

    shape: dict = {}
    arch, real = args.arch, None
    if args.shape:
        try:
            real = read_shape(args.shape, args.shapes_file)
        except (FileNotFoundError, KeyError) as error:
            raise UsageError(f"--shape: {error.args[0]}") from None
        if arch and arch != real["model_type"]:
            raise UsageError(f"--arch {arch} contradicts --shape {args.shape} ({real['model_type']})")
        arch = real["model_type"]
        shape = shape_arguments(real)
    explicit = {
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "num_heads": args.num_heads,
        "num_kv_heads": args.num_kv_heads,
        "intermediate_size": args.intermediate_size,
    }
    for name, value in explicit.items():  # explicit sizes override the shape (else build_config's defaults)
        if value is not None:
            shape[name] = value
    if args.hidden_size is not None or args.num_heads is not None:
        shape.pop("head_dim", None)  # follows the new width
    if args.tokenizer:
        if args.texts:
            raise UsageError("--texts builds a tokenizer; --tokenizer uses an existing one: give one of them")
        if not (Path(args.tokenizer) / "tokenizer_config.json").is_file():
            raise UsageError(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there")
        texts: list[str] = []
    elif args.texts:
        texts = []
        for path in args.texts:
            if guess_format(path) == "cluener":
                texts += [ex.text for ex in load_examples(path, "cluener", lenient=True)[0]]
            else:
                texts += Path(path).read_text(encoding="utf-8").splitlines()
        texts += default_texts(limit=0)  # prompts and JSON vocabulary
    else:
        texts = default_texts()
    vocab_size = args.vocab_size or (real["vocab_size"] if real else None)
    try:
        out = build_tiny_model(
            args.out, arch, texts, seed=args.seed, tokenizer_dir=args.tokenizer, vocab_size=vocab_size, **shape
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    print(
        f"saved a random-weight {config.model_type} model (hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocab {config.vocab_size}) to {out}",
        file=sys.stderr,
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import main as train_main

    train_main(args.train_args)
    return 0


def quiet_libraries() -> None:
    """--quiet: no progress bars from transformers either (loading weights, writing shards)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def cmd_extract(args: argparse.Namespace) -> int:
    from .extraction import run_extraction

    if args.quiet:
        quiet_libraries()
    check_output_path(args.output, {"--input": args.input})
    if args.backend == "local" and (args.base_url or args.served_model):
        raise UsageError("--base-url and --served-model need --backend openai")
    if args.backend == "openai" and not (args.base_url and args.served_model):
        raise UsageError("--backend openai needs --base-url and --served-model")
    return run_extraction(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import run_server

    if args.max_chars > args.max_text_chars:
        raise UsageError("--max-chars (piece length) must not exceed --max-text-chars (longest text accepted)")
    return run_server(args)


def cmd_baseline(args: argparse.Namespace) -> int:
    from .baselines import (
        BaselineConfig,
        load_baseline,
        log_stderr,
        predict_examples,
        train_baseline,
    )

    if args.quiet:
        quiet_libraries()
    if args.baseline_command == "train":
        train, report = load_examples(args.train, args.input_format, lenient=args.lenient)
        dev, dev_report = load_examples(args.dev, args.input_format, lenient=args.lenient) if args.dev else ([], None)
        for r in (report, dev_report):
            if r is not None and (r.skipped or r.warnings):
                r.print()
        if args.max_train_samples:
            train = train[: args.max_train_samples]
        config = BaselineConfig(
            arch=args.arch,
            encoder=args.encoder,
            epochs=args.epochs,
            batch_size=args.batch_size,
            patience=args.patience,
            learning_rate=args.lr,
            encoder_learning_rate=args.encoder_lr,
            seed=args.seed,
            hidden_size=args.hidden_size,
            embedding_dim=args.embedding_dim,
        )
        result = train_baseline(train, dev, config, args.out, progress=not args.quiet, log=log_stderr)
        kept = f"best dev span micro-F1 {result['best']:.4f}" if dev else f"lowest train loss {-result['best']:.4f}"
        print(f"{kept}; model in {args.out}", file=sys.stderr)
        return 0
    from .data import read_inputs

    check_output_path(args.output, {"--input": args.input})
    model, batcher = load_baseline(args.model)
    examples = read_inputs(args.input, args.input_format, lenient=args.lenient)
    predicted = predict_examples(model, batcher, examples, args.batch_size, progress=not args.quiet)
    count = write_cluener(predicted, args.output)
    print(f"wrote {count} predictions to {args.output}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    out = run_report(args.gold, args.pred, args.out, args.published, args.resamples, args.seed, args.note)
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'report.json'} and the charts", file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .training import merge_adapter

    out = merge_adapter(args.adapter, args.out, args.dtype)
    print(f"merged {args.adapter} into {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model, prompt and decoding options that `extract` and `serve` share."""
    parser.add_argument("--model", help="model: hub id or local directory (default: the adapter's base model)")
    parser.add_argument("--adapter", help="LoRA adapter directory (a training output)")
    parser.add_argument("--prompt", help="prompt YAML or name (default: the one saved at training time)")
    parser.add_argument("--format", choices=ANSWER_FORMATS, help="answer format (default: as trained)")
    parser.add_argument("--max-new-tokens", type=positive_int, help="answer length bound (default: from text length)")
    parser.add_argument(
        "--max-chars",
        type=positive_int,
        default=256,
        help="split longer texts at punctuation, spans shifted back (default: %(default)s)",
    )
    parser.add_argument(
        "--constrained",
        action="store_true",
        help="constrained decoding: answers always parse, entities are substrings, labels known",
    )
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bf16 on GPU, float32 on CPU")
    parser.add_argument("--device", type=device_name, help="cpu, cuda, cuda:1 (default: the process's GPU, else CPU)")
    parser.add_argument("--load-in-4bit", action="store_true", help="load the base model in 4-bit (bitsandbytes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-ner",
        description="Chinese NER with fine-tuned LLMs: convert data to chat instructions, "
        "train, extract, evaluate and compare with BERT/BiLSTM-CRF baselines.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = sub.add_parser(
        "convert",
        help="turn CLUENER/BIO data into chat instructions (TRL prompt-completion JSON lines)",
        description="Convert an NER file into JSON lines {id, prompt: [system, user], "
        "completion: [assistant]} for TRL's SFTTrainer. Bad records stop the run with "
        "FILE:LINE: reason unless --lenient.",
    )
    convert.add_argument("--input", required=True, help="CLUENER JSON lines or char-per-line BIO/BIOES/BMES file")
    convert.add_argument("--output", required=True, help="output JSON lines file")
    convert.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help="prompt YAML path or shipped name (default: %(default)s; see prompts/)",
    )
    convert.add_argument(
        "--format",
        default="mentions",
        choices=ANSWER_FORMATS,
        help="assistant answer: mentions = JSON list in reading order (exact spans); "
        "grouped = {label: [strings]} (default: %(default)s)",
    )
    convert.add_argument(
        "--input-format",
        default="auto",
        choices=INPUT_FORMATS,
        help="input file format; auto picks cluener for JSON lines, else a tag "
        "scheme detected from the tags (default: %(default)s)",
    )
    convert.add_argument(
        "--lenient",
        action="store_true",
        help="skip bad records (printed with their lines) instead of stopping",
    )
    convert.set_defaults(func=cmd_convert)

    evaluate = sub.add_parser(
        "evaluate",
        help="score predictions against gold: span-level and CLUENER string-level tables",
        description="Exact span-level precision/recall/F1 per class (micro, macro), the CLUENER "
        "leaderboard's string-level scores and an error breakdown. Predictions are CLUENER "
        "JSON lines matched to gold by id (records without id: by position).",
    )
    evaluate.add_argument("--gold", required=True, help="gold file (CLUENER or BIO)")
    evaluate.add_argument("--pred", required=True, help="predictions (CLUENER JSON lines)")
    evaluate.add_argument("--gold-format", default="auto", choices=INPUT_FORMATS)
    evaluate.add_argument(
        "--pred-format", default="cluener", choices=INPUT_FORMATS, help="predictions format (default: %(default)s)"
    )
    evaluate.add_argument(
        "--min-score",
        type=positive_float,
        metavar="X",
        help="score only predicted entities whose confidence (written by `llm-ner extract`) is at least X (0-1]",
    )
    evaluate.add_argument("--json", metavar="OUT", help="also write all scores as JSON")
    evaluate.add_argument("--lenient", action="store_true", help="skip bad records instead of stopping")
    evaluate.set_defaults(func=cmd_evaluate)

    train = sub.add_parser(
        "train",
        help="fine-tune with TRL (same arguments as train_sft.py; --config YAML plus overrides)",
        description="Runs train_sft.py in this process: `llm-ner train --config configs/tiny-cpu.yaml "
        "--max_steps 20`. For several GPUs use `accelerate launch train_sft.py ...`. "
        "`llm-ner train --help` lists every option.",
        add_help=False,
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)

    data = sub.add_parser(
        "data",
        help="find or download CLUENER2020 and check it; prints the folder",
        description="Looks for train.json and dev.json in $LLM_NER_DATA, then in data/cluener/; else downloads "
        "the CLUE benchmark's CLUENER archive into data/cluener/. Every record is validated (FILE:LINE on the "
        "first bad one) and the sha256 compared with the known release. Prints the folder on stdout, so "
        "scripts can run DATA=$(llm-ner data cluener). Without network it says where to put the files.",
    )
    data.add_argument("dataset", choices=("cluener",))
    data.add_argument("--no-download", action="store_true", help="only look, do not download")
    data.add_argument(
        "--allow-sample",
        action="store_true",
        help="if CLUENER is not available, print the small sample shipped with llm-ner (template sentences "
        "written for the project, not CLUENER) instead of failing",
    )
    data.add_argument("--url", default=CLUENER_URL, help="archive to download (default: %(default)s)")
    data.add_argument("--timeout", type=positive_float, default=30.0, help="network timeout in seconds")
    data.set_defaults(func=cmd_data)

    tiny = sub.add_parser(
        "tiny-model",
        help="save a random-weight Qwen2/Qwen3 model (tiny, or a real shape) with a local or real tokenizer",
        description="A model directory loadable with AutoModelForCausalLM/AutoTokenizer.from_pretrained: "
        "random weights and either a byte-level BPE tokenizer built here, in which every character of the "
        "texts is one token, with Qwen's special tokens and the real Qwen chat template from the trl package; "
        "or, with --tokenizer, the files of a real tokenizer (e.g. ../shared/tokenizers/qwen2.5) and an "
        "embedding of its size (151 936 rows for Qwen). --shape takes the architecture of a real model "
        "from qwen_shapes.json; explicit sizes override it. Random weights prove plumbing and speed, not quality.",
    )
    tiny.add_argument("--arch", choices=("qwen2", "qwen3"), help="default: from --shape or --tokenizer, else qwen3")
    tiny.add_argument("--out", required=True, help="output directory")
    tiny.add_argument(
        "--texts",
        nargs="+",
        help="texts for the tokenizer: files of plain lines or CLUENER files "
        "(default: CLUENER train/dev from LLM_NER_DATA plus the shipped prompts)",
    )
    tiny.add_argument("--tokenizer", metavar="DIR", help="use this hub-format tokenizer (copied unchanged)")
    tiny.add_argument("--shape", metavar="NAME", help="a real architecture, e.g. Qwen2.5-0.5B-Instruct")
    tiny.add_argument("--shapes-file", metavar="FILE", help="default: ../shared/qwen_shapes.json beside the checkout")
    tiny.add_argument("--hidden-size", type=positive_int, help="default 128 (or the shape's)")
    tiny.add_argument("--num-layers", type=positive_int, help="default 2 (or the shape's)")
    tiny.add_argument("--num-heads", type=positive_int, help="default 4 (or the shape's)")
    tiny.add_argument("--num-kv-heads", type=positive_int, help="default 2 (or the shape's)")
    tiny.add_argument("--intermediate-size", type=positive_int, help="default 3 x hidden (or the shape's)")
    tiny.add_argument("--vocab-size", type=positive_int, help="embedding rows (default: from the tokenizer/shape)")
    tiny.add_argument("--seed", type=non_negative_int, default=0)
    tiny.set_defaults(func=cmd_tiny_model)

    extract = sub.add_parser(
        "extract",
        help="extract entities from many sentences with a (fine-tuned) model, in batches",
        description="Batched greedy generation, answers parsed into exact spans, CLUENER JSON lines out "
        "(with the raw answer and parse counters per record). Resumable: a rerun skips finished ids, and refuses "
        "(names the difference) earlier results made with other settings or from another input; --restart discards "
        "them. "
        "Data-parallel: `accelerate launch --num_processes N scripts/extract.py ...`.",
    )
    extract.add_argument(
        "--input",
        required=True,
        help='plain text (one sentence a line), JSON lines with "text" (and "id"), CLUENER or BIO files',
    )
    extract.add_argument("--output", required=True, help="CLUENER JSON lines for `llm-ner evaluate`")
    add_model_options(extract)
    extract.add_argument(
        "--input-format",
        default="auto",
        choices=SENTENCE_INPUT_FORMATS,
    )
    extract.add_argument(
        "--batch-size", type=positive_int, default=32, help="sentences (or pieces) per batch (default: %(default)s)"
    )
    extract.add_argument("--limit", type=positive_int, help="only the first N sentences")
    extract.add_argument("--restart", action="store_true", help="discard earlier results instead of resuming")
    extract.add_argument("--lenient", action="store_true", help="skip bad input records instead of stopping")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    remote = extract.add_argument_group(
        "openai backend",
        "Send the same prompts to an OpenAI-compatible server (vLLM, SGLang, `transformers serve`) instead of "
        "loading the model here. The API key, if the server needs one, comes from the LLM_NER_API_KEY or "
        "OPENAI_API_KEY environment variable. --prompt/--format, or --adapter/--model naming the training run "
        "directory, say how to prompt; --constrained sends a JSON schema (response_format) where supported.",
    )
    remote.add_argument("--backend", choices=("local", "openai"), default="local", help="(default: %(default)s)")
    remote.add_argument("--base-url", help="server URL, e.g. http://127.0.0.1:8000/v1")
    remote.add_argument("--served-model", help="the model name the server lists at /v1/models")
    remote.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight (default: %(default)s)")
    remote.add_argument(
        "--timeout", type=positive_float, default=120.0, help="seconds per request (default: %(default)s)"
    )
    remote.add_argument(
        "--retries",
        type=non_negative_int,
        default=5,
        help="retries with backoff on connection errors, timeouts, 429 and 5xx (default: %(default)s)",
    )
    extract.set_defaults(func=cmd_extract)

    serve = sub.add_parser(
        "serve",
        help="serve extraction over HTTP (POST /extract, GET /health, a demo page at /)",
        description='Loads the model once and answers POST /extract {"texts": [...]} with entities (character '
        "offsets, end exclusive), labels and parse counters. Requests arriving together share one batched "
        "generate (dynamic batching). Full queue -> 503 with Retry-After; too large -> 413; bad JSON -> 400. "
        "GET / is a page that highlights the entities of pasted text.",
    )
    add_model_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s; 0.0.0.0 exposes it)")
    serve.add_argument("--port", type=positive_int, default=8000, help="(default: %(default)s)")
    serve.add_argument(
        "--max-batch",
        type=positive_int,
        default=32,
        help="texts gathered per batch, and pieces per generate call (default: %(default)s)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=positive_float,
        default=5.0,
        help="how long a request waits for others to share its batch (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queue", type=positive_int, default=256, help="texts queued or running before 503 (default: %(default)s)"
    )
    serve.add_argument("--max-texts", type=positive_int, default=64, help="texts per request (default: %(default)s)")
    serve.add_argument(
        "--max-text-chars", type=positive_int, default=5000, help="characters per text (default: %(default)s)"
    )
    serve.add_argument(
        "--max-body-bytes", type=positive_int, default=1_000_000, help="request body size (default: %(default)s)"
    )
    serve.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(func=cmd_serve)

    baseline = sub.add_parser(
        "baseline",
        help="train / run the BiLSTM-CRF, BERT-CRF and BERT-BiLSTM-CRF baselines",
        description="Character-level BIO taggers with a CRF, reading the same CLUENER/BIO files and "
        "writing the same CLUENER predictions as the LLM path.",
    )
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True, metavar="train|predict")
    btrain = baseline_sub.add_parser("train", help="train a baseline; keeps the best epoch by dev span F1")
    btrain.add_argument("--arch", required=True, choices=("bilstm-crf", "bert-crf", "bert-bilstm-crf"))
    btrain.add_argument("--train", required=True, help="training file (CLUENER or BIO)")
    btrain.add_argument("--dev", help="dev file for model selection")
    btrain.add_argument("--out", required=True, help="output directory")
    btrain.add_argument(
        "--encoder",
        default="bert-base-chinese",
        help="BERT archs: AutoModel id or local directory, e.g. hfl/chinese-roberta-wwm-ext",
    )
    btrain.add_argument("--epochs", type=positive_int, default=20, help="at most this many epochs (default 20)")
    btrain.add_argument(
        "--batch-size",
        type=non_negative_int,
        default=0,
        help="sentences per batch; 0 (default): training pieces / 100, between 8 and 64",
    )
    btrain.add_argument(
        "--patience",
        type=non_negative_int,
        default=4,
        help="stop after this many epochs without a better dev F1 (default 4; 0: run every epoch)",
    )
    btrain.add_argument("--lr", type=positive_float, default=1e-3, help="BiLSTM-CRF / head learning rate")
    btrain.add_argument("--encoder-lr", type=positive_float, default=3e-5, help="BERT encoder learning rate")
    btrain.add_argument("--hidden-size", type=positive_int, default=256, help="BiLSTM width (both directions)")
    btrain.add_argument("--embedding-dim", type=positive_int, default=128, help="BiLSTM-CRF character embedding size")
    btrain.add_argument("--max-train-samples", type=positive_int)
    btrain.add_argument("--seed", type=non_negative_int, default=42)
    btrain.add_argument("--input-format", default="auto", choices=INPUT_FORMATS)
    btrain.add_argument("--lenient", action="store_true")
    btrain.add_argument("--quiet", action="store_true")
    bpredict = baseline_sub.add_parser("predict", help="write CLUENER predictions with a trained baseline")
    bpredict.add_argument("--model", required=True, help="baseline directory")
    bpredict.add_argument("--input", required=True, help="text, JSON lines, CLUENER or BIO file")
    bpredict.add_argument("--output", required=True)
    bpredict.add_argument("--batch-size", type=positive_int, default=64)
    bpredict.add_argument(
        "--input-format",
        default="auto",
        choices=SENTENCE_INPUT_FORMATS,
    )
    bpredict.add_argument("--lenient", action="store_true")
    bpredict.add_argument("--quiet", action="store_true")
    baseline.set_defaults(func=cmd_baseline)

    report = sub.add_parser(
        "report",
        help="side-by-side report of several systems (markdown, HTML sentence browser, JSON, PNG charts)",
        description="Scores every prediction file against the same gold file with `llm-ner evaluate`'s metrics "
        "and writes report.md, report.html (with a sentence browser), report.json and PNG charts: per-system tables, "
        "the F1 summary with "
        "published figures marked as such, error breakdowns and paired bootstrap intervals.",
    )
    report.add_argument("--gold", required=True)
    report.add_argument(
        "--pred",
        required=True,
        action="append",
        metavar="NAME=FILE",
        help="a system's CLUENER predictions (repeat for each system)",
    )
    report.add_argument("--published", help="published figures to add as rows, e.g. eval/published_cluener.json")
    report.add_argument("--out", required=True, help="output directory")
    report.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples (default: %(default)s)"
    )
    report.add_argument("--seed", type=non_negative_int, default=0)
    report.add_argument("--note", help="a paragraph for the top of report.md (how the systems were trained)")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser(
        "export",
        help="write predictions (or gold) for Label Studio / doccano, or annotations back as CLUENER",
        description="Predictions become pre-annotations to correct: Label Studio tasks with the predictions "
        "(and each entity's confidence as its score) and, with --gold, the gold spans as the annotation; or "
        "doccano JSON lines. --to cluener reads a corrected Label Studio / doccano file (--input-format) back "
        "into CLUENER JSON lines for training.",
    )
    export.add_argument("pred", metavar="PRED", help="predictions or annotations to convert")
    export.add_argument("--to", required=True, choices=("labelstudio", "doccano", "cluener"))
    export.add_argument("--output", required=True, help="output file")
    export.add_argument("--gold", help="gold file whose spans become the Label Studio annotation")
    export.add_argument("--gold-format", default="auto", choices=INPUT_FORMATS)
    export.add_argument("--input-format", default="auto", choices=INPUT_FORMATS, help="format of PRED")
    export.add_argument(
        "--as-annotation",
        action="store_true",
        help="Label Studio: write PRED's spans as the (finished) annotation instead of a prediction",
    )
    export.add_argument("--lenient", action="store_true", help="skip bad records instead of stopping")
    export.set_defaults(func=cmd_export)

    select = sub.add_parser(
        "select",
        help="pick the sentences to annotate next: least certain, or where two systems disagree most",
        description="Writes the N sentences whose predictions are least certain (1 - the lowest entity or "
        "answer score written by `llm-ner extract`) or, with two --pred files, where the systems disagree "
        "most (spans only one predicts). Output: CLUENER JSON lines with the first file's predictions and "
        "scores, ready for `llm-ner export --to labelstudio`.",
    )
    select.add_argument("--pred", required=True, action="append", help="predictions (give two for disagreement)")
    select.add_argument("-n", type=positive_int, default=100, help="sentences to pick (default: %(default)s)")
    select.add_argument("--by", required=True, choices=("uncertainty", "disagreement"))
    select.add_argument("--output", required=True, help="CLUENER JSON lines of the chosen sentences")
    select.add_argument("--input-format", default="cluener", choices=INPUT_FORMATS)
    select.add_argument("--lenient", action="store_true")
    select.set_defaults(func=cmd_select)

    merge = sub.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model",
        description="Loads the adapter's base model unquantized, merges the LoRA weights and saves a "
        "plain model directory with the tokenizer (Qwen3 thinking off by default) and run metadata.",
    )
    merge.add_argument("--adapter", required=True, help="adapter directory (training output)")
    merge.add_argument("--out", required=True, help="output directory")
    merge.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    merge.set_defaults(func=cmd_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # TrlParser owns every option after `train`, --help included
        args = argparse.Namespace(func=cmd_train, train_args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head`
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        expected = user_facing_error(exc)
        if expected is None:
            raise  # a bug: keep the traceback
        code, message = expected
        print(f"error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
