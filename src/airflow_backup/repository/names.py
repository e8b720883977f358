"""Names from the repository as text for messages: readable, unambiguous, never a Python
repr. Every layer that names a file in a message (check, verify, restore) uses this."""

from __future__ import annotations

__all__ = ["show_name"]


def show_name(raw: bytes) -> str:
    """Return ``raw`` (a node name, or a snapshot path) as printable text.

    Valid UTF-8 is shown as is; each byte that is not, and each control or other
    non-printable character, is shown as ``\\xNN`` (``\\uNNNN`` above U+00FF), and a
    backslash as ``\\\\``, so two different names never look alike and no name can move the
    cursor or forge a line of output. Never a Python repr (``b'...'``).
    """
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)
