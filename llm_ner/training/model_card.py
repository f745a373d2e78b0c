"""Model cards: the ``README.md`` the Hugging Face Hub shows for a run, merged or GGUF folder.

A card is a YAML header the Hub reads (``base_model``, ``library_name``, ``tags``, ``datasets`` and, when
a prediction file is scored, a ``model-index`` with the span micro-F1 and the F1 of every class, computed
exactly as ``llm-ner evaluate`` computes them), then the prompt, the answer format, the training settings
and how to run the model with llm-ner, llama.cpp and Ollama. ``huggingface-cli upload NAME FOLDER`` of a
folder holding its card is the whole publishing step.

`write_model_card` is called where llm-ner writes a model folder (the end of training, `llm-ner merge`,
`llm-ner export-model`); `llm-ner model-card` writes or refreshes one by hand (e.g. with scores).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..data import write_text_atomic
from ..errors import UsageError
from ..options import CliOptions, option
from .run_dir import ADAPTER_CONFIG, RUN_RECORD, TRAIN_CONFIG, RunRecord

CARD = "README.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, not a local path

# Training settings worth a line of the card (keys of train_config.yaml's sections).
_TRAINING_KEYS = {
    "model": ("model_name_or_path", "dtype", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "load_in_4bit"),
    "training": (
        "num_train_epochs",
        "max_steps",
        "learning_rate",
        "lr_scheduler_type",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "bf16",
        "seed",
    ),
    "data": ("train_file", "prompt", "answer_format", "max_train_samples"),
}


@dataclass
class CardOptions(CliOptions):
    """What a model card says beyond the run's own files: scores, names and the Hub's fields."""

    gold: str | None = option(None, metavar="FILE", help="gold file to score --pred against (CLUENER or BIO)")
    pred: str | None = option(
        None,
        metavar="FILE",
        help="predictions of this model (`llm-ner extract`); with --gold their span micro-F1 and per-class F1 "
        "go into the card's model-index, as `llm-ner evaluate` computes them",
    )
    eval_name: str | None = option(
        None, metavar="TEXT", help='what was scored, shown on the Hub (default: "GOLD_FILE_NAME, N sentences")'
    )
    base_model_id: str | None = option(
        None,
        metavar="ORG/NAME",
        help="the Hub id of the base model for the card's base_model (default: the run's base model when it is a "
        "Hub id, else the name its config.json records)",
    )
    dataset: list[str] = option(
        default_factory=list,
        action="append",
        metavar="ID",
        help="a dataset id for the card's datasets (repeatable; default: cluener2020 for the cluener prompts)",
    )
    model_name: str | None = option(None, metavar="NAME", help="the model's name in the card (default: the folder's)")

    def __post_init__(self) -> None:
        if bool(self.gold) != bool(self.pred):
            raise UsageError("--gold and --pred go together: the card's F1 is --pred scored against --gold")


def evaluation(gold: str | Path, pred: str | Path) -> dict:
    """The scores of ``pred`` against ``gold``: `llm-ner evaluate`'s own (its JSON)."""
    from ..report.evaluate import score_files
    from ..report.options import EvaluateOptions

    return score_files(EvaluateOptions(gold=str(gold), pred=str(pred)))


def _base_model_id(record: RunRecord, explicit: str | None) -> str | None:
    """A Hub id for ``base_model``: given, the record's when it is one, else what the base's config.json
    names (a local copy of a Hub model keeps its ``_name_or_path`` there)."""
    if explicit:
        return explicit
    base = record.base_model
    if base and HUB_ID.match(base):
        return base
    if base and (Path(base).expanduser() / "config.json").is_file():
        try:
            named = json.loads((Path(base).expanduser() / "config.json").read_text(encoding="utf-8")).get(
                "_name_or_path"
            )
        except (OSError, ValueError):
            named = None
        if isinstance(named, str) and HUB_ID.match(named):
            return named
    return base


def _kind(directory: Path) -> str:
    if any(directory.glob("*.gguf")):
        return "gguf"
    if (directory / ADAPTER_CONFIG).is_file():
        return "adapter"
    return "model"


def card_header(directory: Path, record: RunRecord, options: CardOptions, scores: dict | None) -> dict:
    """The YAML header the Hub reads."""
    kind = _kind(directory)
    prompt_name = record.prompt_name or ""
    datasets = list(options.dataset) or (["cluener2020"] if prompt_name.startswith("cluener") else [])
    tags = ["llm-ner", "ner", "named-entity-recognition", "chinese", f"answer-format-{record.answer_format}"]
    tags += {"adapter": ["lora", "peft"], "gguf": ["gguf", "llama.cpp", "ollama"], "model": ["merged-lora"]}[kind]
    header: dict = {
        "base_model": _base_model_id(record, options.base_model_id),
        "library_name": {"adapter": "peft", "gguf": "gguf", "model": "transformers"}[kind],
        "pipeline_tag": "text-generation",
        "language": ["zh"],
        "tags": tags,
        "datasets": datasets,
    }
    if scores is not None:
        span = scores["span"]
        metrics = [
            {"type": "f1", "name": "span micro-F1", "value": span["micro avg"]["f1-score"]},
            {"type": "precision", "name": "span micro precision", "value": span["micro avg"]["precision"]},
            {"type": "recall", "name": "span micro recall", "value": span["micro avg"]["recall"]},
            {"type": "f1", "name": "span macro-F1", "value": span["macro avg"]["f1-score"]},
        ]
        metrics += [
            {"type": "f1", "name": f"span F1 {label}", "value": values["f1-score"]}
            for label, values in span["per_class"].items()
        ]
        header["model-index"] = [
            {
                "name": options.model_name or directory.resolve().name,
                "results": [
                    {
                        "task": {"type": "token-classification", "name": "Named entity recognition"},
                        "dataset": {
                            "name": options.eval_name or f"{Path(options.gold).name}, {scores['sentences']} sentences",
                            "type": datasets[0] if datasets else Path(options.gold).stem,
                            "split": Path(options.gold).stem,
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return header


_ANSWER_SHAPES = {
    "mentions": '`[{"text":"叶老桂","label":"name"}, ...]`, the mentions in reading order; `[]` when there is none',
    "grouped": '`{"name":["叶老桂"], ...}`, the strings of each type; `{}` when there is none',
}


def _scored_name(header: dict) -> str:
    return header["model-index"][0]["results"][0]["dataset"]["name"]


def _training_lines(directory: Path) -> list[str]:
    path = directory / TRAIN_CONFIG
    if not path.is_file():
        return []
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    lines = []
    for section, keys in _TRAINING_KEYS.items():
        values = config.get(section) or {}
        for key in keys:
            if key in values and values[key] not in (None, "", -1):
                lines.append(f"- `{key}`: `{values[key]}`")
    return lines


def _usage(directory: Path, record: RunRecord, name: str) -> str:
    kind = _kind(directory)
    ggufs = sorted(p.name for p in directory.glob("*.gguf"))
    if kind == "gguf":
        first = ggufs[0] if ggufs else "MODEL.gguf"
        modelfile = directory / "Modelfile"
        if modelfile.is_file():  # the type the Modelfile uses, the one export-model was asked for first
            named = re.search(r"^FROM \./(\S+\.gguf)$", modelfile.read_text(encoding="utf-8"), re.M)
            first = named.group(1) if named else first
        return f"""### llama.cpp (llama-cpp-python's OpenAI-compatible server) and llm-ner

```bash
pip install "llm-ner[gguf]"
python -m llama_cpp.server --model {first} --model_alias {name} --host 127.0.0.1 --port 8000 --n_ctx 4096
llm-ner extract --backend openai --api-dialect llama-cpp-python --base-url http://127.0.0.1:8000/v1 \\
    --served-model {name} --model . --input sentences.txt --output pred.json   # this folder: prompt and format
```

### Ollama

```bash
ollama create {name} -f Modelfile
ollama run {name} "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。"
```

The Modelfile holds the training prompt: send the sentence alone; the answer is the JSON of the
answer format above. Files: {", ".join(f"`{g}`" for g in ggufs) or "none yet"}."""
    source = "--adapter ." if kind == "adapter" else "--model ."
    return f"""### llm-ner

```bash
pip install llm-ner
llm-ner extract {source} --input sentences.txt --output pred.json   # the prompt and format come from this folder
llm-ner export-model {source} --out {name}-gguf --gguf q8_0            # GGUF + Ollama Modelfile for llama.cpp / Ollama
```"""


def render_card(directory: str | Path, options: CardOptions | None = None, scores: dict | None = None) -> str:
    """The card of a model folder that holds a run record (``llm_ner.json``)."""
    directory = Path(directory)
    options = options or CardOptions()
    record = RunRecord.load(directory)
    prompt = record.load_prompt()
    name = options.model_name or directory.resolve().name
    header = card_header(directory, record, options, scores)
    example = prompt.messages("浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。", record.answer_format)
    labels = ", ".join(f"`{t.key}` ({t.name})" for t in prompt.schema.types) if prompt.schema else "read from the data"
    body = [
        f"# {name}",
        "",
        f"Chinese named-entity recognition: a fine-tune of `{record.base_model}` made with "
        "llm-ner (chat instructions, LoRA with TRL). It answers every sentence with "
        f"the JSON of the `{record.answer_format}` answer format; llm-ner maps the answer back to exact "
        "character spans.",
        "",
        f"- Labels: {labels}",
        f"- Prompt: `{record.prompt_name}` (`prompt.yaml` in this folder is the full copy)",
        f"- Answer format: `{record.answer_format}`",
    ]
    if record.merged_from:
        body.append(f"- Made from: `{record.merged_from}`")
    if scores is not None:
        span = scores["span"]
        body += [
            "",
            "## Evaluation",
            "",
            f"`llm-ner evaluate` of this model's predictions on {_scored_name(header)} "
            "(exact span, start, end and type):",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        rows = [*span["per_class"].items(), ("micro avg", span["micro avg"]), ("macro avg", span["macro avg"])]
        body += [
            f"| {label} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1-score']:.4f} | {v['support']} |"
            for label, v in rows
        ]
    body += [
        "",
        "## Prompt",
        "",
        "The conversation of one sentence (system, then user), exactly as at training time:",
        "",
        "```json",
        json.dumps(example, ensure_ascii=False, indent=1),
        "```",
        "",
        "The answer: " + _ANSWER_SHAPES.get(record.answer_format, "JSON") + ".",
    ]
    training = _training_lines(directory)
    if training:
        body += ["", "## Training", "", *training]
    body += ["", "## How to run it", "", _usage(directory, record, name)]
    body += [
        "",
        "## Publishing",
        "",
        f"`huggingface-cli upload ORG/{name} .` from this folder uploads the weights and this card.",
        "",
    ]
    front = yaml.safe_dump(header, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n" + "\n".join(body) + "\n"


def read_card_header(path: str | Path) -> dict:
    """The YAML header of a card (what the Hub reads); `ValueError` when it has none."""
    text = Path(path).read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise ValueError(f"{path}: no YAML header between --- lines")
    header = yaml.safe_load(match.group(1))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the YAML header is not a mapping")
    return header


def write_model_card(directory: str | Path, options: CardOptions | None = None) -> Path | None:
    """Write ``README.md`` into a model folder that holds a run record (replacing the template card that
    peft/transformers write there); None, writing nothing, for a folder without one. Scores ``options.pred``
    against ``options.gold`` when both are given."""
    directory = Path(directory)
    if not (directory / RUN_RECORD).is_file():
        return None
    options = options or CardOptions()
    scores = evaluation(options.gold, options.pred) if options.gold and options.pred else None
    path = directory / CARD
    write_text_atomic(render_card(directory, options, scores), path)
    return path


def refresh_model_card(directory: str | Path, options: CardOptions) -> Path:
    """`llm-ner model-card`: `write_model_card`, checked first: a folder written by llm-ner, prediction files
    that exist and are not the card itself (`UsageError` otherwise)."""
    from ..data import check_output_path

    if not (Path(directory) / RUN_RECORD).is_file():
        raise UsageError(f"{directory}: no {RUN_RECORD} there (not a folder written by llm-ner)")
    check_scored_files(options)
    check_output_path(Path(directory) / CARD, {"--gold": options.gold, "--pred": options.pred})
    path = write_model_card(directory, options)
    assert path is not None  # the record is there
    return path


def check_scored_files(options: CardOptions) -> None:
    """`UsageError` for a --gold or --pred that is not a file, before anything long runs."""
    for flag, value in (("--gold", options.gold), ("--pred", options.pred)):
        if value and not Path(value).is_file():
            raise UsageError(f"{flag} {value}: no such file")
