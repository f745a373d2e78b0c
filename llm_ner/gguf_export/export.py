"""`llm-ner export-model`: a fine-tuned model as GGUF files for llama.cpp and Ollama.

`export_model` merges a LoRA adapter into its base (or takes a merged model folder), converts it with
llama.cpp's ``convert_hf_to_gguf.py`` once per requested type (f16, bf16, q8_0, f32), and writes beside
the GGUF files what makes the served model answer exactly as it was trained:

- in every GGUF, next to the Qwen chat template the converter stores (``tokenizer.chat_template``),
  llm-ner's own metadata ``llm_ner.*``: the run record, the prompt file, the answer format, the labels,
  the rendered system prompt and the answer's JSON schema;
- the run's ``llm_ner.json`` and ``prompt.yaml`` (the sidecar `llm-ner extract --model FOLDER` reads);
- an Ollama ``Modelfile`` (`modelfile`) and the model card ``README.md`` (`training.model_card`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data import atomic_path, check_output_path, write_text_atomic
from ..errors import UsageError
from ..options import CliOptions, option, positive_int
from ..prompting import PromptTemplate
from ..training.model_card import CardOptions, check_scored_files, write_model_card
from ..training.run_dir import RUN_RECORD, RunRecord, adapter_base_model
from .converter import (
    CONVERTER,
    CONVERTER_ENV,
    LLAMA_CPP_PYTHON_VERSION,
    add_metadata,
    convert_to_gguf,
    fetch_converter,
    find_converter,
    require_gguf,
)
from .modelfile import MODELFILE, ollama_modelfile

log = logging.getLogger(__name__)

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
METADATA_PREFIX = "llm_ner."


def gguf_types(value: str) -> tuple[str, ...]:
    """``f16,q8_0`` -> ("f16", "q8_0") (an argparse type)."""
    types = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    unknown = [t for t in types if t not in GGUF_TYPES]
    if not types or unknown:
        raise argparse.ArgumentTypeError(
            f"GGUF types are a comma-separated list of {', '.join(GGUF_TYPES)}; got {value!r}"
        )
    return types


@dataclass
class ExportOptions(CliOptions):
    """`llm-ner export-model`: what to convert and where the GGUF folder goes."""

    out: str = option(required=True, help="the GGUF folder to write (GGUF files, Modelfile, llm_ner.json, README.md)")
    adapter: str | None = option(None, help="LoRA adapter directory (a training output): merged into its base first")
    model: str | None = option(
        None, help="a merged model folder (`llm-ner merge`) that holds llm_ner.json, instead of --adapter"
    )
    gguf: tuple[str, ...] = option(
        ("q8_0",),
        type=gguf_types,
        metavar="TYPES",
        help="comma-separated GGUF types, the Modelfile uses the first: f16 (lossless from bf16 weights), bf16, "
        "q8_0 (half the size of f16), f32 (default: q8_0)",
    )
    name: str | None = option(
        None, help="the model's name: GGUF file names, the Ollama model, the served model (default: --out's name)"
    )
    dtype: str = option(
        "auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="dtype the adapter is merged in (auto: the base model's own, as `llm-ner extract` loads it)",
    )
    converter: str | None = option(
        None,
        metavar="PATH",
        help=f"llama.cpp's {CONVERTER} or a llama.cpp checkout (default: ${CONVERTER_ENV}, else the copy "
        "`--fetch-converter` keeps in ~/.cache/llm-ner)",
    )
    fetch_converter: bool = option(
        False,
        help=f"first download llama.cpp's converter: the llama-cpp-python sdist from PyPI (the installed version, "
        f"else {LLAMA_CPP_PYTHON_VERSION}), whose vendor/llama.cpp is kept in ~/.cache/llm-ner",
    )
    num_ctx: int = option(
        4096, type=positive_int, help="the Modelfile's num_ctx: Ollama's context length (default: %(default)s)"
    )

    def __post_init__(self) -> None:
        if bool(self.adapter) == bool(self.model):
            raise UsageError("give one of --adapter (a training output) and --model (a merged model folder)")

    @property
    def model_name(self) -> str:
        return self.name or Path(self.out).resolve().name


def merge_dtype(base_model: str, dtype: str) -> str:
    """``auto``: the base model's own dtype (its config.json), as `llm-ner extract` loads it."""
    if dtype != "auto":
        return dtype
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_model)
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    name = str(saved).replace("torch.", "") if saved is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def run_metadata(record: RunRecord, prompt: PromptTemplate) -> dict[str, str | list[str]]:
    """The ``llm_ner.*`` GGUF metadata of a run: what serving it needs besides the chat template."""
    from ..answer_format import get_format

    system = prompt.messages("", record.answer_format)[0]
    schema = get_format(record.answer_format).json_schema(prompt.schema) if prompt.schema else None
    return {
        METADATA_PREFIX + "run_record": json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True),
        METADATA_PREFIX + "prompt_yaml": prompt.to_yaml(),
        METADATA_PREFIX + "answer_format": record.answer_format,
        METADATA_PREFIX + "labels": list(prompt.schema.keys) if prompt.schema else [],
        METADATA_PREFIX + "system_prompt": system["content"] if system["role"] == "system" else "",
        METADATA_PREFIX + "response_schema": json.dumps(schema, ensure_ascii=False) if schema else "",
    }


def check_export(options: ExportOptions, card_options: CardOptions) -> Path | None:
    """Every check that can fail before minutes of merging and converting: the extra, the source folder and
    its run record, the card's prediction files, the output path, the converter (`UsageError`). Returns the
    converter when it is already here (None with ``--fetch-converter``, fetched later)."""
    require_gguf()  # first: the one-line error names the extra
    source = options.adapter or options.model
    base = adapter_base_model(options.adapter) if options.adapter else None
    if options.model and not (Path(options.model) / "config.json").is_file():
        raise UsageError(f"--model {options.model}: no config.json there (a merged model folder; for a run: --adapter)")
    if RunRecord.find(source) is None:
        raise UsageError(
            f"{source} has no {RUN_RECORD}: not a model trained or merged by llm-ner, so its prompt and answer "
            "format are unknown"
        )
    check_scored_files(card_options)
    inputs = {"--adapter": options.adapter, "--model": options.model, "base model": base}
    check_output_path(options.out, {**inputs, "--gold": card_options.gold, "--pred": card_options.pred}, "--out", True)
    return None if options.fetch_converter else find_converter(options.converter)


def export_model(options: ExportOptions, card_options: CardOptions | None = None) -> list[Path]:
    """`llm-ner export-model`: merge (with ``adapter``), convert to every type of ``options.gguf`` with
    llama.cpp's converter, then write the run record, the Modelfile and the model card into ``options.out``.
    Returns the GGUF files."""
    card_options = card_options or CardOptions()
    converter = check_export(options, card_options) or fetch_converter()
    from transformers import AutoTokenizer

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    name = options.model_name
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=out) as tmp:
        if options.adapter:
            from ..training.merge import merge_adapter

            dtype = merge_dtype(adapter_base_model(options.adapter), options.dtype)
            log.info(f"merging {options.adapter} into its base ({dtype})")
            model_dir = merge_adapter(options.adapter, str(Path(tmp) / "merged"), dtype)
            # llama.cpp's converter reads the card's header into general.base_model.* and general.tags
            write_model_card(model_dir, dataclasses.replace(card_options, gold=None, pred=None))
        else:
            model_dir = Path(options.model)
        # a checkpoint of a run holds no record of its own: its run's (the parent folder's) tells the prompt
        record = RunRecord.find(model_dir) or RunRecord.find(options.adapter or options.model)
        prompt = record.load_prompt()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        metadata = run_metadata(record, prompt)
        for outtype in options.gguf:
            target = out / f"{name}-{outtype}.gguf"
            converted = Path(tmp) / target.name
            log.info(f"converting with {converter} ({outtype})")
            convert_to_gguf(model_dir, converted, outtype, converter, out / f"{target.name}.convert.log")
            with atomic_path(target) as partial:  # never a half-written GGUF under the final name
                add_metadata(converted, partial, metadata)
            converted.unlink()
            written.append(target)
            log.info(f"wrote {target} ({target.stat().st_size / 2**20:.0f} MiB)")
        others = [p.name for p in written[1:]]
        modelfile_text = ollama_modelfile(
            written[0].name, tokenizer, prompt, record.answer_format, options.num_ctx, others
        )
        record.copy_to(
            out,
            merged_from=str(options.adapter or record.merged_from or options.model),
            peft=False,
            load_in_4bit=False,
            extra={**record.extra, "gguf": {p.name: t for p, t in zip(written, options.gguf)}},
        )
    write_text_atomic(modelfile_text, out / MODELFILE)
    write_model_card(out, dataclasses.replace(card_options, model_name=card_options.model_name or name))
    return written
