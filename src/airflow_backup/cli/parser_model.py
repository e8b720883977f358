"""What the argparse parser accepts, as plain data: the source of shell completion and man
pages (``airflow-backup generate``), so that neither can go stale.

:func:`describe_parser` walks the parser :func:`~airflow_backup.cli.main.build_parser`
builds: the top-level flags, every verb (and the sub-commands of verbs such as ``key``), each
with its flags, positionals and help. A flag that the top-level parser has too is marked
``inherited``: it is a global option every verb accepts (restic's "global flags").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["Command", "Flag", "Positional", "describe_parser"]


@dataclass(frozen=True, slots=True)
class Flag:
    """An option: its names (short first), whether it takes a value, its value's name and
    choices, its help, whether it may repeat, and whether it is a global option."""

    names: tuple[str, ...]
    takes_value: bool
    metavar: str
    choices: tuple[str, ...]
    help: str
    repeatable: bool
    inherited: bool


@dataclass(frozen=True, slots=True)
class Positional:
    """A positional argument: its name, help, choices and how many it takes (argparse's
    ``nargs``: None for one, ``?``, ``*``, ``+`` or a number)."""

    name: str
    help: str
    choices: tuple[str, ...]
    nargs: str | int | None


@dataclass(frozen=True, slots=True)
class Command:
    """The program or one of its (sub-)commands."""

    path: tuple[str, ...]  # () for the program, ("key", "add") for a sub-command
    summary: str           # the one line of the verb list
    description: str
    epilog: str
    usage: str
    flags: tuple[Flag, ...]
    positionals: tuple[Positional, ...]
    subcommands: tuple[Command, ...]
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Return the command's name (the last word of its path; "" for the program)."""
        return self.path[-1] if self.path else ""

    def walk(self) -> list[Command]:
        """Return this command and every command below it, depth first."""
        return [self, *(c for sub in self.subcommands for c in sub.walk())]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = parser._get_formatter()
    text: str = formatter._expand_help(action)
    return " ".join(text.split())


def _choices(action: argparse.Action) -> tuple[str, ...]:
    if action.choices is None or isinstance(action, argparse._SubParsersAction):
        return ()
    return tuple(str(c) for c in action.choices)


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if isinstance(action.metavar, tuple) and action.metavar:
        return " ".join(str(m) for m in action.metavar)
    return action.dest.upper()


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _describe(parser: argparse.ArgumentParser, path: tuple[str, ...], summary: str,
              global_names: frozenset[str], aliases: tuple[str, ...] = ()) -> Command:
    flags: list[Flag] = []
    positionals: list[Positional] = []
    subcommands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: (a.help or "").replace("%%", "%")
                     for a in action._choices_actions}
            seen: dict[int, list[str]] = {}
            for name, sub in action.choices.items():
                seen.setdefault(id(sub), []).append(name)
            for name, sub in action.choices.items():
                names = seen[id(sub)]
                if name != names[0]:
                    continue  # an alias: described with its command
                subcommands.append(_describe(sub, (*path, name), str(helps.get(name, "")),
                                             global_names, tuple(names[1:])))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            flag_names = tuple(sorted(action.option_strings,
                                      key=lambda s: (s.startswith("--"), s)))
            flags.append(Flag(
                names=flag_names, takes_value=_takes_value(action), metavar=_metavar(action),
                choices=_choices(action), help=_help(parser, action),
                repeatable=isinstance(action, argparse._AppendAction | argparse._CountAction),
                inherited=bool(path) and bool(set(flag_names) & global_names)))
        elif action.help != argparse.SUPPRESS:
            nargs = action.nargs if isinstance(action.nargs, int | str) else None
            name = action.metavar if isinstance(action.metavar, str) else action.dest
            positionals.append(Positional(name=name, help=_help(parser, action),
                                          choices=_choices(action), nargs=nargs))
    usage = " ".join(parser.format_usage().split())
    usage = usage.removeprefix("usage: ")
    return Command(path=path, summary=summary, description=parser.description or "",
                   epilog=parser.epilog or "", usage=usage, flags=tuple(flags),
                   positionals=tuple(positionals), subcommands=tuple(subcommands),
                   aliases=aliases)


def describe_parser(parser: argparse.ArgumentParser) -> Command:
    """Given the program's parser, return its commands, flags and help as a Command tree."""
    global_names = frozenset(s for a in parser._actions for s in a.option_strings
                             if s not in ("--version", "-h", "--help"))
    return _describe(parser, (), parser.description or "", global_names)
