"""The flags of `llm-ner extract` and `llm-ner serve` as typed options (vLLM's `EngineArgs` pattern): the model,
prompt and decoding of a run (`ModelOptions`, shared by both commands) and the input, output and batching of
`extract` (`ExtractOptions`). Flag combinations are checked in ``__post_init__``, before anything loads.
Importing this module imports no torch (the CLI builds its parsers from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..answer_format import ANSWER_FORMATS
from ..backends.openai import OpenAIOptions
from ..data import SENTENCE_INPUT_FORMATS
from ..errors import UsageError
from ..options import CliOptions, device_name, fraction, non_negative_float, non_negative_int, option, positive_int
from ..shots import SHOT_SELECTIONS

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelOptions(CliOptions):
    """The model, prompt and decoding of a run: shared by `llm-ner extract` and `llm-ner serve`."""

    model: str | None = option(None, help="model: hub id or local directory (default: the adapter's base model)")
    adapter: str | None = option(None, help="LoRA adapter directory (a training output)")
    prompt: str | None = option(None, help="prompt YAML or name (default: the one saved at training time)")
    answer_format: str | None = option(
        None, flag="--format", choices=ANSWER_FORMATS, help="answer format (default: as trained)"
    )
    max_new_tokens: int | None = option(None, type=positive_int, help="answer length bound (default: from text length)")
    max_chars: int = option(
        256, type=positive_int, help="split longer texts at punctuation, spans shifted back (default: %(default)s)"
    )
    constrained: bool = option(
        False, help="constrained decoding: answers always parse, entities are substrings, labels known"
    )
    dtype: str = option(
        "auto",
        choices=DTYPES,
        help="auto: bf16 on GPU or on a CPU with bf16 instructions (AVX512-BF16, AMX), else float32",
    )
    device: str | None = option(None, type=device_name, help="cpu, cuda, cuda:1 (default: the process's GPU, else CPU)")
    load_in_4bit: bool = option(False, help="load the base model in 4-bit (bitsandbytes)")
    shots: int = option(
        0,
        type=non_negative_int,
        metavar="K",
        help="few-shot: before each sentence, K labelled sentences of --shots-from as user/assistant turns in the "
        "run's answer format (default: %(default)s, zero-shot)",
    )
    shots_from: str | None = option(
        None,
        metavar="FILE",
        help="the labelled sentences shots come from (CLUENER JSON lines or BIO/BIOES/BMES; labels must be the "
        "prompt's). A shot that contains the text asked about, or is part of the sentence a --max-chars piece was "
        "cut from, is never used, so a run over the shots file itself does not see its answers",
    )
    shot_selection: str = option(
        "similar",
        choices=SHOT_SELECTIONS,
        help="similar: the K most similar sentences (cosine of TF-IDF character 1-2-grams, ties to the earlier "
        "line), the most similar nearest the question; random: K drawn per sentence from --shot-seed and its text "
        "(resumed and sharded runs draw the same); fixed: the first K of the file (default: %(default)s)",
    )
    shot_seed: int = option(
        0, type=non_negative_int, metavar="N", help="seed of --shot-selection random (default: %(default)s)"
    )
    max_prompt_tokens: int | None = option(
        None,
        type=positive_int,
        metavar="N",
        help="drop shots, the least similar (lowest ranked) first, until a prompt has at most N tokens: counted "
        "with the model's tokenizer; with --backend openai, bounded as UTF-8 bytes + 16 per message (never fewer "
        "than a byte-level BPE tokenizer such as Qwen's counts; a Chinese character counts 3). N below the "
        "zero-shot prompt is refused before the model loads; a sentence too long to fit even without shots is "
        "sent over N, counted and warned about once",
    )

    def __post_init__(self) -> None:
        if self.shots and not self.shots_from:
            raise UsageError("--shots needs --shots-from (the labelled sentences to take them from)")
        if self.shots_from and not self.shots:
            raise UsageError("--shots-from needs --shots K (how many shots per sentence)")
        if self.max_prompt_tokens is not None and not self.shots:
            raise UsageError("--max-prompt-tokens bounds the prompt by dropping shots: it needs --shots")


@dataclass
class ExtractOptions(CliOptions):
    """The input, output and batching of `llm-ner extract` (the model: `ModelOptions`)."""

    input: str | Path = option(
        required=True,
        help='plain text (one sentence a line), JSON lines with "text" (and "id"), CLUENER or BIO files',
    )
    output: str | Path = option(required=True, help="CLUENER JSON lines for `llm-ner evaluate`")
    input_format: str = option("auto", choices=SENTENCE_INPUT_FORMATS)
    batch_size: int = option(64, type=positive_int, help="sentences (or pieces) per batch (default: %(default)s)")
    limit: int | None = option(None, type=positive_int, help="only the first N sentences")
    restart: bool = option(False, help="discard earlier results instead of resuming")
    lenient: bool = option(False, help="skip bad input records instead of stopping")
    quiet: bool = option(False, help="no progress bar")
    backend: str = option("local", choices=("local", "openai"), help="(default: %(default)s)")
    engine: str = option("local", choices=("local", "ray"), help="(default: %(default)s)")
    max_parse_failures: float | None = option(
        None,
        type=fraction,
        metavar="X",
        help="exit with status 1 when more than this share (0-1) of the answers could not be parsed; the "
        "records are written all the same (default: only when no answer could be parsed)",
    )


@dataclass
class RayOptions(CliOptions):
    """Where and on how many workers `llm-ner extract --engine ray` runs."""

    ray_address: str | None = option(
        None,
        help="Ray cluster to join: auto (the one `ray start` runs on this machine) or HEAD_IP:6379 "
        "(default: start a Ray runtime of this run's own, on 127.0.0.1)",
    )
    workers: int = option(1, type=positive_int, help="actors, each holding one engine (default: %(default)s)")
    gpus_per_worker: float = option(
        0.0,
        type=non_negative_float,
        help="GPUs per actor; > 0 loads the model on the actor's GPU (default: %(default)s)",
    )
    cpus_per_worker: float = option(
        1.0, type=non_negative_float, help="CPUs per actor, also its torch threads (default: %(default)s)"
    )
    output_dir: bool = option(
        False,
        help="--output is a folder: the records are written there as part-00000.json, ... (--part-records each, in "
        "input order) instead of one file, for corpora too large for one",
    )
    part_records: int = option(
        1_000_000, type=positive_int, help="records per part file with --output-dir (default: %(default)s)"
    )


@dataclass
class ExtractRequest:
    """Everything one `llm-ner extract` asks for: the model, the run, and the server (``backend`` openai) or the
    Ray cluster (``engine`` ray) it runs on. Options of a backend or engine not chosen are refused."""

    model: ModelOptions
    extract: ExtractOptions
    openai: OpenAIOptions | None = None
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        server = self.openai
        if self.extract.backend == "local" and server is not None:
            raise UsageError("--base-url and --served-model need --backend openai")
        if self.extract.backend == "openai" and not (server and server.base_url and server.served_model):
            raise UsageError("--backend openai needs --base-url and --served-model")
        if self.extract.engine == "local" and self.ray != RayOptions():
            raise UsageError(
                "--ray-address, --workers, --gpus-per-worker, --cpus-per-worker, --output-dir and --part-records "
                "need --engine ray"
            )

    @classmethod
    def from_cli_args(cls, args) -> ExtractRequest:
        server = None
        if args.backend == "openai" or args.base_url or args.served_model:
            server = OpenAIOptions.from_cli_args(args)
        model, extract = ModelOptions.from_cli_args(args), ExtractOptions.from_cli_args(args)
        return cls(model, extract, server, RayOptions.from_cli_args(args))
