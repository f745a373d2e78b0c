"""Constrained decoding of `mentions` answers: every answer parses, every entity string is a
substring of the input sentence, every label is in the schema.

The answer grammar is the training format, compact JSON:

    []    or    [{"text":"ENTITY","label":"LABEL"},{"text":...}]    then end-of-turn

A small automaton reads the answer byte by byte (UTF-8; byte-level BPE tokenizers such as
Qwen's map every token to bytes). At each step the allowed tokens are found by walking a trie
of the vocabulary's token bytes together with the automaton, so only the few branches the
sentence allows are visited. Why not a grammar library (xgrammar, outlines,
lm-format-enforcer): the substring rule makes every sentence a new grammar, and those libraries
compile a grammar against the whole vocabulary up front, which costs more per sentence than this
walk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

_OPEN_ITEM = b'{"text":"'
_MIDDLE = b'","label":"'
_CLOSE_ITEM = b'"}'

# Automaton states are tuples: (phase, ...). Phases:
#   "start"          before "["
#   "lit", bytes, i, then     inside a fixed literal, i bytes of it read, `then` is the next state
#   "first"          after "[": "]" or an item
#   "entity", positions, n    inside the entity: candidate end positions in the escaped text, n bytes read
#   "label", prefix  inside the label
#   "after"          after an item: "," or "]"
#   "end"            after "]": only the end-of-turn token


class _Sentence:
    """The JSON-escaped sentence as bytes, with the positions where characters start."""

    def __init__(self, text: str):
        pieces = [json.dumps(ch, ensure_ascii=False)[1:-1].encode("utf-8") for ch in text]
        self.escaped = b"".join(pieces)
        boundaries, position = [0], 0
        for piece in pieces:
            position += len(piece)
            boundaries.append(position)
        self.boundaries = frozenset(boundaries)
        self.starts = frozenset(boundaries[:-1])
        self.max_items = max(1, len(text))


class _Automaton:
    def __init__(self, sentence: _Sentence, labels: Sequence[bytes]):
        self.sentence = sentence
        self.labels = labels

    def next_bytes(self, state: tuple) -> set[int]:
        """The bytes `step` can accept in ``state`` (a superset is fine; `step` decides)."""
        phase = state[0]
        if phase == "start":
            return {ord("[")}
        if phase == "lit":
            return {state[1][state[2]]}
        if phase == "first":
            return {ord("]"), _OPEN_ITEM[0]}
        if phase == "entity":
            escaped = self.sentence.escaped
            found = {escaped[p] for p in state[1] if p < len(escaped)}
            return found | {ord('"')}
        if phase == "label":
            prefix = state[1]
            return {lab[len(prefix)] for lab in self.labels if lab.startswith(prefix) and len(lab) > len(prefix)} | {
                ord('"')
            }
        if phase == "after":
            return {ord(","), ord("]")}
        return set()

    def step(self, state: tuple, byte: int) -> tuple | None:
        """The state after one byte, or None if the byte is not allowed."""
        phase = state[0]
        if phase == "start":
            return ("first",) if byte == ord("[") else None
        if phase == "lit":
            literal, index, then = state[1], state[2], state[3]
            if literal[index] != byte:
                return None
            return then if index + 1 == len(literal) else ("lit", literal, index + 1, then)
        if phase == "first":
            if byte == ord("]"):
                return ("end",)
            return self.step(("lit", _OPEN_ITEM, 0, ("entity", self.sentence.starts, 0, 1)), byte)
        if phase == "entity":
            positions, read, items = state[1], state[2], state[3]
            if byte == ord('"'):
                closed = [p for p in positions if p in self.sentence.boundaries]
                if read == 0 or not closed:
                    return None
                return ("lit", _MIDDLE, 1, ("label", b"", items))
            escaped = self.sentence.escaped
            moved = frozenset(p + 1 for p in positions if p < len(escaped) and escaped[p] == byte)
            return ("entity", moved, read + 1, items) if moved else None
        if phase == "label":
            prefix, items = state[1], state[2]
            if byte == ord('"'):
                return ("lit", _CLOSE_ITEM, 1, ("after", items)) if prefix in self.labels else None
            extended = prefix + bytes([byte])
            return ("label", extended, items) if any(lab.startswith(extended) for lab in self.labels) else None
        if phase == "after":
            items = state[1]
            if byte == ord("]"):
                return ("end",)
            if byte == ord(",") and items < self.sentence.max_items:
                return ("lit", _OPEN_ITEM, 0, ("entity", self.sentence.starts, 0, items + 1))
            return None
        return None  # "end": no more bytes


def _byte_decoder() -> dict[str, int]:
    from .tiny import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


class TokenTrie:
    """The vocabulary's regular tokens as a byte trie: node = {byte: child, -1: [token ids]}."""

    def __init__(self, tokenizer):
        decoder = _byte_decoder()
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self.root: dict = {}
        self.token_bytes: dict[int, bytes] = {}
        vocab = tokenizer.get_vocab()
        for token, token_id in vocab.items():
            if token_id in special:
                continue
            try:
                data = bytes(decoder[ch] for ch in token)
            except KeyError:
                continue  # not a byte-level token (added words); never needed for JSON answers
            node = self.root
            for byte in data:
                node = node.setdefault(byte, {})
            node.setdefault(-1, []).append(token_id)
            self.token_bytes[token_id] = data
        self.vocab_size = max(vocab.values()) + 1
        if not self.root:
            raise ValueError("constrained decoding needs a byte-level BPE tokenizer (like Qwen's)")


class MentionsConstraint:
    """A `transformers` logits processor for one batch of sentences (see module docstring)."""

    def __init__(
        self, trie: TokenTrie, texts: Sequence[str], labels: Sequence[str], prompt_width: int, stop_ids: Sequence[int]
    ):
        label_bytes = [json.dumps(label, ensure_ascii=False)[1:-1].encode("utf-8") for label in labels]
        self.trie = trie
        self.automata = [_Automaton(_Sentence(text), label_bytes) for text in texts]
        self.states: list[tuple | None] = [("start",)] * len(texts)
        self.prompt_width = prompt_width
        self.stop_ids = list(stop_ids)
        self.seen = 0

    @classmethod
    def for_tokenizer(cls, tokenizer, labels: Sequence[str], stop_ids: Sequence[int] | None = None):
        """A factory ``(texts, prompt_width) -> MentionsConstraint`` with the trie built once."""
        from .generation import stop_token_ids

        trie = TokenTrie(tokenizer)
        stops = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer)

        def factory(texts: Sequence[str], prompt_width: int) -> MentionsConstraint:
            return cls(trie, texts, labels, prompt_width, stops)

        return factory

    def _advance(self, row: int, token_id: int) -> None:
        state = self.states[row]
        if state is None or state == ("done",):
            return
        if token_id in self.stop_ids:
            self.states[row] = ("done",)
            return
        for byte in self.trie.token_bytes.get(token_id, b"\xff"):  # unknown tokens fail the automaton
            state = self.automata[row].step(state, byte)
            if state is None:
                break
        self.states[row] = state

    def allowed(self, row: int) -> list[int]:
        state = self.states[row]
        if state is None or state == ("done",) or state == ("end",):
            return self.stop_ids
        automaton = self.automata[row]
        found: list[int] = []
        stack = [(self.trie.root, state)]
        while stack:
            node, current = stack.pop()
            for byte in automaton.next_bytes(current):
                child = node.get(byte)
                if child is None:
                    continue
                following = automaton.step(current, byte)
                if following is None:
                    continue
                if -1 in child:
                    found.extend(child[-1])
                if len(child) > (1 if -1 in child else 0):
                    stack.append((child, following))
        return found

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_width
        for step in range(self.seen, generated):
            for row in range(input_ids.shape[0]):
                self._advance(row, int(input_ids[row, self.prompt_width + step]))
        self.seen = generated
        mask = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            allowed = self.allowed(row)
            index = torch.tensor(allowed, dtype=torch.long, device=scores.device)
            mask[row, index] = 0.0
        return scores + mask
