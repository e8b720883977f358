"""``generate``: shell completion scripts and man pages, written from the parser itself (as
restic's ``generate``: ``--bash-completion FILE``, ``--zsh-completion FILE``,
``--fish-completion FILE``, ``-`` for stdout, and ``--man DIR``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_backup.cli.context import GlobalOptions
from airflow_backup.cli.output import Printer
from airflow_backup.errors import ConfigError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``generate`` parser."""
    p = sub.add_parser("generate", help="write shell completion files and man pages")
    p.add_argument("--bash-completion", default="", metavar="FILE",
                   help="write the bash completion file ('-' for stdout)")
    p.add_argument("--zsh-completion", default="", metavar="FILE",
                   help="write the zsh completion file ('-' for stdout)")
    p.add_argument("--fish-completion", default="", metavar="FILE",
                   help="write the fish completion file ('-' for stdout)")
    p.add_argument("--man", default="", metavar="DIR",
                   help="write man pages (airflow-backup.1, airflow-backup-VERB.1) to DIR")
    p.set_defaults(func=run)


def _write(path: str, text: str, what: str, say: Callable[[str], None]) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    say(f"writing {what} to {path}")
    Path(path).write_text(text, encoding="utf-8")


def run(args: argparse.Namespace, gopts: GlobalOptions, out: Printer) -> int:
    """Write what the flags ask for; with no flag, a usage error (as restic's generate)."""
    # Imported here: only this command needs them. The parser comes with the arguments
    # (main.build_parser sets ``root_parser``), as main imports every command module.
    from airflow_backup import __version__
    from airflow_backup.cli.completion import bash_completion, fish_completion, zsh_completion
    from airflow_backup.cli.help_texts import VERB_HELP
    from airflow_backup.cli.manpage import man_pages
    from airflow_backup.cli.parser_model import describe_parser

    parser: argparse.ArgumentParser = args.root_parser

    wanted: list[tuple[str, str, Callable[[Any], str]]] = [
        (args.bash_completion, "bash completion file", bash_completion),
        (args.zsh_completion, "zsh completion file", zsh_completion),
        (args.fish_completion, "fish completion file", fish_completion),
    ]
    if not args.man and not any(path for path, _, _ in wanted):
        raise ConfigError("nothing to do: give --bash-completion, --zsh-completion, "
                          "--fish-completion and/or --man")
    if sum(path == "-" for path, _, _ in wanted) > 1:
        raise ConfigError("only one completion file can go to stdout ('-')")
    # With a script on stdout, the "writing …" lines would end up inside it: leave them out.
    say = (lambda _: None) if any(path == "-" for path, _, _ in wanted) else out.line
    tree = describe_parser(parser)
    for path, what, make in wanted:
        if path:
            _write(path, make(tree), what, say)
    if args.man:
        if not os.path.isdir(args.man):
            raise ConfigError(f"--man: {args.man} is not a directory")
        say(f"writing man pages to directory {args.man}")
        examples = {verb: examples for verb, (_, examples) in VERB_HELP.items()}
        for name, text in man_pages(tree, examples, parser.epilog or "", __version__).items():
            Path(args.man, name).write_text(text, encoding="utf-8")
    return 0
