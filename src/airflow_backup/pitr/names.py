"""WAL file names and LSNs, as PostgreSQL spells them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_backup.errors import ConfigError

__all__ = ["WalName", "format_lsn", "parse_lsn", "parse_wal_name"]

_SEGMENT = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
_PARTIAL = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.partial$")
_BACKUP = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}\.[0-9A-F]{8}\.backup$")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


@dataclass(frozen=True, slots=True)
class WalName:
    """A WAL archive file name: ``kind`` is segment, history, partial or backup."""

    name: str
    kind: str
    timeline: int

    @property
    def timeline_hex(self) -> str:
        """Return the timeline as the 8 hex digits of the file name."""
        return f"{self.timeline:08X}"


def parse_wal_name(name: str) -> WalName:
    """Given a file name as PostgreSQL archives it (``%f``), return what it is. Raise
    ConfigError if it is not a WAL segment, ``.history``, ``.partial`` or ``.backup`` file."""
    for kind, pattern in (("segment", _SEGMENT), ("history", _HISTORY),
                          ("partial", _PARTIAL), ("backup", _BACKUP)):
        m = pattern.match(name)
        if m:
            return WalName(name, kind, int(m[1], 16))
    raise ConfigError(f"{name!r} is not a WAL file name (a segment such as "
                      "000000010000000000000001, or a .history, .partial or .backup file)")


def parse_lsn(text: str) -> int:
    """Return the LSN ``X/Y`` as an integer. Raise ConfigError if malformed."""
    m = _LSN.match(text.strip())
    if not m:
        raise ConfigError(f"{text!r} is not an LSN (like 0/16B3740)")
    return (int(m[1], 16) << 32) | int(m[2], 16)


def format_lsn(value: int) -> str:
    """Return the integer LSN ``value`` as PostgreSQL prints it (``X/Y``)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
