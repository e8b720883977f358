"""The ``airflow-backup`` command: restic-like sub-commands over the engine.

Every command is a module in :mod:`airflow_backup.cli.commands` with ``register(subparsers)``
and ``run(args, gopts, out) -> exit status``. Errors are mapped to exit codes here, once.

EXIT STATUS: 0 ok, 1 error, 2 malformed jobs config file (nothing executed), 3 partial
(a backup saved without some unreadable or missing files; a restore that skipped damaged or
unsafe items), 10 no repository, 11 repository locked, 12 wrong password, 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import difflib
import gc
import json
import os
import re
import signal
import sys
import textwrap
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn

from airflow_backup import __version__
from airflow_backup.cli.commands import COMMAND_MODULES, command_module
from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.help_texts import VERB_HELP
from airflow_backup.cli.output import Printer, configure_logging
from airflow_backup.errors import EXIT_ERROR, BackupError, InvalidConfigFile, exit_code_for

__all__ = ["build_parser", "main"]

EPILOG = """exit status: 0 ok, 1 error, 2 malformed config file, 3 partial (backup: some
source files unreadable or missing; restore: damaged or unsafe items skipped, each named),
10 no repository, 11 repository locked, 12 wrong password, 130 interrupted"""


#: Whether the command line being parsed asks for --json (set by :func:`main` first, since a
#: usage error can come before the option itself is parsed).
_JSON_ERRORS = [False]


class _Parser(argparse.ArgumentParser):
    """argparse with restic's convention: a usage error is one line and exit status 1 (under
    ``--json`` restic's ``exit_error`` message)."""

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see '{self.prog} --help')"
        typo = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$",
                        message)
        if typo:  # one line naming the closest choice, not the whole list
            choices = re.findall(r"'([^']*)'", typo[3])
            close = difflib.get_close_matches(typo[2], choices, n=1, cutoff=0.5)
            what = "command" if typo[1] == "COMMAND" else "choice"
            text = (f"unknown {what} {typo[2]!r}"
                    + (f": did you mean {close[0]!r}?" if close else
                       f" (choose from {', '.join(choices)})")
                    + f" (see '{self.prog} --help')")
        if _JSON_ERRORS[0]:  # scripts parse stderr too: an exit_error message
            self.exit(EXIT_ERROR, json.dumps({"message_type": "exit_error", "code": EXIT_ERROR,
                                              "message": text}) + "\n")
        self.exit(EXIT_ERROR, f"Fatal: {text}\n")


def _key_value(text: str) -> str:
    """Accept ``-o KEY=VALUE`` only: a bare value (``-o RUNBOOK.md``) is a usage error, never
    silently ignored."""
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (-o sets a storage "
                                         "option; use --output for a file)")
    return text


def _kib_per_second(text: str) -> int:
    """Accept a rate in KiB/s as restic does: a whole number, 0 for unlimited."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: a whole number of KiB/s "
                                         "(0 is unlimited)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must not be negative")
    return value


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("-r", "--repo", default=d(""),
                        help="repository location (env AIRFLOW_BACKUP_REPOSITORY)")
    parser.add_argument("--password-file", default=d(""),
                        help="read the repository password from a file")
    parser.add_argument("--key-hint", default=d(""), help="key id to try first")
    parser.add_argument("--json", action="store_true", default=d(False),
                        help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", default=d(False),
                        help="print only results")
    parser.add_argument("-v", "--verbose", action="count", default=d(0), help="more output")
    parser.add_argument("--debug", action="store_true", default=d(False),
                        help="show tracebacks on errors")
    parser.add_argument("--retry-lock", type=float, default=d(0.0), metavar="SECONDS",
                        help="wait this long for a conflicting lock to go away")
    parser.add_argument("-o", "--option", action="append", default=d([]), metavar="KEY=VALUE",
                        type=_key_value,
                        help="storage option, e.g. retry_attempts=5, retry_max_time=60, "
                             "retry_base_delay=0.5, retry_max_delay=30 (repeatable)")
    parser.add_argument("--no-cache", action="store_true", default=d(False),
                        help="do not use the local cache (metadata of remote "
                             "repositories, directories known from the last backup)")
    parser.add_argument("--no-lock", action="store_true", default=d(False),
                        help="do not lock the repository (restic's --no-lock): for commands "
                             "that only read, on read-only media; commands that change the "
                             "repository refuse it")
    parser.add_argument("--cache-dir", default=d(""), metavar="DIR",
                        help="metadata cache directory (env AIRFLOW_BACKUP_CACHE_DIR; "
                             "default ~/.cache/airflow-backup)")
    parser.add_argument("--limit-upload", type=_kib_per_second, default=d(0), metavar="KiB/s",
                        help="limit uploads to a maximum rate in KiB/s (default: unlimited)")
    parser.add_argument("--limit-download", type=_kib_per_second, default=d(0),
                        metavar="KiB/s",
                        help="limit downloads to a maximum rate in KiB/s (default: unlimited)")


#: Global options that take a value (the next word, or after "=").
_VALUED = frozenset({"-r", "--repo", "--password-file", "--key-hint", "--retry-lock", "-o",
                     "--option", "--cache-dir", "--limit-upload", "--limit-download"})
_FLAGS = frozenset({"--json", "-q", "--quiet", "--verbose", "--debug", "--no-cache",
                    "--no-lock"})


def command_of(argv: Sequence[str]) -> str | None:
    """Return the sub-command a command line runs, if it is certain without the full
    parser: the first word after global options spelt out in full (``-r X``, ``--repo=X``,
    ``-rX``, ``-v``/``-vv``, …). None for anything else (help, ``--version``, an abbreviated
    or unknown option, an unknown command, ``generate``, which describes every command):
    :func:`main` then builds the full parser, and parses exactly as before."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            if next(words, None) is None:
                return None
        elif not word.startswith("-"):
            return word if word in COMMAND_MODULES and word != "generate" else None
        elif not _whole_option(word):
            return None
    return None


def _whole_option(word: str) -> bool:
    """Return whether ``word`` is a global option with its value, if any, in it."""
    if word in _FLAGS or re.fullmatch(r"-v+", word):
        return True
    if word.startswith("--"):
        name, eq, _ = word.partition("=")
        return bool(eq) and name in _VALUED
    return word[:2] in ("-r", "-o") and len(word) > 2  # -rREPO, -oKEY=VALUE


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered, or with ``command``
    alone (only its module is imported: see :mod:`airflow_backup.cli.commands`). Raise
    KeyError for an unknown ``command``.

    Global options are accepted before or after the sub-command, as restic does.
    """
    parser = _Parser(
        prog="airflow-backup",
        description="Encrypted, deduplicated backups in restic's repository format.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"airflow-backup {__version__}")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)
    # A command that describes the whole program (``generate``) finds its parser here.
    parser.set_defaults(root_parser=parser)
    for name in [command] if command else COMMAND_MODULES:
        command_module(name).register(sub)
    for name, sub_parser in sub.choices.items():
        _add_global_options(sub_parser, suppress=True)
        description, examples = VERB_HELP[name]
        paragraphs = [description, *([sub_parser.description] if sub_parser.description
                                     else [])]
        sub_parser.description = "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)
        sub_parser.epilog = ("examples:\n" + "".join(f"  {e}\n" for e in examples) + "\n"
                             + (sub_parser.epilog or textwrap.fill(EPILOG, 88)))
        sub_parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _report(exc: BaseException, gopts: GlobalOptions) -> int:
    code = exit_code_for(exc)
    message = str(exc) or type(exc).__name__
    if not isinstance(exc, BackupError | KeyboardInterrupt):
        message = f"{type(exc).__name__}: {message}"
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    if gopts.debug or gopts.verbose > 1:
        traceback.print_exception(exc, file=sys.stderr)
    first_line = message.splitlines()[0] if message else ""
    if isinstance(exc, InvalidConfigFile):
        # One line per problem, each naming the file and the dotted path of the field.
        if gopts.json:
            sys.stderr.write(json.dumps({"message_type": "exit_error", "code": code,
                                         "message": first_line,
                                         "problems": exc.problems}) + "\n")
        else:
            sys.stderr.writelines(f"{exc.source}: {p}\n" for p in exc.problems)
        return code
    if gopts.json:
        sys.stderr.write(json.dumps({"message_type": "exit_error", "code": code,
                                     "message": first_line}) + "\n")
    else:
        sys.stderr.write(f"Fatal: {first_line}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (also used as the process exit code)."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_of(words))
    _JSON_ERRORS[0] = "--json" in words
    args = parser.parse_args(argv)
    gopts = GlobalOptions(
        repo=args.repo, password_file=args.password_file, key_hint=args.key_hint,
        json=args.json, verbose=args.verbose, quiet=args.quiet, debug=args.debug,
        retry_lock=args.retry_lock, options=list(args.option), no_cache=args.no_cache,
        cache_dir=args.cache_dir, no_lock=args.no_lock,
        limit_upload=args.limit_upload, limit_download=args.limit_download,
    )
    out = Printer(gopts.json, gopts.quiet, gopts.verbose)
    configure_logging(gopts.json, gopts.quiet, gopts.verbose, gopts.debug)
    try:
        status: int = args.func(args, gopts, out)
        return status
    except BrokenPipeError:
        # Output closed early (e.g. piped into head); do not add noise.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return EXIT_ERROR
    except (BackupError, KeyboardInterrupt, OSError, ValueError) as exc:
        return _report(exc, gopts)
    except Exception as exc:  # unexpected: still one line, traceback with --debug
        return _report(exc, gopts)


def _tune_allocator() -> None:
    """Keep peak memory near the working set. glibc gives each thread its own malloc arena
    and, after a large buffer is freed, raises its mmap threshold, so freed block and pack
    buffers linger in the heap. Two arenas and a fixed 1 MiB threshold return them at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold, m_arena_max = -3, -8
    libc.mallopt(m_arena_max, 2)
    libc.mallopt(m_mmap_threshold, 1 << 20)


def _tune_gc() -> None:
    """A backup allocates millions of small objects (nodes, ids) that live until their tree
    is written; with the default gen-0 threshold of 700 the cyclic GC rescans them thousands
    of times: 3.0 % of a 1 GiB backup's CPU in ``perf``, 1.7 % at 50,000."""
    gc.set_threshold(50_000, 20, 20)


def _exit(status: int) -> NoReturn:
    """End the process with ``status``. After a command, the interpreter's teardown (freeing
    every module and object, s3fs's HTTP session) took 0.1–0.3 s (issue 26). If nothing
    else can need it, this runs what the usual exit runs that has an effect (the ``atexit``
    handlers: logging's shutdown, weak-reference finalizers, a coverage tool's save; and
    flushing the output) and then ends the process at once (``os._exit``). Otherwise it
    exits as usual: when a thread of ours is still running (the usual exit waits for it),
    under a profiler or tracer (``python -m cProfile`` writes its figures after the
    program returns), when the output cannot be flushed (the usual exit reports it), or
    where ``atexit`` cannot be run by hand.

    Threads left to die with the process: daemon threads, and asyncio's executor threads
    (``asyncio_N``: name lookups the storage library's event loop hands off; idle once the
    command is done, and they never write)."""
    main_thread = threading.main_thread()
    busy = [t for t in threading.enumerate()
            if t is not main_thread and not t.daemon and not t.name.startswith("asyncio_")]
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if (busy or sys.getprofile() is not None or sys.gettrace() is not None
            or run_exit_handlers is None):
        sys.exit(status)
    run_exit_handlers()  # errors in handlers are printed, as at a usual exit
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # e.g. a closed pipe: let the usual exit report it
        sys.exit(status)
    os._exit(status)


def entrypoint() -> None:
    """Console-script entry point."""
    _tune_allocator()
    _tune_gc()
    _exit(main())


if __name__ == "__main__":
    entrypoint()
