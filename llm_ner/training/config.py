"""The arguments of `train_sft.py` and `llm-ner train`: our `NERDataArguments` beside TRL's `SFTConfig` and
`ModelConfig`, parsed by `trl.TrlParser` from a YAML ``--config`` plus command-line overrides, every way a bad
argument can come answered by one line (`check_config`) instead of a traceback."""

from __future__ import annotations

import math
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
        check_bounds(self, DATA_BOUNDS)


# Bounds of the numeric options: name -> (lowest, lowest allowed itself, below this or None, whole number).
# An option set to None (where its type allows) is not checked; nor is one a dataclass does not have.
Bound = tuple[float, bool, float | None, bool]
DATA_BOUNDS: dict[str, Bound] = {
    "train_shots": (0, True, None, True),
    "f1_eval_samples": (0, True, None, True),
    "f1_eval_batch_size": (1, True, None, True),
    "max_train_samples": (1, True, None, True),
    "max_eval_samples": (1, True, None, True),
    "f1_max_new_tokens": (1, True, None, True),
}
TRAINING_BOUNDS: dict[str, Bound] = {
    "learning_rate": (0, False, None, False),
    "per_device_train_batch_size": (1, True, None, True),
    "per_device_eval_batch_size": (1, True, None, True),
    "gradient_accumulation_steps": (1, True, None, True),
    "eval_accumulation_steps": (1, True, None, True),
    "warmup_steps": (0, True, None, False),  # below 1: a share of the steps
    "weight_decay": (0, True, None, False),
    "adam_beta1": (0, True, 1, False),
    "adam_beta2": (0, True, 1, False),
    "adam_epsilon": (0, False, None, False),
    "max_grad_norm": (0, True, None, False),
    "label_smoothing_factor": (0, True, 1, False),
    "neftune_noise_alpha": (0, True, None, False),
    "logging_steps": (0, False, None, False),  # below 1: a share of the steps
    "eval_steps": (0, False, None, False),
    "save_steps": (0, False, None, False),
    "save_total_limit": (0, True, None, True),
    "seed": (0, True, 2**32, True),  # numpy's seed range
    "data_seed": (0, True, 2**32, True),
    "dataloader_num_workers": (0, True, None, True),
    "max_length": (1, True, None, True),
    "torch_empty_cache_steps": (1, True, None, True),
}
MODEL_BOUNDS: dict[str, Bound] = {
    "lora_r": (1, True, None, True),
    "lora_alpha": (0, False, None, False),
    "lora_dropout": (0, True, 1, False),
}


def check_bounds(arguments: object, bounds: dict[str, Bound]) -> None:
    """`UsageError` naming the first option of ``arguments`` outside its ``bounds`` (or not a number)."""
    for name, (lowest, inclusive, below, whole) in bounds.items():
        value = getattr(arguments, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{name} must be a number, got {value!r}")
        if whole and value != int(value):
            raise UsageError(f"{name} must be a whole number, got {value!r}")
        shown = int(lowest) if whole or lowest == int(lowest) else lowest
        if below is not None and not (value < below and (value >= lowest if inclusive else value > lowest)):
            low = "from" if inclusive else "more than"
            raise UsageError(f"{name} must be {low} {shown} and below {below}, got {value!r}")
        if inclusive and not value >= lowest:
            raise UsageError(f"{name} must be {shown} or more, got {value!r}")
        if not inclusive and not value > lowest:
            raise UsageError(f"{name} must be more than {shown}, got {value!r}")


def check_training_bounds(training_args, model_args) -> None:
    """`UsageError` for a numeric option of TRL's SFTConfig or ModelConfig that cannot train (`check_bounds`;
    ``max_steps`` is -1, epochs decide, or 1 or more)."""
    check_bounds(training_args, TRAINING_BOUNDS)
    check_bounds(model_args, MODEL_BOUNDS)
    max_steps = training_args.max_steps
    if max_steps != -1 and not (isinstance(max_steps, int) and max_steps >= 1):  # a YAML 1.5 stays a float
        raise UsageError(f"max_steps must be 1 or more (or -1: num_train_epochs decides), got {max_steps!r}")
    epochs = training_args.num_train_epochs
    if max_steps == -1 and not (math.isfinite(epochs) and epochs > 0):
        raise UsageError(f"num_train_epochs must be more than 0 (or set max_steps), got {epochs!r}")


def make_parser():
    check_versions()  # an old TRL/transformers would fail below on a missing class or config field
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((NERDataArguments, SFTConfig, ModelConfig))


def parse_arguments(argv: list[str] | None = None):
    """(data, training, model) arguments: a YAML ``--config`` plus command-line overrides.

    Every way the arguments can be wrong ends as one `UsageError`/`DataError` line, not argparse's usage
    text or a traceback: an unreadable or unknown YAML (`check_config`), an unknown command-line option, a
    value argparse cannot convert, a setting the dataclasses refuse, a number out of bounds."""
    import warnings

    with warnings.catch_warnings():
        # TRL's SFTConfig defaults gradient_checkpointing (and our configs use that name, which older
        # transformers need); transformers 5.2x renamed it activation_checkpointing and warns on every run.
        warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)
        parser = make_parser()
        parser.error = _raise_usage_error  # argparse would print its whole usage and exit
        argv = list(argv) if argv is not None else sys.argv[1:]
        check_config(argv, parser)
        try:
            *arguments, _, unknown = parser.parse_args_and_config(
                args=argv, return_remaining_strings=True, separate_remaining_strings=True
            )
        except (UsageError, DataError):
            raise
        except ValueError as exc:  # a dataclass's own check of its settings (e.g. bf16 without a GPU)
            raise UsageError(" ".join(str(exc).split())) from None
    options = [arg for arg in unknown if arg.startswith("-")] or unknown
    if options:
        raise UsageError(f"unknown option {', '.join(options)} (`llm-ner train --help` lists them)")
    data_args, training_args, model_args = arguments
    check_training_bounds(training_args, model_args)
    return data_args, training_args, model_args


def _raise_usage_error(message: str):
    raise UsageError(message)


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
