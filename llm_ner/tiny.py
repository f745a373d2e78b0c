"""Tiny local Qwen2/Qwen3 models: random weights, a byte-level BPE tokenizer built from the given
texts (every character seen becomes one token), Qwen's special tokens and the real Qwen chat
template shipped in the `trl` package; or random weights of a real shape (`qwen_shapes.json`)
beside a real Qwen tokenizer (`../shared/tokenizers`). The saved directory loads with
``AutoModelForCausalLM/AutoTokenizer.from_pretrained(DIR)`` exactly like a hub model, so tests
and the CPU demo exercise the real loading code without downloading anything.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .generation.tokens import bytes_to_unicode
from .options import CliOptions, non_negative_int, option, positive_int

log = logging.getLogger(__name__)

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 writes these as ordinary (non-special) added tokens so they survive decoding.
QWEN3_THINK_TOKENS = ["<think>", "</think>"]
TEMPLATE_FILES = {"qwen2": "qwen2_5.jinja", "qwen3": "qwen3.jinja"}

# Qwen2's pre-tokenizer pattern (letters runs, single digits, punctuation runs, whitespace).
_PRETOKENIZE = re.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def qwen_chat_template(arch: str) -> str:
    """The real Qwen2.5 / Qwen3 chat template that ships inside the `trl` package."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / TEMPLATE_FILES[arch]
    return path.read_text(encoding="utf-8")


def build_vocab(texts: Iterable[str], max_words: int = 400) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocab and merges: every character of ``texts`` becomes a single token, and
    the ``max_words`` most frequent multi-character ASCII pre-tokens (JSON keys, label names) too.
    """
    byte_char = bytes_to_unicode()
    vocab: dict[str, int] = {byte_char[b]: i for i, b in enumerate(sorted(byte_char))}
    merges: list[tuple[str, str]] = []

    def add_chain(pieces: list[str]) -> None:
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((current, piece))
            current = merged

    char_counts: Counter[str] = Counter()
    word_counts: Counter[str] = Counter()
    for text in texts:
        char_counts.update(text)
        word_counts.update(w for w in _PRETOKENIZE.findall(text) if w.isascii() and len(w) > 1)
    for char, _ in sorted(char_counts.items(), key=lambda item: (-item[1], item[0])):
        encoded = [byte_char[b] for b in char.encode("utf-8")]
        if len(encoded) > 1:
            add_chain(encoded)
    for word, _ in word_counts.most_common(max_words):
        add_chain([byte_char[b] for b in word.encode("utf-8")])
    return vocab, merges


def build_tokenizer(texts: Iterable[str], arch: str = "qwen3"):
    """A Qwen2Tokenizer over `build_vocab`, with Qwen's special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    vocab, merges = build_vocab(texts)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    if arch == "qwen3":
        tokenizer.add_tokens(QWEN3_THINK_TOKENS, special_tokens=False)
    tokenizer.chat_template = qwen_chat_template(arch)
    tokenizer.model_max_length = 32768
    return tokenizer


def build_config(
    arch: str,
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    **extra,
):
    """A Qwen2Config / Qwen3Config of the given (small) shape."""
    from transformers import Qwen2Config, Qwen3Config

    if arch not in TEMPLATE_FILES:
        raise ValueError(f"unknown arch {arch!r} (qwen2 or qwen3)")
    check_attention_shape(hidden_size, num_heads, num_kv_heads, extra.get("head_dim"))
    config_class = Qwen3Config if arch == "qwen3" else Qwen2Config
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
    )
    if arch == "qwen3":
        kwargs["head_dim"] = hidden_size // num_heads
    kwargs.update(extra)
    return config_class(**kwargs)


def check_attention_shape(hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int | None = None) -> None:
    """`ValueError` for attention sizes a model saves with but cannot run (it would fail in its first
    forward pass): query heads in whole groups per key/value head, and an even head size for rotary
    position embeddings. ``head_dim`` None: ``hidden_size / num_heads``, which must then be whole."""
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads} "
            "(each key/value head serves a whole group of query heads)"
        )
    if head_dim is None:
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        head_dim = hidden_size // num_heads
    if head_dim % 2:
        raise ValueError(f"head size {head_dim} is odd; rotary position embeddings need an even head size")


# Files of a hub tokenizer that `--tokenizer DIR` copies next to the random weights.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "vocab.json", "merges.txt")
# Embedding rows of every small Qwen2.5/Qwen3 checkpoint (151 665 / 151 669 tokens, padded).
QWEN_EMBEDDING_ROWS = 151936


def shared_dir() -> Path:
    """``../shared`` beside the checkout: real Qwen tokenizers, `qwen_shapes.json`, CLUENER."""
    return Path(__file__).resolve().parents[2] / "shared"


# The real tokenizer folder in ``shared_dir() / "tokenizers"`` of each model type.
TOKENIZER_FOLDERS = {"qwen2": "qwen2.5", "qwen3": "qwen3"}


def real_tokenizer_dir(name: str = "qwen2.5") -> Path:
    """A real Qwen tokenizer folder in :func:`shared_dir` (``qwen2.5`` or ``qwen3``); may not exist."""
    return shared_dir() / "tokenizers" / name


def read_shape(name: str, shapes_file: str | Path | None = None) -> dict:
    """The architecture of a real model (``Qwen2.5-0.5B-Instruct``) from ``qwen_shapes.json``."""
    import json

    path = Path(shapes_file) if shapes_file else shared_dir() / "qwen_shapes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (pass the shapes file)")
    shapes = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}
    if name not in shapes:
        raise KeyError(f"no shape {name!r} in {path}; known: {', '.join(shapes)}")
    return shapes[name]


def shape_arguments(shape: dict) -> dict:
    """`build_config` keyword arguments from a `qwen_shapes.json` entry."""
    names = {
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "num_key_value_heads": "num_kv_heads",
    }
    skip = {"model_type", "vocab_size"}
    return {names.get(key, key): value for key, value in shape.items() if key not in skip}


def tokenizer_arch(tokenizer) -> str:
    """qwen3 for a tokenizer with Qwen3's thinking tokens, else qwen2."""
    return "qwen3" if "<think>" in tokenizer.get_vocab() else "qwen2"


def embedding_rows(tokenizer) -> int:
    """Embedding rows for a tokenizer: Qwen's 151 936 for the real Qwen vocabularies, else
    ``len(tokenizer)`` rounded up to a multiple of 64 as real checkpoints do."""
    size = len(tokenizer)
    if 151_643 <= size <= QWEN_EMBEDDING_ROWS and "<|im_end|>" in tokenizer.get_vocab():
        return QWEN_EMBEDDING_ROWS
    return (size + 63) // 64 * 64


def build_tiny_model(
    out_dir: str | Path,
    arch: str | None = "qwen3",
    texts: Iterable[str] = (),
    seed: int = 0,
    tokenizer_dir: str | Path | None = None,
    vocab_size: int | None = None,
    replace: bool = False,
    **shape,
) -> Path:
    """Save a random-weight Qwen model and its tokenizer to ``out_dir``; returns the path.

    With ``tokenizer_dir`` (a hub-format tokenizer such as ``../shared/tokenizers/qwen2.5``) its
    files are copied unchanged and the embedding is sized to its vocabulary (``vocab_size``
    overrides); ``arch=None`` then follows the tokenizer. Otherwise a tokenizer is built from
    ``texts`` (every character one token). ``shape``: `build_config` arguments. ``replace``: empty ``out_dir``
    first (`llm_ner.data.clear_output_folder`), after the sizes are checked, so a bad size keeps the old model.
    """
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out_dir = Path(out_dir)
    if tokenizer_dir is not None:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        arch = arch or tokenizer_arch(tokenizer)
        vocab_size = vocab_size or embedding_rows(tokenizer)
    else:
        arch = arch or "qwen3"
        tokenizer = build_tokenizer(list(texts), arch)
        # Round the vocab up like real checkpoints do (152k rows for ~151.6k tokens).
        vocab_size = vocab_size or embedding_rows(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = build_config(arch, vocab_size, **shape)
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config.bos_token_id, config.eos_token_id, config.pad_token_id = ids[0], ids[1], ids[0]
    import torch

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(eos_token_id=[ids[1], ids[0]], pad_token_id=ids[0])
    if replace:
        from .data import clear_output_folder

        clear_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    if tokenizer_dir is None:
        tokenizer.save_pretrained(out_dir)
    else:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copyfile(Path(tokenizer_dir) / name, out_dir / name)
    return out_dir


def default_texts(limit: int | None = None) -> list[str]:
    """Texts for the tokenizer: CLUENER train/dev sentences (the shipped sample without CLUENER) plus
    every shipped prompt and the JSON answer vocabulary, so prompts and answers tokenize without byte
    fallback."""
    from .data import read_cluener
    from .data_sources import available_data_dir
    from .prompting import PROMPT_DIRS

    folder = available_data_dir()
    texts: list[str] = []
    for name in ("train.json", "dev.json"):
        path = folder / name
        if path.is_file():
            examples, _ = read_cluener(path)
            texts.extend(ex.text for ex in examples[:limit])
    for folder in PROMPT_DIRS:
        if folder.is_dir():
            texts.extend(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.yaml")))
    texts.append('[{"text":"","label":""}]{"":[""]}<think></think>\n')
    return texts


def build_tiny_bert(
    out_dir: str | Path, texts: Iterable[str] = (), hidden_size: int = 64, num_layers: int = 2, seed: int = 0
) -> Path:
    """A random-weight BERT with a character vocabulary from ``texts`` (for baseline tests)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = sorted(
        {c for text in texts for c in text if not c.isspace()} | set("_0123456789abcdefghijklmnopqrstuvwxyz")
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out_dir)
    return out_dir


@dataclass(kw_only=True)
class TinyModelOptions(CliOptions):
    """`llm-ner tiny-model`: the architecture, its tokenizer and its sizes."""

    arch: str | None = option(None, choices=("qwen2", "qwen3"), help="default: from --shape or --tokenizer, else qwen3")
    out: str = option(required=True, help="output directory")
    texts: list[str] | None = option(
        None,
        nargs="+",
        help="texts for the tokenizer: files of plain lines or CLUENER files "
        "(default: CLUENER train/dev from LLM_NER_DATA plus the shipped prompts)",
    )
    tokenizer: str | None = option(None, metavar="DIR", help="use this hub-format tokenizer (copied unchanged)")
    shape: str | None = option(None, metavar="NAME", help="a real architecture, e.g. Qwen2.5-0.5B-Instruct")
    shapes_file: str | None = option(
        None, metavar="FILE", help="default: ../shared/qwen_shapes.json beside the checkout"
    )
    hidden_size: int | None = option(None, type=positive_int, help="default 128 (or the shape's)")
    num_layers: int | None = option(None, type=positive_int, help="default 2 (or the shape's)")
    num_heads: int | None = option(None, type=positive_int, help="default 4 (or the shape's)")
    num_kv_heads: int | None = option(None, type=positive_int, help="default 2 (or the shape's)")
    intermediate_size: int | None = option(None, type=positive_int, help="default 3 x hidden (or the shape's)")
    vocab_size: int | None = option(None, type=positive_int, help="embedding rows (default: from the tokenizer/shape)")
    seed: int = option(0, type=non_negative_int)
    force: bool = option(False, help="replace the model an existing --out folder holds (the folder is emptied first)")

    def __post_init__(self) -> None:
        from .errors import UsageError

        if self.tokenizer and self.texts:
            raise UsageError("--texts builds a tokenizer; --tokenizer uses an existing one: give one of them")


def _shape_of(options: TinyModelOptions) -> tuple[str | None, dict, dict | None]:
    """(architecture, build_config sizes, the real shape read from --shape or None): explicit sizes win."""
    from .errors import UsageError

    shape: dict = {}
    arch, real = options.arch, None
    if options.shape:
        try:
            real = read_shape(options.shape, options.shapes_file)
        except (FileNotFoundError, KeyError) as error:
            raise UsageError(f"--shape: {error.args[0]}") from None
        if arch and arch != real["model_type"]:
            raise UsageError(f"--arch {arch} contradicts --shape {options.shape} ({real['model_type']})")
        arch = real["model_type"]
        shape = shape_arguments(real)
    sizes = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")
    for name in sizes:  # explicit sizes override the shape (else build_config's defaults)
        if getattr(options, name) is not None:
            shape[name] = getattr(options, name)
    if options.hidden_size is not None or options.num_heads is not None:
        shape.pop("head_dim", None)  # follows the new width
    return arch, shape, real


def _tokenizer_texts(options: TinyModelOptions) -> list[str]:
    """The texts the tokenizer is built from: the --texts files (plain lines or CLUENER) and the prompts' words."""
    from .data import guess_format, load_examples, read_lines
    from .errors import UsageError

    if options.tokenizer:
        if not (Path(options.tokenizer) / "tokenizer_config.json").is_file():
            raise UsageError(f"--tokenizer {options.tokenizer}: no tokenizer_config.json there")
        return []
    if not options.texts:
        return default_texts()
    texts = []
    for path in options.texts:
        if guess_format(path) == "cluener":
            texts += [ex.text for ex in load_examples(path, "cluener", lenient=True)[0]]
        else:
            texts += [line for _, line in read_lines(Path(path))]  # not UTF-8: FILE:LINE, not a traceback
    return texts + default_texts(limit=0)  # prompts and JSON vocabulary


def tiny_model(options: TinyModelOptions) -> Path:
    """`llm-ner tiny-model`: build the model of ``options`` (checked first), say what was saved."""
    from .data import check_output_folder, check_output_path
    from .errors import UsageError

    inputs = {"--tokenizer": options.tokenizer, "--shapes-file": options.shapes_file}
    inputs.update({f"--texts {path}": path for path in options.texts or ()})
    check_output_path(options.out, inputs, "--out", writes_folder=True)
    replace = check_output_folder(options.out, "--out", options.force)
    arch, shape, real = _shape_of(options)
    texts = _tokenizer_texts(options)
    vocab_size = options.vocab_size or (real["vocab_size"] if real else None)
    try:
        out = build_tiny_model(
            options.out, arch, texts, seed=options.seed, tokenizer_dir=options.tokenizer, vocab_size=vocab_size,
            replace=replace, **shape,
        )  # fmt: skip
    except ValueError as error:
        raise UsageError(str(error)) from None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    log.info(
        f"saved a random-weight {config.model_type} model (hidden {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocab {config.vocab_size}) to {out}"
    )
    return out
