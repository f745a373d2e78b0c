"""A forgiving reader for the JSON that language models write.

Accepts, beside strict JSON: single-quoted strings, Python literals (True, False, None),
trailing commas, unquoted object keys, comments-free prose around the value, and truncated
output, from which every complete item is salvaged. It builds plain Python values and never
executes anything (no ``eval``, no ``ast``); depth and size are bounded, so hostile input
cannot exhaust the stack.
"""

from __future__ import annotations

MAX_DEPTH = 32

_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’"}


class _Truncated(Exception):
    """The input ended inside a value."""


class _Invalid(Exception):
    """Not a value at this position."""


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.repaired = False

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in " \t\r\n\u3000":
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        self.skip_space()
        if self.pos >= len(self.text):
            raise _Truncated
        return self.text[self.pos]

    def value(self, depth: int):
        if depth > MAX_DEPTH:
            raise _Invalid("too deep")
        char = self.peek()
        if char == "[":
            return self.array(depth)
        if char == "{":
            return self.object(depth)
        if char in _QUOTES:
            return self.string()
        return self.bare()

    def string(self) -> str:
        quote = self.text[self.pos]
        closing = _QUOTES[quote]
        if quote != '"':
            self.repaired = True
        self.pos += 1
        out = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise _Truncated
            char = text[self.pos]
            if char == closing:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                if self.pos + 1 >= len(text):
                    raise _Truncated
                code = text[self.pos + 1]
                if code == "u":
                    digits = text[self.pos + 2 : self.pos + 6]
                    if len(digits) < 4:
                        raise _Truncated
                    try:
                        out.append(chr(int(digits, 16)))
                    except ValueError:
                        raise _Invalid("bad \\u escape") from None
                    self.pos += 6
                    continue
                out.append(_ESCAPES.get(code, code))
                self.pos += 2
                continue
            if char == "\n" and closing in "\"'":
                raise _Invalid("line break inside a string")
            out.append(char)
            self.pos += 1

    def bare(self):
        """A literal, a number or an unquoted word (an object key or a stray label)."""
        start = self.pos
        text = self.text
        while self.pos < len(text) and (text[self.pos].isalnum() or text[self.pos] in "_-+.$"):
            self.pos += 1
        word = text[start : self.pos]
        if not word:
            raise _Invalid(f"unexpected {text[start]!r}")
        if word in _LITERALS:
            if word not in ("true", "false", "null"):
                self.repaired = True
            return _LITERALS[word]
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            self.repaired = True
            return word

    def array(self, depth: int) -> list:
        self.pos += 1
        items: list = []
        while True:
            try:
                char = self.peek()
            except _Truncated:
                self.repaired = True
                return items
            if char == "]":
                self.pos += 1
                return items
            if char == ",":  # a stray or trailing comma
                self.repaired = True
                self.pos += 1
                continue
            try:
                item = self.value(depth + 1)
            except _Truncated:
                self.repaired = True
                return items  # salvage the complete items
            items.append(item)
            try:
                char = self.peek()
            except _Truncated:
                self.repaired = True
                return items
            if char == ",":
                self.pos += 1
            elif char != "]":
                if char in "[{\"'“‘":  # a missing comma between items
                    self.repaired = True
                    continue
                raise _Invalid(f"expected , or ] at {self.pos}")

    def object(self, depth: int) -> dict:
        self.pos += 1
        result: dict = {}
        try:
            while True:
                char = self.peek()
                if char == "}":
                    self.pos += 1
                    return result
                if char == ",":
                    self.repaired = True
                    self.pos += 1
                    continue
                key = self.string() if char in _QUOTES else self.bare()
                if self.peek() not in ":：":
                    raise _Invalid(f"expected : at {self.pos}")
                if self.text[self.pos] == "：":
                    self.repaired = True
                self.pos += 1
                value = self.value(depth + 1)
                result[str(key)] = value
                char = self.peek()
                if char == ",":
                    self.pos += 1
                elif char != "}":
                    raise _Invalid(f"expected , or }} at {self.pos}")
        except _Truncated:
            # A cut-off item inside a list is dropped by the list; a cut-off top-level object
            # ({label: [strings]}) keeps its complete entries.
            if depth > 0:
                raise
            self.repaired = True
            return result


def loads_lenient(text: str, start: int = 0) -> tuple[object, bool, int]:
    """Read one value at ``start``; returns (value, repaired, end position).

    Raises ValueError when no value can be read there. A truncated array or top-level object
    returns its complete items with ``repaired=True``.
    """
    reader = _Reader(text)
    reader.pos = start
    try:
        value = reader.value(0)
    except _Truncated:
        raise ValueError("truncated value") from None
    except (_Invalid, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    return value, reader.repaired, reader.pos
