"""Constrained decoding of `mentions` answers: every answer parses, every entity string is a
substring of the input sentence, every label is in the schema, and every answer is complete
(closed and ended) within the token budget.

The answer grammar is the training format, compact JSON, spelled with the literals of
`answer_format.MENTIONS`:

    []    or    [{"text":"ENTITY","label":"LABEL"},{"text":...}]    then end-of-turn

A small automaton reads the answer byte by byte (UTF-8; byte-level BPE tokenizers such as
Qwen's map every token to bytes). The tokens allowed in a state are found by walking a trie of
the vocabulary's token bytes together with the automaton; the walks are cached: states outside
an entity (JSON literals, labels) are the same for every sentence, and inside an entity the
tokens that can follow each byte position of the sentence are tabulated once per sentence.

The token budget: every state has a cost, an upper bound on the tokens needed to close the answer
from it (computed with the real vocabulary: ``"}]`` may be one token or several), such that some
allowed token leads to a state of cost one less. A token is allowed only if the state it leads to
can still be closed, plus the end-of-turn token, in the tokens left; so an answer ends in time.

Repeats: an entity string may be closed no more often than it occurs in the sentence (the same string
under another label counts against the same budget: in flat NER each occurrence carries one label,
and no CLUENER train or dev sentence has more gold mentions of a string than occurrences). A model
that tries to close a used-up string (its best token was one the rule removed) is looping: that row's
list closes after the current item. Closing within the token budget outranks the rule: when only a
repeat still fits (or the entity cannot grow), it is allowed.

Why not a grammar library (xgrammar, outlines, lm-format-enforcer): the substring rule makes every
sentence a new grammar, and those libraries compile a grammar against the whole vocabulary up
front, which costs more per sentence than these walks (measured in benchmarks/README.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch

from .answer_format import MENTIONS
from .generation import stop_token_ids, unicode_to_bytes

# Each literal is one object: the automaton tells them apart by identity. The entity and label
# strings end with a JSON quote, which is where _MIDDLE and _CLOSE_ITEM start.
_LIST_OPEN = ord(MENTIONS.list_open)
_LIST_CLOSE = ord(MENTIONS.list_close)
_SEPARATOR = ord(MENTIONS.separator)
_OPEN_ITEM = MENTIONS.item_open.encode("utf-8")
_MIDDLE = MENTIONS.item_middle.encode("utf-8")
_CLOSE_ITEM = MENTIONS.item_close.encode("utf-8")
_EMPTY = (MENTIONS.list_open + MENTIONS.list_close).encode("utf-8")
_QUOTE = ord('"')
# The bytes each phase between items accepts (see the phases below).
_PHASE_BYTES = {
    "start": bytes([_LIST_OPEN]),
    "first": bytes([_LIST_CLOSE, _OPEN_ITEM[0]]),
    "after": bytes([_SEPARATOR, _LIST_CLOSE]),
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
            self.has_separator[token_id] = _SEPARATOR in data
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


class _Sentence:
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
        # Filled by _Grammar.prepare.
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


class _Grammar:
    """The answer automaton with the vocabulary and label set; caches what is sentence-independent."""

    def __init__(self, trie: TokenTrie, labels: Sequence[str]):
        self.trie = trie
        self.labels = [MENTIONS.escape(label).encode("utf-8") for label in labels]
        close_list = bytes([_LIST_CLOSE])
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
    def next_bytes(self, state: tuple, sentence: _Sentence | None) -> set[int] | bytes:
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

    def step(self, state: tuple, byte: int, sentence: _Sentence | None) -> tuple | None:
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
            if byte == _LIST_CLOSE:
                return ("end",)
            if byte == (_OPEN_ITEM[0] if phase == "first" else _SEPARATOR):
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
    def cost(self, state: tuple, sentence: _Sentence | None) -> int:
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
    def walk(self, node: dict, state: tuple, sentence: _Sentence | None) -> tuple[list[tuple[int, tuple]], bool]:
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

    def _arrays(self, entries: Sequence[tuple[int, tuple]], sentence: _Sentence) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((token for token, _ in entries), dtype=np.int64, count=len(entries))
        costs = np.fromiter((self.cost(s, sentence) for _, s in entries), dtype=np.int64, count=len(entries))
        return ids, costs

    def prepare(self, sentence: _Sentence) -> None:
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

    def allowed(self, state: tuple, sentence: _Sentence) -> tuple[np.ndarray, np.ndarray]:
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

    def global_arrays(self, state: tuple, node: dict | None, sentence: _Sentence) -> tuple[np.ndarray, np.ndarray]:
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


class MentionsConstraint:
    """A `transformers` logits processor for one batch of sentences (see module docstring).

    ``max_new_tokens`` (set by `generation.generate_answers`) is the token budget the answers must
    close in; None lets answers run on (they may then be cut off by the caller's bound).
    """

    bounds_repeats = True  # `generation` need not watch its answers for repeated mentions

    def __init__(
        self,
        grammar: _Grammar,
        texts: Sequence[str],
        prompt_width: int,
        stop_ids: Sequence[int],
        max_new_tokens: int | None = None,
    ):
        self.grammar = grammar
        self.sentences = []
        for text in texts:
            sentence = _Sentence(text)
            grammar.prepare(sentence)
            self.sentences.append(sentence)
        self.states: list[tuple | None] = [("start",)] * len(texts)
        # Per row: the escaped bytes of the entity being written, how often each string was closed, the
        # strings whose budget is used up, whether the list must close after this item (the row tried to
        # repeat), and the tokens the repeat rule removed at the last step.
        self.entity: list[bytes] = [b""] * len(texts)
        self.written: list[dict[bytes, int]] = [{} for _ in texts]
        self.used_up: list[set[bytes]] = [set() for _ in texts]
        self.closing: list[bool] = [False] * len(texts)
        self.blocked: list[np.ndarray | None] = [None] * len(texts)
        self.prompt_width = prompt_width
        self.stop_ids = list(stop_ids)
        self.stop_array = np.array(self.stop_ids, dtype=np.int64)
        self.max_new_tokens = max_new_tokens
        self.seen = 0

    @classmethod
    def for_tokenizer(cls, tokenizer, labels: Sequence[str], stop_ids: Sequence[int] | None = None):
        """A factory ``(texts, prompt_width) -> MentionsConstraint`` with the vocabulary walked once."""
        grammar = _Grammar(TokenTrie(tokenizer), labels)
        stops = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer)

        def factory(texts: Sequence[str], prompt_width: int) -> MentionsConstraint:
            return cls(grammar, texts, prompt_width, stops)

        return factory

    def select(self, rows: Sequence[int], generated: Sequence[Sequence[int]], prompt_width: int) -> None:
        """Keep only ``rows`` (batch rows that go on in a new, smaller `generate` call whose prompts end with
        what they generated): ``generated[row]`` is each row's tokens of the call that ended, ``prompt_width``
        the new call's prompt width."""
        for row in rows:
            for token in generated[row][self.seen :]:  # the last tokens this processor did not see yet
                self.advance(row, token)
        for name in ("sentences", "states", "entity", "written", "used_up", "closing", "blocked"):
            values = getattr(self, name)
            setattr(self, name, [values[row] for row in rows])
        if self.max_new_tokens is not None and rows:
            self.max_new_tokens -= len(generated[rows[0]])
        self.prompt_width, self.seen = prompt_width, 0

    def advance(self, row: int, token_id: int) -> None:
        """Move row ``row`` past the generated token ``token_id``."""
        state = self.states[row]
        if state is None or state == ("done",):
            return
        if token_id in self.stop_ids:
            self.states[row] = ("done",)
            return
        sentence = self.sentences[row]
        data = self.grammar.trie.token_bytes.get(token_id)
        if state[0] == "entity" and token_id in sentence.ends:  # the common case, by table
            positions = sentence.starts if state[1] is None else state[1]
            moved = frozenset(p + len(data) for p in positions) & sentence.ends[token_id]
            if moved:
                self.states[row] = ("entity", moved, True)
                self.entity[row] += data
                return
        state, self.entity[row], closed = self._walk(state, self.entity[row], data, sentence)
        for entity in closed:
            count = self.written[row].get(entity, 0) + 1
            self.written[row][entity] = count
            if count >= sentence.occurrences(entity):
                self.used_up[row].add(entity)
        self.states[row] = state

    def _walk(
        self, state: tuple, entity: bytes, data: bytes | None, sentence: _Sentence
    ) -> tuple[tuple | None, bytes, list[bytes]]:
        """(state, entity bytes, entity strings closed) after the bytes ``data`` (None: an unknown token,
        which fails the automaton)."""
        closed = []
        for byte in data if data is not None else b"\xff":
            before, state = state, self.grammar.step(state, byte, sentence)
            if state is None:
                break
            if before[0] == "entity":
                if state[0] == "entity":
                    entity += bytes([byte])
                else:  # the closing quote
                    closed.append(entity)
                    entity = b""
        return state, entity, closed

    def allowed(self, row: int, left: int | None = None) -> np.ndarray:
        """Token ids allowed for ``row`` when ``left`` tokens remain (end-of-turn included)."""
        self.blocked[row] = None
        state = self.states[row]
        if state is None or state[0] in ("done", "end"):
            return self.stop_array
        ids, costs = self.grammar.allowed(state, self.sentences[row])
        rule = self._repeat_rule(row, state, ids)
        fits = None
        if left is not None and len(costs) and costs.max() > left - 2:
            fits = costs <= left - 2  # the state after the token, then end-of-turn, must still fit
        if rule is not None:
            keep = rule if fits is None else rule & fits
            if keep.any():
                if not self.closing[row]:
                    self.blocked[row] = ids[~rule]
                return ids[keep]
            # Nothing but a repeat fits in the budget (or the entity cannot grow): closing in time wins,
            # and the list ends after this item.
            self.closing[row] = True
        if fits is not None:
            if not fits.any():  # a budget too small to close at all: get as close as possible
                fits = costs == costs.min()
            ids = ids[fits]
        return ids

    def _repeat_rule(self, row: int, state: tuple, ids: np.ndarray) -> np.ndarray | None:
        """Which of ``ids`` the repeat rule keeps (None: all): no token closes a used-up entity string, and
        a row that tried to repeat ends its list (only ``]`` after an item)."""
        trie = self.grammar.trie
        if self.closing[row] and state[0] == "after":
            return trie.first_byte[ids] == _LIST_CLOSE
        keep = np.ones(len(ids), dtype=bool)
        sentence, entity = self.sentences[row], self.entity[row]
        if self.closing[row]:
            # One token may close the item and open the next (Qwen's `"},{"`), never passing "after" between
            # tokens: such a token ends the item the same way and must not open another.
            for index in np.flatnonzero(trie.has_separator[ids]):
                if self._opens_item(state, trie.token_bytes[int(ids[index])], sentence):
                    keep[index] = False
        used_up = self.used_up[row]
        if not used_up:
            return None if keep.all() else keep
        for index in np.flatnonzero(trie.has_quote[ids]):
            closed = self._walk(state, entity, trie.token_bytes[int(ids[index])], sentence)[2]
            if any(c in used_up for c in closed):
                keep[index] = False
        if state[0] == "entity":
            keep &= ~np.isin(ids, self._dead_ends(state, entity, used_up, sentence))
        return None if keep.all() else keep

    def _opens_item(self, state: tuple, data: bytes, sentence: _Sentence) -> bool:
        """Whether reading ``data`` from ``state`` passes the end of an item and goes on with a separator."""
        for byte in data:
            if state[0] == "after" and byte == _SEPARATOR:
                return True
            state = self.grammar.step(state, byte, sentence)
            if state is None:
                return False
        return False

    def _dead_ends(self, state: tuple, entity: bytes, used_up: set[bytes], sentence: _Sentence) -> list[int]:
        """Tokens after which the entity could neither close nor grow into a string that is not used up
        (such as a used-up string that ends the sentence). Only tokens on the way to a used-up string
        can lead there."""
        escaped, positions = sentence.escaped, sentence.starts if state[1] is None else state[1]
        boundaries = sorted(sentence.boundaries)
        found = []
        for string in used_up:
            if len(string) <= len(entity) or not string.startswith(entity):
                continue
            node, rest = self.grammar.trie.root, string[len(entity) :]
            for length, byte in enumerate(rest, 1):
                node = node.get(byte)
                if node is None:
                    break
                if -1 not in node:
                    continue
                piece, grown = rest[:length], entity + rest[:length]
                ends = [p + length for p in positions if escaped.startswith(piece, p)]
                if not any(
                    grown + escaped[q:b] not in used_up
                    for q in ends
                    for b in boundaries[bisect.bisect_left(boundaries, q) :]
                ):
                    found.extend(node[-1])
        return found

    def allowed_per_row(self, input_ids: torch.LongTensor) -> list[np.ndarray]:
        """Read the tokens generated since the last call; the allowed token ids of every row."""
        generated = input_ids.shape[1] - self.prompt_width
        if generated > self.seen:
            new = input_ids[:, self.prompt_width + self.seen :].tolist()
            for row, tokens in enumerate(new):
                for token in tokens:
                    self.advance(row, token)
            self.seen = generated
        left = None if self.max_new_tokens is None else self.max_new_tokens - generated
        return [self.allowed(row, left) for row in range(input_ids.shape[0])]

    @staticmethod
    def apply(scores: torch.FloatTensor, per_row: Sequence[np.ndarray]) -> torch.FloatTensor:
        """``scores`` with every token outside ``per_row[row]`` set to -inf (a new tensor: the
        caller may keep the raw logits)."""
        rows = torch.from_numpy(np.repeat(np.arange(len(per_row)), [len(a) for a in per_row]))
        columns = torch.from_numpy(np.concatenate(per_row))
        if scores.device.type != "cpu":
            rows, columns = rows.to(scores.device, non_blocking=True), columns.to(scores.device, non_blocking=True)
        masked = torch.full_like(scores, float("-inf"))
        masked[rows, columns] = scores[rows, columns]
        return masked

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        per_row = self.allowed_per_row(input_ids)
        for row, blocked in enumerate(self.blocked):
            # The model's best token was a repeat the rule removed: it is looping, end its list after this item.
            if blocked is not None and len(blocked):
                best_blocked = scores[row, torch.from_numpy(blocked).to(scores.device)].max()
                best_allowed = scores[row, torch.from_numpy(per_row[row]).to(scores.device)].max()
                if best_blocked > best_allowed:
                    self.closing[row] = True
        return self.apply(scores, per_row)
