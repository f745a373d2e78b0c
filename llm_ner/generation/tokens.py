"""Token ids of prompts and answers: the chat template as training rendered it (Qwen3 thinking off), the
end-of-turn tokens, the answer-length bound, and which characters of an answer each token spelled."""

from __future__ import annotations

from collections.abc import Sequence

# Keeps Qwen3's template from thinking when a caller does not say enable_thinking=False: the
# saved template then renders exactly the tokens the model was trained on.
THINKING_OFF_PREFIX = "{%- if enable_thinking is not defined %}{%- set enable_thinking = false %}{%- endif %}\n"


def disable_thinking_by_default(tokenizer) -> None:
    """Make a thinking-capable chat template default to ``enable_thinking=False``."""
    template = tokenizer.chat_template
    if isinstance(template, str) and "enable_thinking" in template and not template.startswith(THINKING_OFF_PREFIX):
        tokenizer.chat_template = THINKING_OFF_PREFIX + template


def load_tokenizer(model: str, adapter: str | None = None):
    """The tokenizer a model is loaded with (`loading.load_model`): the adapter's own if it saved one, else the
    model's; thinking off by default."""
    from pathlib import Path

    from transformers import AutoTokenizer

    source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model
    tokenizer = AutoTokenizer.from_pretrained(source)
    disable_thinking_by_default(tokenizer)
    return tokenizer


def chat_prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids the model sees before its answer (thinking disabled)."""
    ids = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=True, enable_thinking=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """End-of-turn ids: ``<|im_end|>`` and ``<|endoftext|>`` plus the model's own eos ids."""
    ids: list[int] = []
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            ids.append(token_id)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids.extend(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return list(dict.fromkeys(ids))


def default_max_new_tokens(text_length: int) -> int:
    """An answer-length bound from the sentence length (in characters).

    A mentions answer repeats entity strings (at most the text) plus about 16 tokens of JSON
    per entity; 3 tokens per character plus a margin covers dense CLUENER sentences.
    """
    return min(1024, 24 + 3 * text_length)


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 / Qwen byte-level alphabet: every byte as a printable character (the characters of
    byte-level BPE tokens)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def unicode_to_bytes() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`: a byte-level token's characters back to its bytes."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_char_ranges(tokenizer, ids: Sequence[int], answer: str) -> list[tuple[int, int]] | None:
    """The characters of ``answer`` each token produced (a token ending inside a multi-byte
    character covers that character); None when the tokens' bytes do not spell the answer."""
    import codecs

    byte_of = unicode_to_bytes()
    pieces = []
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        try:
            pieces.append(bytes(byte_of[ch] for ch in token))
        except (KeyError, TypeError):  # added or special tokens: their decoded text
            pieces.append(tokenizer.decode([token_id], skip_special_tokens=True).encode("utf-8"))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # as the tokenizer decodes
    ranges, parts, emitted = [], [], 0
    for piece in pieces:
        start = emitted  # a character begun by an earlier token is also this token's
        text = decoder.decode(piece)
        parts.append(text)
        emitted += len(text)
        ranges.append((start, emitted + (1 if decoder.getstate()[0] else 0)))
    parts.append(decoder.decode(b"", final=True))
    if "".join(parts) != answer:
        return None
    return ranges
