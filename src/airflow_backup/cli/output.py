"""Terminal output: human text or JSON lines, chosen once by --json."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from airflow_backup.repository.gojson import go_text

__all__ = ["Printer", "configure_logging"]


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"message_type": "log", "level": record.levelname.lower(),
                           "logger": record.name, "message": record.getMessage()})


def configure_logging(json_mode: bool, quiet: bool, verbose: int, debug: bool) -> None:
    """Send the engine's log records (retries, fallbacks, cache) to stderr: warnings by
    default, errors only with --quiet, info with -v, debug with --debug; JSON lines with
    --json."""
    logger = logging.getLogger("airflow_backup")
    for h in list(logger.handlers):
        if getattr(h, "_airflow_backup_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._airflow_backup_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(_JsonLines() if json_mode else logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO if verbose
                    else logging.ERROR if quiet else logging.WARNING)


class Printer:
    """Writes results to stdout and messages to stderr."""

    def __init__(self, json_mode: bool, quiet: bool = False, verbose: int = 0) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose

    def json(self, obj: Any) -> None:
        """Write one JSON document as a line on stdout. Text that is not valid UTF-8 (a
        non-UTF-8 file name) is written as Go's encoder writes it: each invalid byte as
        U+FFFD, as restic prints such names."""
        sys.stdout.write(go_text(json.dumps(obj, ensure_ascii=False)) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "") -> None:
        """Write a line of human output on stdout (suppressed in JSON and quiet modes)."""
        if not self.json_mode and not self.quiet:
            sys.stdout.write(text + "\n")

    def result(self, text: str) -> None:
        """Write a line that is the command's result (shown even with --quiet)."""
        if not self.json_mode:
            sys.stdout.write(text + "\n")

    def info(self, text: str) -> None:
        """Write a verbose progress message on stderr (only with -v)."""
        if self.verbose and not self.json_mode:
            sys.stderr.write(text + "\n")

    def warn(self, text: str) -> None:
        """Write a warning on stderr."""
        sys.stderr.write(text + "\n")

    def table(self, headers: list[str], rows: list[list[str]], *,
              blank_between_records: bool = False) -> None:
        """Write an aligned table on stdout. A row whose first cell is empty continues the
        record above it; ``blank_between_records`` puts an empty line between records (as
        restic does when a snapshot spans several lines)."""
        widths = [len(h) for h in headers]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        self.result(fmt.format(*headers).rstrip())
        self.result("-" * (sum(widths) + 2 * (len(widths) - 1)))
        for i, row in enumerate(rows):
            if blank_between_records and i and row[0]:
                self.result("")
            self.result(fmt.format(*row).rstrip())
        self.result("-" * (sum(widths) + 2 * (len(widths) - 1)))


def duration(seconds: float) -> str:
    """Return a duration as restic's ui.FormatDuration writes it (``0:05``, ``1:02:03``)."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, sec = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def human_size(n: float) -> str:
    """Return ``n`` bytes in restic's human style (KiB, MiB, …)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3f} {unit}"
        n /= 1024
    return f"{n:.3f} TiB"
