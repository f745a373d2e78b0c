"""The automaton of constrained `mentions` answers (see `constrained` for the rules it enforces): the answer
grammar read byte by byte, a trie of the vocabulary's token bytes walked with it, and the cost of closing
the answer from each state."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..answer_format import MENTIONS
from .tokens import unicode_to_bytes

# Each literal is one object: the automaton tells them apart by identity. The entity and label
# strings end with a JSON quote, which is where _MIDDLE and _CLOSE_ITEM start.
_LIST_OPEN = ord(MENTIONS.list_open)
LIST_CLOSE = ord(MENTIONS.list_close)
SEPARATOR = ord(MENTIONS.separator)
_OPEN_ITEM = MENTIONS.item_open.encode("utf-8")
_MIDDLE = MENTIONS.item_middle.encode("utf-8")
_CLOSE_ITEM = MENTIONS.item_close.encode("utf-8")
_EMPTY = (MENTIONS.list_open + MENTIONS.list_close).encode("utf-8")
_QUOTE = ord('"')
# The bytes each phase between items accepts (see the phases below).
_PHASE_BYTES = {
    "start": bytes([_LIST_OPEN]),
    "first": bytes([LIST_CLOSE, _OPEN_ITEM[0]]),
    "after": bytes([SEPARATOR, LIST_CLOSE]),
}
_NEVER = 1 << 20  # cost of a state that cannot be closed

# Automaton states are tuples: (phase, ...). Phases:
#   "start"                      before "["
#   "first"                      after "[": "]" or an item
#   "lit", literal, i, then      inside a fixed literal, i bytes of it read, `then` is the next state
#   "entity", positions, started inside the entity: possible end positions in the escaped sentence
#                                (None: every character start, nothing read yet), started: a byte read
#   "label", prefix              inside the label
#   "after"                      after an item: "," or "]"
#   "end"                        after "]": only the end-of-turn token
_ENTITY_START = ("entity", None, False)
_LABEL_START = ("label", b"")
_AFTER_QUOTE = ("lit", _MIDDLE, 1, _LABEL_START)  # the entity's closing quote was read


class TokenTrie:
    """The vocabulary's regular tokens as a byte trie: node = {byte: child, -1: [token ids]}."""

    def __init__(self, tokenizer):
        decoder = unicode_to_bytes()
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
        # Per token id: whether its bytes hold a quote (only those can close an entity) or a separator (only
        # those can open another item), its first byte.
        self.has_quote = np.zeros(self.vocab_size, dtype=bool)
        self.has_separator = np.zeros(self.vocab_size, dtype=bool)
        self.first_byte = np.full(self.vocab_size, -1, dtype=np.int16)
        for token_id, data in self.token_bytes.items():
            self.has_quote[token_id] = _QUOTE in data
            self.has_separator[token_id] = SEPARATOR in data
            self.first_byte[token_id] = data[0] if data else -1

    def fewest_tokens(self, data: bytes) -> int:
        """The fewest tokens whose bytes concatenate to ``data``."""
        best = [_NEVER] * len(data) + [0]
        for start in range(len(data) - 1, -1, -1):
            node = self.root
            for end in range(start, len(data)):
                node = node.get(data[end])
                if node is None:
                    break
                if -1 in node:
                    best[start] = min(best[start], 1 + best[end + 1])
        return best[0]


class EscapedSentence:
    """The JSON-escaped sentence as bytes, with its character boundaries and per-sentence tables."""

    def __init__(self, text: str):
        pieces = [MENTIONS.escape(ch).encode("utf-8") for ch in text]
        self.escaped = b"".join(pieces)
        starts, position = [], 0
        for piece in pieces:
            starts.append(position)
            position += len(piece)
        self.starts = frozenset(starts)
        self.boundaries = frozenset(starts) | {position}
        self.next_boundary = [0] * len(self.escaped)  # the first boundary after each position
        following = position
        for p in range(len(self.escaped) - 1, -1, -1):
            self.next_boundary[p] = following
            if p in self.boundaries:
                following = p
        self.start_bytes = {self.escaped[p] for p in starts}
        # Filled by AnswerGrammar.prepare.
        self.closing: list[int] = []  # cost of closing a started entity that ends at each position
        self.start_cost = _NEVER  # cost of closing from the entity start
        self.table: list[tuple[np.ndarray, np.ndarray]] = []  # (token ids, costs) from each position
        self.ends: dict[int, frozenset[int]] = {}  # entity token -> positions where it can end
        self.walks: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # sentence-dependent state walks
        self.start_union: tuple[np.ndarray, np.ndarray] | None = None
        self._occurrences: dict[bytes, int] = {}

    def occurrences(self, entity: bytes) -> int:
        """How often the escaped entity string occurs in the sentence as whole characters (overlaps count)."""
        count = self._occurrences.get(entity)
        if count is None:
            count = sum(
                1 for p in self.starts if self.escaped.startswith(entity, p) and p + len(entity) in self.boundaries
            )
            self._occurrences[entity] = count
        return count


class AnswerGrammar:
    """The answer automaton with the vocabulary and label set; caches what is sentence-independent."""

    def __init__(self, trie: TokenTrie, labels: Sequence[str]):
        self.trie = trie
        self.labels = [MENTIONS.escape(label).encode("utf-8") for label in labels]
        close_list = bytes([LIST_CLOSE])
        # Fewest tokens to write the rest of `","label":"LABEL"}]` from each offset, per label.
        self.tails = {}
        for label in self.labels:
            tail = _MIDDLE + label + _CLOSE_ITEM + close_list
            self.tails[label] = [trie.fewest_tokens(tail[k:]) for k in range(len(tail) + 1)]
        self.open_cost = [trie.fewest_tokens(_OPEN_ITEM[i:]) for i in range(len(_OPEN_ITEM) + 1)]
        self.close_cost = [trie.fewest_tokens(_CLOSE_ITEM[i:] + close_list) for i in range(len(_CLOSE_ITEM) + 1)]
        self.bracket_cost = trie.fewest_tokens(close_list)
        self.empty_cost = trie.fewest_tokens(_EMPTY)
        self.walk_cache: dict = {}  # (id(node), state) -> (entries, depends on the sentence)
        self.extension_cache: dict[bytes, int] = {}
        self.quote_close = min(tail[0] for tail in self.tails.values())  # close a started entity now

    # -- the automaton -------------------------------------------------------------------------
    def next_bytes(self, state: tuple, sentence: EscapedSentence | None) -> set[int] | bytes:
        """The bytes `step` can accept in ``state`` (a superset is fine; `step` decides)."""
        phase = state[0]
        if phase == "lit":
            return state[1][state[2] : state[2] + 1]
        if phase == "entity":
            if state[1] is None:
                return sentence.start_bytes
            escaped = sentence.escaped
            return {escaped[p] for p in state[1] if p < len(escaped)} | {_QUOTE}
        if phase == "label":
            prefix = state[1]
            found = {lab[len(prefix)] for lab in self.labels if lab.startswith(prefix) and len(lab) > len(prefix)}
            return found | {_QUOTE}
        return _PHASE_BYTES.get(phase, b"")

    def step(self, state: tuple, byte: int, sentence: EscapedSentence | None) -> tuple | None:
        """The state after one byte, or None if the byte is not allowed."""
        phase = state[0]
        if phase == "start":
            return ("first",) if byte == _LIST_OPEN else None
        if phase == "lit":
            literal, index, then = state[1], state[2], state[3]
            if literal[index] != byte:
                return None
            return then if index + 1 == len(literal) else ("lit", literal, index + 1, then)
        if phase == "first" or phase == "after":
            if byte == LIST_CLOSE:
                return ("end",)
            if byte == (_OPEN_ITEM[0] if phase == "first" else SEPARATOR):
                return ("lit", _OPEN_ITEM, int(phase == "first"), _ENTITY_START)
            return None
        if phase == "entity":
            positions, started = state[1], state[2]
            if positions is None:
                positions = sentence.starts
            escaped = sentence.escaped
            moved = frozenset(p + 1 for p in positions if p < len(escaped) and escaped[p] == byte)
            if moved:  # a quote inside the entity is escaped (mid-character, after a backslash)
                return ("entity", moved, True)
            if byte == _QUOTE and started and not positions.isdisjoint(sentence.boundaries):
                return _AFTER_QUOTE
            return None
        if phase == "label":
            prefix = state[1]
            if byte == _QUOTE:
                return ("lit", _CLOSE_ITEM, 1, ("after",)) if prefix in self.labels else None
            extended = prefix + bytes([byte])
            return ("label", extended) if any(lab.startswith(extended) for lab in self.labels) else None
        return None  # "end": no more bytes

    # -- the cost of closing -------------------------------------------------------------------
    def cost(self, state: tuple, sentence: EscapedSentence | None) -> int:
        """Tokens enough to close the answer from ``state`` (end-of-turn not counted); some allowed
        token always leads to a state of cost one less."""
        phase = state[0]
        if phase == "end":
            return 0
        if phase in ("first", "after"):
            return self.bracket_cost
        if phase == "start":
            return self.empty_cost
        if phase == "label":
            prefix, offset = state[1], len(_MIDDLE) + len(state[1])
            return min((self.tails[lab][offset] for lab in self.labels if lab.startswith(prefix)), default=_NEVER)
        if phase == "lit":
            literal, index = state[1], state[2]
            if literal is _MIDDLE:
                return min(self.tails[lab][index] for lab in self.labels)
            if literal is _CLOSE_ITEM:
                return self.close_cost[index]
            return self.open_cost[index] + (sentence.start_cost if sentence is not None else 0)
        positions = state[1]
        if positions is None:
            return sentence.start_cost
        return min((sentence.closing[p] for p in positions), default=_NEVER)

    def extension_cost(self, piece: bytes) -> int:
        """Tokens enough to write the rest ``piece`` of a character, then close the answer."""
        if piece in self.extension_cache:
            return self.extension_cache[piece]
        best = [_NEVER] * len(piece) + [self.quote_close]
        for start in range(len(piece) - 1, -1, -1):
            node = self.trie.root
            for end in range(start, len(piece)):
                node = node.get(piece[end])
                if node is None:
                    break
                if -1 in node:
                    best[start] = min(best[start], 1 + best[end + 1])
                if end + 1 == len(piece) and _QUOTE in node:  # tokens that also close the entity
                    for _token, following in self.walk(node[_QUOTE], _AFTER_QUOTE, None)[0]:
                        if following[0] != "entity" and not (following[0] == "lit" and following[1] is _OPEN_ITEM):
                            best[start] = min(best[start], 1 + self.cost(following, None))
        self.extension_cache[piece] = best[0]
        return best[0]

    # -- allowed tokens ------------------------------------------------------------------------
    def walk(self, node: dict, state: tuple, sentence: EscapedSentence | None) -> tuple[list[tuple[int, tuple]], bool]:
        """(token, next state) for the tokens below trie ``node`` (its own included) read from
        ``state``, and whether the walk depended on the sentence (cached when it did not)."""
        key = (id(node), state)
        cached = self.walk_cache.get(key)
        if cached is not None:
            return cached
        found: list[tuple[int, tuple]] = []
        dependent = False
        stack = [(node, state)]
        while stack:
            current, current_state = stack.pop()
            if current is not self.trie.root and -1 in current:
                found.extend((token, current_state) for token in current[-1])
            if current_state[0] == "entity":
                dependent = True
                if sentence is None:
                    continue
            for byte in self.next_bytes(current_state, sentence):
                child = current.get(byte)
                if child is None:
                    continue
                following = self.step(current_state, byte, sentence)
                if following is not None:
                    stack.append((child, following))
        if not dependent:
            self.walk_cache[key] = (found, False)
        return found, dependent

    def _arrays(self, entries: Sequence[tuple[int, tuple]], sentence: EscapedSentence) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((token for token, _ in entries), dtype=np.int64, count=len(entries))
        costs = np.fromiter((self.cost(s, sentence) for _, s in entries), dtype=np.int64, count=len(entries))
        return ids, costs

    def prepare(self, sentence: EscapedSentence) -> None:
        """The per-sentence tables: closing costs and the tokens allowed from each position."""
        escaped, root = sentence.escaped, self.trie.root
        extension = [self.extension_cost(escaped[p : sentence.next_boundary[p]]) for p in range(len(escaped))] + [
            _NEVER
        ]
        sentence.closing = [
            min(extension[p], self.quote_close if p in sentence.boundaries else _NEVER) for p in range(len(escaped) + 1)
        ]
        sentence.start_cost = min((extension[p] for p in sentence.starts), default=_NEVER)
        ends: dict[int, set[int]] = {}
        for start in range(len(escaped)):
            entries: list[tuple[int, int]] = []
            node = root
            for end in range(start + 1, len(escaped) + 1):
                node = node.get(escaped[end - 1])
                if node is None:
                    break
                for token in node.get(-1, ()):
                    entries.append((token, sentence.closing[end]))
                    ends.setdefault(token, set()).add(end)
                if end in sentence.boundaries and _QUOTE in node:
                    for token, following in self.walk(node[_QUOTE], _AFTER_QUOTE, sentence)[0]:
                        entries.append((token, self.cost(following, sentence)))
            sentence.table.append(
                (np.array([t for t, _ in entries], dtype=np.int64), np.array([c for _, c in entries], dtype=np.int64))
            )
        sentence.ends = {token: frozenset(positions) for token, positions in ends.items()}
        starts = sorted(sentence.starts)
        sentence.start_union = (
            np.concatenate([sentence.table[p][0] for p in starts] or [np.zeros(0, np.int64)]),
            np.concatenate([sentence.table[p][1] for p in starts] or [np.zeros(0, np.int64)]),
        )

    def allowed(self, state: tuple, sentence: EscapedSentence) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, cost after each) allowed in ``state``; duplicates possible."""
        if state[0] == "entity":
            positions, started = state[1], state[2]
            if positions is None:
                return sentence.start_union
            parts = [sentence.table[p] for p in positions if p < len(sentence.escaped)]
            if started and not positions.isdisjoint(sentence.boundaries):
                parts.append(self.global_arrays(_AFTER_QUOTE, self.trie.root.get(_QUOTE), sentence))
            if len(parts) == 1:
                return parts[0]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self.global_arrays(state, self.trie.root, sentence)

    def global_arrays(
        self, state: tuple, node: dict | None, sentence: EscapedSentence
    ) -> tuple[np.ndarray, np.ndarray]:
        """Allowed tokens of a state outside an entity (from the trie root, or below ``node``)."""
        key = ("arrays", id(node), state)
        cached = self.walk_cache.get(key) or sentence.walks.get(key)
        if cached is not None:
            return cached
        if node is None:
            arrays = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            self.walk_cache[key] = arrays
            return arrays
        entries, dependent = self.walk(node, state, sentence)
        arrays = self._arrays(entries, sentence)
        # Costs of states before an entity include the sentence's start cost: cache those per sentence.
        if dependent or any(s[0] == "lit" and s[1] is _OPEN_ITEM for _, s in entries):
            sentence.walks[key] = arrays
        else:
            self.walk_cache[key] = arrays
        return arrays
