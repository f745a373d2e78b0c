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

from .mentions_grammar import LIST_CLOSE, SEPARATOR, AnswerGrammar, EscapedSentence, TokenTrie
from .tokens import stop_token_ids


class MentionsConstraint:
    """A `transformers` logits processor for one batch of sentences (see module docstring).

    ``max_new_tokens`` (set by `generation.generate_answers`) is the token budget the answers must
    close in; None lets answers run on (they may then be cut off by the caller's bound).
    """

    bounds_repeats = True  # `generation` need not watch its answers for repeated mentions

    def __init__(
        self,
        grammar: AnswerGrammar,
        texts: Sequence[str],
        prompt_width: int,
        stop_ids: Sequence[int],
        max_new_tokens: int | None = None,
    ):
        self.grammar = grammar
        self.sentences = []
        for text in texts:
            sentence = EscapedSentence(text)
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
        grammar = AnswerGrammar(TokenTrie(tokenizer), labels)
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
        self, state: tuple, entity: bytes, data: bytes | None, sentence: EscapedSentence
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
            return trie.first_byte[ids] == LIST_CLOSE
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

    def _opens_item(self, state: tuple, data: bytes, sentence: EscapedSentence) -> bool:
        """Whether reading ``data`` from ``state`` passes the end of an item and goes on with a separator."""
        for byte in data:
            if state[0] == "after" and byte == SEPARATOR:
                return True
            state = self.grammar.step(state, byte, sentence)
            if state is None:
                return False
        return False

    def _dead_ends(self, state: tuple, entity: bytes, used_up: set[bytes], sentence: EscapedSentence) -> list[int]:
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
