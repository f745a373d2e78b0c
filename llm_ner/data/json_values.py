"""JSON that a record can be: the one decoder every JSON-reading format uses (and the HTTP service
can use for request bodies).

JSON allows values that no text record can hold and that Python's `json` turns into tracebacks or
into strings that fail much later: a lone UTF-16 surrogate (``"\\ud800"``: not a character, it cannot
be written as UTF-8), nesting deep enough for a `RecursionError`, an integer of more digits than
Python converts (a `ValueError` outside `json.JSONDecodeError`), ``NaN``/``Infinity`` (not JSON at
all) and numbers that overflow to ``inf``. `decode_json` refuses each with a `JsonValueError`, a
`ValueError` whose message is one line (and whose ``line`` says where in the text, when known);
the readers wrap it into ``FILE:LINE: reason``. `check_text` and `record_id` check the fields every
format shares, and `show` renders an input value for a message, short whatever its size.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import sys
from collections.abc import Iterator
from typing import TypeGuard

MAX_DEPTH = 100  # no record of any format needs more than ~10 levels; json itself breaks near 1000

# A lone surrogate can only come from a \uD800-\uDFFF escape (UTF-8 decoding refuses encoded ones)
# or from a caller's str: the walk over a decoded value is needed only when the source has either.
_SURROGATE_SOURCE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_HIGH, _LOW = r"\\u[dD][89abAB][0-9a-fA-F]{2}", r"\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # escapes of surrogate halves
_LONE_SURROGATE_ESCAPE = re.compile(rf"{_HIGH}(?!{_LOW})|(?<!{_HIGH}){_LOW}|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped) and brackets, for the depth scan


class JsonValueError(ValueError):
    """JSON that no record can be: ``reason`` (one line), and ``line`` (1-based, of the decoded text) when known."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line


class JsonSyntaxError(JsonValueError):
    """Text that is not JSON at all (`json.JSONDecodeError`, extra data after the value)."""


_show = reprlib.Repr()
_show.maxstring = 60
_show.maxother = 60
_show.maxlong = 40
_show.maxlevel = 3
_show.maxlist = _show.maxtuple = _show.maxdict = _show.maxset = 6


def show(value: object) -> str:
    """A short ``repr`` of an input value for an error message: long strings, long numbers and deep
    or long containers are cut (``...``), so a message stays one readable line."""
    try:
        return _show.repr(value)
    except (ValueError, RecursionError):  # an int beyond the conversion limit (never from `decode_json`)
        return f"<{type(value).__name__}>"


def _reject_constant(name: str) -> object:
    raise JsonValueError(f"{name} is not a JSON value")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonValueError(f"number {show(literal)} is out of range")
    return value


# parse_int stays the C default (a Python hook per integer costs ~10% of reading CLUENER): an integer of
# more digits than Python converts is the one plain ValueError the scanner raises (see `scan_json`).
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _column(text: str, position: int) -> int:
    return position - text.rfind("\n", 0, position)


def _check_end(text: str, position: int) -> None:
    """Only whitespace may follow the value that ends at ``position``."""
    position = _WHITESPACE.match(text, position).end()
    if position != len(text):
        column = _column(text, position)
        raise JsonSyntaxError(f"invalid JSON (Extra data at column {column})", _line_of(text, position))


def _too_deep(text: str, start: int) -> int | None:
    """The position in ``text`` (from ``start``) where brackets first nest deeper than `MAX_DEPTH`."""
    depth = 0
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
            if depth <= 0:
                return None
    return None


def scan_json(text: str, position: int = 0) -> tuple[object, int]:
    """Decode the JSON value that starts at ``position`` (whitespace skipped); returns it and the
    position after it. Raises `JsonValueError` (with the line) for invalid JSON, nesting too deep
    for Python, integers too long to convert, NaN/Infinity and numbers out of range. The value is
    not yet checked: `check_value` it."""
    position = _WHITESPACE.match(text, position).end()
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"invalid JSON ({exc.msg} at column {exc.colno})", exc.lineno) from None
    except JsonValueError as exc:
        # Raised inside the scanner, which does not say where: the line of the value's start.
        raise JsonValueError(exc.reason, _line_of(text, position)) from None
    except ValueError:  # int() refused a literal: more digits than sys.get_int_max_str_digits()
        limit = sys.get_int_max_str_digits()  # the ValueError exists only where this does (3.10.7+)
        raise JsonValueError(f"an integer of more than {limit} digits", _line_of(text, position)) from None
    except RecursionError:
        deep = _too_deep(text, position)
        raise JsonValueError(
            f"nested deeper than {MAX_DEPTH} levels", _line_of(text, position if deep is None else deep)
        ) from None


def check_value(value: object, source: str | None = None) -> None:
    """Raise `JsonValueError` if ``value`` (decoded JSON, or YAML) nests deeper than `MAX_DEPTH` or holds a
    lone surrogate in a string or key. ``source``, the text it was decoded from, lets a value that
    cannot have either pass without a walk."""
    brackets = source.count("[") + source.count("{") if source is not None else MAX_DEPTH + 1
    if brackets <= MAX_DEPTH and not _SURROGATE_SOURCE.search(source):
        return
    stack: list[tuple[object, int]] = [(value, 0)]
    # Decoded JSON is a tree, but YAML (aliases) can share a container or hold itself: walk one again
    # only when reached deeper than before, so shared parts cost once and a cycle ends.
    reached: dict[int, int] = {}
    while stack:  # iterative: a walk must not itself hit the recursion limit
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, (list, dict)):
            if depth + 1 > MAX_DEPTH:
                raise JsonValueError(f"nested deeper than {MAX_DEPTH} levels")
            if reached.get(id(item), -1) >= depth:
                continue
            reached[id(item)] = depth
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str):  # always, in JSON; YAML keys may be numbers
                        _check_string(key)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_string(value: str) -> None:
    if not value.isascii():
        found = _SURROGATE.search(value)
        if found:
            raise JsonValueError(
                f"lone surrogate \\u{ord(found.group()):04x} in the string {show(value)}: "
                "not a character (text must be valid Unicode)"
            )


def decode_json(data: str | bytes) -> object:
    """One JSON value from ``data`` (bytes must be UTF-8; a BOM is dropped), checked with
    `check_value`; a `JsonValueError` says what is wrong (and on which line). For request bodies and
    any other JSON text that must become records."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).removeprefix(b"\xef\xbb\xbf")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise JsonValueError(f"not valid UTF-8 (byte {data[exc.start : exc.start + 1]!r})", line) from None
    text = data.removeprefix("\ufeff")
    value, end = scan_json(text)
    _check_end(text, end)
    try:
        check_value(value, text)
    except JsonValueError as exc:
        raise JsonValueError(exc.reason, _line_of(text, _fault(text))) from None
    return value


def _fault(text: str) -> int:
    """Where in ``text`` the fault `check_value` found lies: the first lone surrogate escape, else
    where the nesting gets too deep; 0 (the first line) if neither is found."""
    found = _LONE_SURROGATE_ESCAPE.search(text)
    if found:
        return found.start()
    deep = _too_deep(text, _WHITESPACE.match(text).end())
    return deep or 0


def array_items(text: str) -> Iterator[tuple[int, object]]:
    """The items of the JSON array ``text``, each with the line it starts on. An item that `check_value`
    refuses comes as its `JsonValueError` (the items after it can still be read); text that cannot be
    decoded raises `JsonValueError` with the line."""
    position = _WHITESPACE.match(text).end()
    if not text.startswith("[", position):
        raise JsonSyntaxError("invalid JSON (expected an array)", _line_of(text, position))
    position = _WHITESPACE.match(text, position + 1).end()
    line, counted = 1, 0
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            line += text.count("\n", counted, position)
            counted = position
            start = position
            item, position = scan_json(text, position)
            try:
                check_value(item, text[start:position])
            except JsonValueError as exc:
                item = JsonValueError(exc.reason, line)
            yield line, item
            position = _WHITESPACE.match(text, position).end()
            if text.startswith(",", position):
                position = _WHITESPACE.match(text, position + 1).end()
                continue
            if text.startswith("]", position):
                position += 1
                break
            raise JsonSyntaxError(
                f"invalid JSON (Expecting ',' delimiter at column {_column(text, position)})", _line_of(text, position)
            )
    _check_end(text, position)


def check_text(value: object, field: str = "text") -> str:
    """``value`` as the text of a record (field ``field``): a string; `ValueError` otherwise. Lone
    surrogates are `decode_json`'s to refuse: decode the record with it."""
    if value is None:
        raise ValueError(f'missing "{field}" string')
    if not isinstance(value, str):
        raise ValueError(f'missing "{field}" string (found {type(value).__name__} {show(value)})')
    return value


def record_id(value: object) -> str | None:
    """A record's ``id`` as a string (None when absent); `ValueError` unless a string or an integer."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f'"id" must be a string or an integer, got {type(value).__name__} {show(value)}')


def is_offset(value: object) -> TypeGuard[int]:
    """An integer offset (a JSON integer; not a bool, a float or a string)."""
    return isinstance(value, int) and not isinstance(value, bool)


def score_value(value: object) -> float | None:
    """A record's confidence as a float; None for anything else (a string, a bool, an integer too large
    for a float): a score is optional, so a bad one is left out, not an error. A number outside [0, 1] is a
    ValueError: it is no probability, and ranking or thresholding by it would be silently wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        score = float(value)
    except OverflowError:
        return None
    if math.isfinite(score) and not 0 <= score <= 1:
        raise ValueError(f"score {show(value)} is not a probability from 0 to 1")
    return score if math.isfinite(score) else None
