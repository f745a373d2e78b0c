"""The arguments of `train_sft.py` and `llm-ner train`: our `NERDataArguments` beside TRL's `SFTConfig` and
`ModelConfig`, parsed by `trl.TrlParser` from a YAML ``--config`` plus command-line overrides, every way a bad
argument can come answered by one line (`check_config`) instead of a traceback."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..answer_format import ANSWER_FORMATS
from ..data import INPUT_FORMATS
from ..data.files import read_input_bytes
from ..errors import DataError, UsageError
from ..prompting import DEFAULT_PROMPT
from ..versions import check_versions

# Qwen3 must never think: every record carries this, and the saved template defaults to it.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}

DEFAULT_ANSWER_FORMAT = "mentions"  # NERDataArguments.answer_format when neither it nor a converted file says


@dataclass
class NERDataArguments:
    """Data and evaluation arguments of `train_sft.py` (beside TRL's SFTConfig and ModelConfig)."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: CLUENER JSON lines, a BIO/BIOES/BMES file, or `llm-ner convert` output."},
    )
    eval_file: str | None = field(
        default=None, metadata={"help": "Dev data (same formats); CLUENER/BIO is needed for F1 during training."}
    )
    input_format: str = field(
        default="auto", metadata={"help": "format of train_file/eval_file (auto guesses)", "choices": INPUT_FORMATS}
    )
    # None = not asked for: a converted file's own (its sidecar), else cluener_zh / mentions (`resolve_prompt`).
    prompt: str | None = field(
        default=None,
        metadata={
            "help": f"Prompt YAML path or shipped name (default: the converted train_file's, else {DEFAULT_PROMPT})."
        },
    )
    answer_format: str | None = field(
        default=None,
        metadata={
            "help": f"answer JSON layout (default: the converted train_file's, else {DEFAULT_ANSWER_FORMAT})",
            "choices": ANSWER_FORMATS,
        },
    )
    lenient: bool = field(default=False, metadata={"help": "Skip bad records (reported) instead of stopping."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N dev records for the loss."}
    )
    f1_eval_samples: int = field(
        default=200,
        metadata={"help": "Dev sentences (a fixed seeded sample) decoded for F1 at each evaluation; 0 = off."},
    )
    f1_eval_batch_size: int = field(default=32, metadata={"help": "Generation batch size of the F1 evaluation."})
    f1_eval_bf16_copy: bool = field(
        default=True,
        metadata={
            "help": "On a CPU with bf16 instructions, a float32 model decodes the F1 subset from a bf16 copy with "
            "the adapter merged, as `llm-ner extract` loads it there (about 3x faster); false: the model itself."
        },
    )
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "Compute the tokens every row of a batch starts with (the instructions) once per batch, with "
            "exact gradients, instead of once per row; false: whole rows (the slower reference)."
        },
    )
    f1_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Answer length bound of the F1 evaluation (default: from the sentence length)."}
    )
    train_shots: int = field(
        default=0,
        metadata={
            "help": "Retrieval-augmented fine-tuning: the K most similar other train sentences (TF-IDF, as "
            "`extract --shots K --shot-selection similar`) as worked examples in every training and eval prompt; "
            "extract then with --shots K --shots-from TRAIN_FILE. 0: none. Needs a CLUENER/BIO train_file."
        },
    )
    tiny_model_arch: str | None = field(
        default=None,
        metadata={
            "help": "qwen2 or qwen3: build a tiny random model at model_name_or_path if it does not exist (CPU demo)."
        },
    )
    tiny_model_shape: str | None = field(
        default=None, metadata={"help": 'JSON shape of the tiny model, e.g. {"hidden_size": 256, "num_layers": 4}.'}
    )

    def __post_init__(self) -> None:
        for name in ("train_shots", "f1_eval_samples"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("f1_eval_batch_size",):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be 1 or more, got {getattr(self, name)}")


def make_parser():
    check_versions()  # an old TRL/transformers would fail below on a missing class or config field
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((NERDataArguments, SFTConfig, ModelConfig))


def parse_arguments(argv: list[str] | None = None):
    """(data, training, model) arguments: a YAML ``--config`` plus command-line overrides."""
    import warnings

    with warnings.catch_warnings():
        # TRL's SFTConfig defaults gradient_checkpointing (and our configs use that name, which older
        # transformers need); transformers 5.2x renamed it activation_checkpointing and warns on every run.
        warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)
        parser = make_parser()
        argv = list(argv) if argv is not None else sys.argv[1:]
        check_config(argv, parser)
        return parser.parse_args_and_config(args=argv)


def check_config(argv: list[str], parser) -> None:
    """Read the ``--config`` YAML of ``argv`` as TRL will and stop with one line where TRL would raise
    a traceback: `DataError` (FILE:LINE) for a file that is unreadable, not YAML, not a mapping, or
    names an option none of ``parser``'s dataclasses has; `UsageError` for ``--config`` without a file."""
    import yaml

    if "--config" not in argv:
        return
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise UsageError("--config needs a YAML file")
    path = Path(argv[index + 1])
    try:
        text = read_input_bytes(path).decode("utf-8")  # a pipe read once; /dev/zero refused
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8 (byte {exc.start})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(path, mark.line + 1 if mark else None, f"invalid YAML: {problem}") from None
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a {type(config).__name__}"
        raise DataError(path, None, f"expected a YAML mapping of option: value, got {got}")
    known = {action.dest for action in parser._actions} | {"env"}  # TRL reads env: itself
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        raise DataError(path, None, f"unknown option {', '.join(unknown)} (`llm-ner train --help` lists them)")
