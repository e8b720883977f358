"""JSON encoding that matches Go's ``encoding/json`` byte for byte.

restic hashes tree JSON to get tree ids; producing the same bytes as restic for the same tree
lets trees deduplicate across implementations. Go escapes ``<``, ``>`` and ``&`` as
``\\u003c``/``\\u003e``/``\\u0026``, escapes U+2028/U+2029, writes no spaces, and keeps other
non-ASCII characters as UTF-8.

Reading is Go's too: the ``as_*`` helpers check a decoded document's fields the way Go's
decoder fills a typed struct (wrong JSON type, number out of the field's range, id that is
not 64 hex digits, time that is not RFC 3339: the document is malformed), raising
:class:`FieldError` naming the field; each decoder maps it to IntegrityError naming the file.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from airflow_backup.repository.timefmt import parse_strict

__all__ = [
    "MAX_DEPTH",
    "U32_MAX",
    "U64_MAX",
    "FieldError",
    "as_id",
    "as_int",
    "as_list",
    "as_object",
    "as_str",
    "as_strings",
    "as_time",
    "as_value",
    "depth_exceeds",
    "describe",
    "dumps",
    "go_quote_name",
    "go_text",
    "go_unquote_name",
    "loads",
]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_GO_EXTRA = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
             "\u2029": "\\u2029", "\x7f": "\x7f"}


def _escape_go(text: str) -> str:
    if not any(c in text for c in "<>&\u2028\u2029"):
        return text
    return "".join(_GO_EXTRA.get(c, c) for c in text)


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_GO_ESCAPES = {"b": "\\u0008", "f": "\\u000c"}


def _go_escape(m: re.Match[str]) -> str:
    return _GO_ESCAPES.get(m.group(1), m.group(0))


def dumps(obj: Any) -> bytes:
    """Return ``obj`` encoded as compact JSON, escaped the way Go's encoder does.

    Python's encoder writes the same control-character escapes as Go (``\\n``, ``\\t``,
    ``\\u00XX``) except that Go writes ``\\u0008``/``\\u000c`` where Python writes ``\\b``/``\\f``.
    Escapes are rewritten pair by pair so that an escaped backslash followed by ``b`` stays
    what it is.
    """
    text = _ENCODER.encode(obj)
    if "\\" in text:
        text = _ESCAPE.sub(_go_escape, text)
    if _SURROGATE.search(text):
        # Invalid UTF-8 bytes (decoded with surrogateescape): Go writes "\ufffd" for each.
        text = _SURROGATE.sub(r"\\ufffd", text)
    return _escape_go(text).encode("utf-8")


# strconv.Quote escapes: see Go's strconv/quote.go. We only need the inverse to be exact.
_QUOTE_SIMPLE = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
                 0x5C: "\\\\", 0x22: '\\"'}


def go_quote_name(raw: bytes) -> str:
    """Given a file name's raw bytes, return Go's ``strconv.Quote`` without the outer quotes.

    Valid printable UTF-8 passes through; invalid bytes become ``\\xNN``; control and
    non-printable runes get ``\\a``-style, ``\\uXXXX`` or ``\\UXXXXXXXX`` escapes.
    """
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            if b in _QUOTE_SIMPLE:
                out.append(_QUOTE_SIMPLE[b])
            elif b < 0x20 or b == 0x7F:
                out.append(f"\\x{b:02x}")
            else:
                out.append(chr(b))
            i += 1
            continue
        # Decode one UTF-8 sequence, or escape the invalid byte.
        size = 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 0
        ch = None
        if size and i + size <= n:
            try:
                ch = raw[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            out.append(f"\\x{b:02x}")
            i += 1
            continue
        cp = ord(ch)
        if _is_go_printable(ch):
            out.append(ch)
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
        i += size
    return "".join(out)


def _is_go_printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and U+0020.
    # Python's str.isprintable is close; it also rejects categories Zs other than space, as Go.
    return ch.isprintable()


def go_unquote_name(quoted: str) -> bytes:
    """Invert :func:`go_quote_name`: return the raw bytes of a name stored by restic."""
    if "\\" not in quoted:
        return quoted.encode("utf-8")
    out = bytearray()
    i = 0
    n = len(quoted)
    simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 0x5C,
              '"': 0x22, "'": 0x27}
    while i < n:
        c = quoted[i]
        if c != "\\" or i + 1 >= n:
            out += c.encode("utf-8")
            i += 1
            continue
        e = quoted[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x":
            out.append(int(quoted[i + 2 : i + 4], 16))
            i += 4
        elif e == "u":
            out += chr(int(quoted[i + 2 : i + 6], 16)).encode("utf-8", "surrogatepass")
            i += 6
        elif e == "U":
            out += chr(int(quoted[i + 2 : i + 10], 16)).encode("utf-8")
            i += 10
        elif e in "01234567":
            out.append(int(quoted[i + 1 : i + 4], 8))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def loads(data: bytes | str) -> Any:
    """Parse JSON written by restic or by us, as :func:`json.loads` would. Raise ValueError
    if it is not JSON.

    orjson parses a repository's trees and index much faster than the standard parser, and
    every command loads them. It is stricter than the standard parser (no lone surrogates
    in escapes, no NaN), so whatever it refuses is parsed again by the standard parser, which
    accepts or rejects it exactly as before. Two differences remain: an integer outside
    Go's int64/uint64 range comes back as a float, which no field restic writes can hold;
    and a document nested deeper than :data:`MAX_DEPTH` levels (orjson's limit; restic's
    documents nest a few levels) is a ValueError, where the standard parser would raise
    RecursionError.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None


#: How deeply :func:`loads` lets documents nest (orjson's own limit).
MAX_DEPTH = 1024

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def go_text(value: str) -> str:
    """Return ``value`` with each lone surrogate (which only the standard parser's fallback
    lets through, from an escape such as ``\\ud800``) replaced by U+FFFD, as Go's decoder
    reads it: such a string could not be printed or written back as UTF-8."""
    return _LONE_SURROGATE.sub("\ufffd", value) if _LONE_SURROGATE.search(value) else value


def depth_exceeds(value: Any, limit: int) -> bool:
    """Return whether a parsed JSON value nests more than ``limit`` arrays and objects
    deep (a scalar has depth 0, ``[]`` depth 1). Walks without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        if depth + 1 > limit:
            return True
        stack.extend((c, depth + 1) for c in v if isinstance(c, (list, dict)))
    return False


# ---- typed fields, as Go's decoder fills a struct ------------------------------------------
# restic decodes every document into Go structs: a field of the wrong JSON type, a negative
# or too large number for an unsigned field, or a malformed id fails the whole document. A
# null or absent field leaves the zero value. These helpers give our decoders the same rules;
# each raises FieldError naming the field, which the decoder maps to IntegrityError naming
# the file.

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


class FieldError(ValueError):
    """A document's field has the wrong JSON type or an out-of-range value. ``field`` is its
    path in the document (``packs[2].blobs[0].offset``), empty for the document itself."""

    def __init__(self, field: str, problem: str) -> None:
        # The path holds the document's own keys: an error message shows them escaped (one
        # line) and shortened.
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in field)
        if len(shown) > 120:
            shown = shown[:100] + "…" + shown[-19:]
        super().__init__(f"{shown}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


_TYPE_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
               list: "an array", dict: "an object", type(None): "null"}


def describe(value: Any) -> str:
    """Return a short description of a JSON value for an error message: its type, and for a
    scalar the value itself, shortened (never more than about 40 characters)."""
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (list, dict)) or value is None:
        return kind
    text = repr(value)
    return f"{kind} {text[:32] + '…' if len(text) > 32 else text}"


def as_object(value: Any, field: str) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object; raise FieldError otherwise."""
    if type(value) is not dict:
        raise FieldError(field, f"must be an object, not {describe(value)}")
    return value


def as_list(value: Any, field: str) -> list[Any]:
    """Return ``value`` as a list: null is empty; raise FieldError if it is not an array."""
    if value is None:
        return []
    if type(value) is not list:
        raise FieldError(field, f"must be an array, not {describe(value)}")
    return value


def as_str(value: Any, field: str) -> str:
    """Return ``value`` if it is a string (see :func:`go_text`), ``""`` for null; raise
    FieldError otherwise."""
    if value is None:
        return ""
    if type(value) is not str:
        raise FieldError(field, f"must be a string, not {describe(value)}")
    return go_text(value)


def as_strings(value: Any, field: str) -> list[str]:
    """Return an array of strings (null is empty; see :func:`go_text`); raise FieldError
    otherwise."""
    out = as_list(value, field)
    for i, v in enumerate(out):
        if type(v) is not str:
            raise FieldError(f"{field}[{i}]", f"must be a string, not {describe(v)}")
    return [go_text(v) for v in out]


def as_value(value: Any, field: str, max_depth: int) -> Any:
    """Return a JSON value of no fixed shape that is kept and written back (a snapshot's
    field restic does not know): nested at most ``max_depth`` levels, without NaN or
    infinite numbers (which JSON cannot hold), strings as :func:`go_text` reads them. Raise
    FieldError otherwise."""
    if depth_exceeds(value, max_depth):
        raise FieldError(field, f"nested deeper than {max_depth} levels")
    return _go_value(value, field)


def _go_value(value: Any, field: str) -> Any:
    # Recursion is bounded: as_value checked the depth first.
    if isinstance(value, str):
        return go_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(field, f"{value} is not a JSON number")
    if isinstance(value, list):
        return [_go_value(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {go_text(k): _go_value(v, f"{field}.{k}") for k, v in value.items()}
    return value


def as_int(value: Any, field: str, low: int, high: int) -> int:
    """Return ``value`` if it is an integer in ``low..high`` (0 for null); raise FieldError
    otherwise. A number with a fraction or exponent is refused, as Go refuses it for an
    integer field."""
    if value is None:
        value = 0
    if type(value) is not int:
        raise FieldError(field, f"must be an integer, not {describe(value)}")
    if not low <= value <= high:
        raise FieldError(field, f"{describe(value)} is out of range {low}..{high}")
    return value


def as_id(value: Any, field: str) -> bytes:
    """Return the 32 bytes of an id written as 64 hex digits; raise FieldError otherwise."""
    if type(value) is not str:
        raise FieldError(field, f"must be an id (64 hex digits), not {describe(value)}")
    if len(value) == 64 and value.isascii():
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) == 32:  # fromhex skips spaces
            return raw
    raise FieldError(field, f"must be an id (64 hex digits), not {describe(value)}")


def as_time(value: Any, field: str) -> str:
    """Return ``value`` if it is an RFC 3339 time as Go's ``time.Time`` reads it (within the
    years :func:`~airflow_backup.repository.timefmt.parse_strict` allows); raise FieldError
    otherwise. The text is returned as it was, to be written back unchanged."""
    if type(value) is not str:
        raise FieldError(field, f"must be an RFC 3339 time, not {describe(value)}")
    try:
        parse_strict(value)
    except ValueError as exc:
        problem = str(exc).split(":")[0]
        raise FieldError(field, f"{problem}: {describe(value)}") from None
    return value
