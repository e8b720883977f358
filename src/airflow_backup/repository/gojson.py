"""JSON encoding that matches Go's ``encoding/json`` byte for byte.

restic hashes tree JSON to get tree ids; producing the same bytes as restic for the same tree
lets trees deduplicate across implementations. Go escapes ``<``, ``>`` and ``&`` as
``\\u003c``/``\\u003e``/``\\u0026``, escapes U+2028/U+2029, writes no spaces, and keeps other
non-ASCII characters as UTF-8.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps", "go_quote_name", "go_unquote_name", "loads"]

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
    accepts or rejects it exactly as before. One difference remains: an integer outside
    Go's int64/uint64 range comes back as a float, which no field restic writes can hold.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
