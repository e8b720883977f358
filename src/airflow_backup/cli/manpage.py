"""Man pages (roff, ``man(7)`` macros) written from the parser's description by
``airflow-backup generate --man DIR``: ``airflow-backup.1`` and one ``airflow-backup-VERB.1``
per verb, named as restic names its pages (``restic-backup.1``).

A verb's page has its synopsis, description, its own options, the global options it
inherits, the sub-commands (``pg``) with their options, examples and the exit status; the
text is the parser's, so ``--help`` and the page never disagree. No date is written, so the
pages are the same on every run (restic fixes its date for the same reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_backup.cli.parser_model import Command, Flag, Positional

__all__ = ["man_pages", "roff_escape"]

PROG = "airflow-backup"


def roff_escape(text: str) -> str:
    """Return ``text`` safe inside a roff line: backslashes and hyphens escaped, and a line
    that would start with a control character (``.`` or ``'``) protected."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join(("\\&" + ln) if ln.startswith((".", "'")) else ln
                     for ln in text.split("\n"))


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def _flag_item(flag: Flag) -> list[str]:
    names = ", ".join(f"\\fB{roff_escape(n)}\\fR" for n in flag.names)
    if flag.takes_value:
        value = ("{" + ",".join(flag.choices) + "}") if flag.choices else flag.metavar
        names += f" \\fI{roff_escape(value)}\\fR"
    return [".TP", names, roff_escape(flag.help or "(no description)")]


def _positional_item(p: Positional) -> list[str]:
    name = ("{" + ",".join(p.choices) + "}") if p.choices else p.name
    return [".TP", f"\\fI{roff_escape(name)}\\fR", roff_escape(p.help or "")]


def _synopsis(cmd: Command) -> str:
    """Return restic's kind of synopsis: ``[flags]``, then the positionals (or COMMAND)."""
    words = ["[OPTIONS]"]
    for p in cmd.positionals:
        name = f"\\fI{roff_escape(p.name)}\\fR"
        words.append({"?": f"[{name}]", "*": f"[{name} ...]", "+": f"{name} [{name} ...]"}
                     .get(str(p.nargs), name))
    if cmd.subcommands:
        words.append("\\fICOMMAND\\fR [OPTIONS]")
    return f"\\fB{roff_escape(' '.join((PROG, *cmd.path)))}\\fR " + " ".join(words)


def _split_epilog(epilog: str) -> tuple[list[str], str]:
    """Return the examples and the rest of a verb's epilog (``examples:`` lines first, as
    :func:`~airflow_backup.cli.main.build_parser` writes it)."""
    if not epilog.startswith("examples:"):
        return [], epilog
    block, _, rest = epilog.partition("\n\n")
    return [ln.strip() for ln in block.splitlines()[1:] if ln.strip()], rest


def _options(title: str, flags: Sequence[Flag]) -> list[str]:
    if not flags:
        return []
    return [f".SH {title}", *(ln for f in flags for ln in _flag_item(f))]


def _command_page(cmd: Command, examples: Sequence[str], notes: str, exit_status: str,
                  version: str) -> str:
    page = "-".join((PROG, *cmd.path))
    title = page.upper()
    summary = cmd.summary or (cmd.description.split(".")[0] if cmd.description else PROG)
    lines = [f'.TH "{roff_escape(title)}" "1" "" "{PROG} {version}" "{PROG} manual"',
             ".SH NAME", f"{roff_escape(page)} \\- {roff_escape(summary)}",
             ".SH SYNOPSIS", _synopsis(cmd)]
    if cmd.description:
        lines.append(".SH DESCRIPTION")
        for i, para in enumerate(_paragraphs(cmd.description)):
            lines += ([".PP"] if i else []) + [roff_escape(para)]
    if cmd.positionals:
        lines += [".SH ARGUMENTS", *(ln for p in cmd.positionals for ln in _positional_item(p))]
    lines += _options("OPTIONS", [f for f in cmd.flags if not f.inherited])
    lines += _options("GLOBAL OPTIONS", [f for f in cmd.flags if f.inherited])
    if cmd.subcommands and not cmd.path:  # the program: each verb has its own page
        lines.append(".SH COMMANDS")
        for sub in cmd.subcommands:
            lines += [".TP", f"\\fB{roff_escape(sub.name)}\\fR",
                      roff_escape(sub.summary or "") + " (see \\fB"
                      + roff_escape(f"{PROG}-{sub.name}") + "\\fR(1))"]
    elif cmd.subcommands:
        lines.append(".SH COMMANDS")
        for sub in cmd.subcommands:
            lines += [".SS " + roff_escape(" ".join((PROG, *sub.path))),
                      roff_escape(sub.summary or "")]
            if sub.description and sub.description != sub.summary:
                lines += [".PP", roff_escape(" ".join(sub.description.split()))]
            lines += [".PP", "Usage: " + _synopsis(sub)]
            lines += [ln for p in sub.positionals for ln in _positional_item(p)]
            lines += [ln for f in sub.flags if not f.inherited for ln in _flag_item(f)]
    if examples:
        lines.append(".SH EXAMPLES")
        for example in examples:
            lines += [".PP", ".nf", "\\f(CW" + roff_escape(example) + "\\fR", ".fi"]
    if notes:
        lines.append(".SH NOTES")
        for i, para in enumerate(_paragraphs(notes)):
            lines += ([".PP"] if i else []) + [roff_escape(para)]
    status = " ".join(exit_status.split())
    if status:
        status = status.removeprefix("exit status:").strip()
        lines += [".SH EXIT STATUS", roff_escape(status[:1].upper() + status[1:])]
    see_also = ([f"\\fB{roff_escape(PROG + '-' + s.name)}\\fR(1)" for s in cmd.subcommands]
                if not cmd.path else [f"\\fB{roff_escape(PROG)}\\fR(1)"])
    if see_also:
        lines += [".SH SEE ALSO", ", ".join(see_also)]
    return "\n".join(lines) + "\n"


def man_pages(root: Command, examples: Mapping[str, Sequence[str]], exit_status: str,
              version: str) -> dict[str, str]:
    """Return ``{file name: roff}``: the program's page and one page per verb. ``examples``
    maps verbs to example command lines; ``exit_status`` is the program's exit-status text
    (a verb's own epilog text, when it has one, goes into a NOTES section)."""
    pages = {f"{PROG}.1": _command_page(root, [], "", exit_status, version)}
    for verb in root.subcommands:
        from_epilog, rest = _split_epilog(verb.epilog)
        shown = list(examples.get(verb.name, from_epilog))
        status, notes = exit_status, []
        # A verb's own epilog may hold its own examples and exit status: put them where
        # they belong, the rest under NOTES.
        for para in rest.strip().split("\n\n"):
            head = para.lstrip().lower()
            if head.startswith("examples:"):
                shown += [ln.strip() for ln in para.strip().splitlines()[1:]
                          if ln.strip() and ln.strip() not in shown]
            elif head.startswith("exit status:"):
                status = para
            elif para.strip() and para.split() != exit_status.split():
                notes.append(para)
        pages[f"{PROG}-{verb.name}.1"] = _command_page(verb, shown, "\n\n".join(notes),
                                                       status, version)
    return pages
