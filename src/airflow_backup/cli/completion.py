"""Shell completion scripts for bash, zsh and fish, written from the parser's description
(:mod:`airflow_backup.cli.parser_model`) by ``airflow-backup generate``.

Every script completes the verbs (and sub-commands such as ``pg archive-wal``), the global
flags before or after the verb, each verb's own flags, the choices of a flag or positional
that has them, and file names elsewhere. The bash script needs nothing but bash itself (not
the bash-completion package); its entry point is ``_airflow_backup``.
"""

from __future__ import annotations

from airflow_backup.cli.parser_model import Command, Flag

__all__ = ["bash_completion", "fish_completion", "zsh_completion"]

PROG = "airflow-backup"
HEADER = f"# {{shell}} completion for {PROG} (written by `{PROG} generate`; do not edit)\n"


def _words(items: list[str]) -> str:
    """Words for a shell list; the parser's names and choices never need quoting, anything
    that would (spaces, quotes) is left out rather than risk a broken script."""
    return " ".join(w for w in items if w and all(c.isalnum() or c in "-_./@+,%=" for c in w))


def _key(cmd: Command) -> str:
    return " ".join(cmd.path)


def _all_names(cmd: Command) -> list[str]:
    return [n for sub in cmd.subcommands for n in (sub.name, *sub.aliases)]


# --- bash -----------------------------------------------------------------------------------

_BASH_MAIN = r"""
_airflow_backup_has() {  # is word $2 in list $1?
    [[ " $1 " == *" $2 "* ]]
}

_airflow_backup() {
    local cur prev word path="" npos=0 i=1 subs choices values
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev=""
    if (( COMP_CWORD > 0 )); then prev="${COMP_WORDS[COMP_CWORD-1]}"; fi
    # Walk the words before the cursor: flags (skipping their values), then sub-commands.
    while (( i < COMP_CWORD )); do
        word="${COMP_WORDS[i]}"
        if [[ "$word" == -* ]]; then
            values="$(_airflow_backup_value_flags "$path")"
            if [[ "$word" != *=* ]] && _airflow_backup_has "$values" "$word"; then
                i=$((i + 1))
            fi
        elif _airflow_backup_has "$(_airflow_backup_subcommands "$path")" "$word"; then
            path="${path:+$path }$(_airflow_backup_canonical "$path" "$word")"
            npos=0
        else
            npos=$((npos + 1))
        fi
        i=$((i + 1))
    done
    values="$(_airflow_backup_value_flags "$path")"
    if [[ "$prev" == -* ]] && _airflow_backup_has "$values" "$prev"; then
        choices="$(_airflow_backup_choices "$path" "$prev")"
        if [[ -n "$choices" ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_airflow_backup_flags "$path")" -- "$cur")
        return 0
    fi
    subs="$(_airflow_backup_subcommands "$path")"
    if [[ -n "$subs" ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
        return 0
    fi
    choices="$(_airflow_backup_choices "$path" "@$npos")"
    if [[ -n "$choices" ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}

complete -o default -F _airflow_backup airflow-backup
"""


def _bash_case(function: str, arms: list[tuple[str, str]], args: str = '"$1"') -> str:
    lines = [f"{function}() {{", f"    case {args} in"]
    lines += [f"        \"{pattern}\") echo '{value}' ;;" for pattern, value in arms if value]
    lines += ["    esac", "}", ""]
    return "\n".join(lines)


def bash_completion(root: Command) -> str:
    """Return a bash completion script for the command tree ``root``."""
    commands = root.walk()
    subs = [(_key(c), _words(_all_names(c))) for c in commands]
    canonical = [(f"{_key(c)}|{alias}", sub.name)
                 for c in commands for sub in c.subcommands for alias in sub.aliases]
    flags = [(_key(c), _words([n for f in c.flags for n in f.names])) for c in commands]
    value_flags = [(_key(c), _words([n for f in c.flags if f.takes_value for n in f.names]))
                   for c in commands]
    choices = [(f"{_key(c)}|{n}", _words(list(f.choices)))
               for c in commands for f in c.flags if f.choices for n in f.names]
    choices += [(f"{_key(c)}|@{i}", _words(list(p.choices)))
                for c in commands for i, p in enumerate(c.positionals) if p.choices]
    return "".join([
        HEADER.format(shell="bash"), "\n",
        _bash_case("_airflow_backup_subcommands", subs),
        ("_airflow_backup_canonical() {\n    case \"$1|$2\" in\n"
         + "".join(f"        \"{k}\") echo '{v}' ;;\n" for k, v in canonical)
         + "        *) echo \"$2\" ;;\n    esac\n}\n\n"),
        _bash_case("_airflow_backup_flags", flags),
        _bash_case("_airflow_backup_value_flags", value_flags),
        _bash_case("_airflow_backup_choices", choices, '"$1|$2"'),
        _BASH_MAIN.lstrip("\n"),
    ])


# --- zsh ------------------------------------------------------------------------------------

def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_help(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
            .replace(":", "\\:"))


def _zsh_flag_specs(flag: Flag) -> list[str]:
    action = ""
    if flag.takes_value:
        values = f"({_words(list(flag.choices))})" if flag.choices else "_files"
        action = f":{_zsh_help(flag.metavar)}:{values}"
    repeat = "*" if flag.repeatable else ""
    exclude = f"({' '.join(flag.names)})" if len(flag.names) > 1 and not repeat else ""
    return [_zsh_quote(f"{exclude}{repeat}{name}[{_zsh_help(flag.help)}]{action}")
            for name in flag.names]


def _zsh_function(cmd: Command) -> str:
    name = "_airflow_backup" + "".join(f"_{p.replace('-', '_')}" for p in cmd.path)
    specs = [s for f in cmd.flags for s in _zsh_flag_specs(f)]
    lines = [f"{name}() {{", "    local context state state_descr line", "    typeset -A opt_args"]
    if cmd.subcommands:
        specs += ["'1: :->command'", "'*:: :->args'"]
    else:
        for i, p in enumerate(cmd.positionals, start=1):
            values = f"({_words(list(p.choices))})" if p.choices else "_files"
            position = "*" if p.nargs in ("*", "+") else str(i)
            specs.append(_zsh_quote(f"{position}:{_zsh_help(p.name)}:{values}"))
            if position == "*":
                break
    lines.append("    _arguments -s -S \\\n        " + " \\\n        ".join(specs))
    if cmd.subcommands:
        described = [f"{_zsh_help(n)}:{sub.summary}" for sub in cmd.subcommands
                     for n in (sub.name, *sub.aliases)]
        lines += ["    case $state in",
                  "        command)",
                  "            local -a commands",
                  "            commands=(",
                  *(f"                {_zsh_quote(d)}" for d in described),
                  "            )",
                  "            _describe -t commands 'command' commands",
                  "            ;;",
                  "        args)",
                  "            case $words[1] in"]
        for sub in cmd.subcommands:
            names = "|".join((sub.name, *sub.aliases))
            target = "_airflow_backup" + "".join(f"_{p.replace('-', '_')}" for p in sub.path)
            lines.append(f"                {names}) {target} ;;")
        lines += ["            esac", "            ;;", "    esac"]
    lines += ["}", ""]
    return "\n".join(lines)


def zsh_completion(root: Command) -> str:
    """Return a zsh completion script (``#compdef``; put it on $fpath as ``_airflow-backup``,
    or ``source`` it after ``compinit``)."""
    return "".join([
        f"#compdef {PROG}\n", HEADER.format(shell="zsh"), "\n",
        *(_zsh_function(c) + "\n" for c in root.walk()),
        'if [[ "$funcstack[1]" == "_airflow-backup" ]]; then\n'
        '    _airflow_backup "$@"\n'
        "else\n"
        f"    compdef _airflow_backup {PROG}\n"
        "fi\n",
    ])


# --- fish -----------------------------------------------------------------------------------

def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_condition(cmd: Command, root: Command) -> str:
    """Return the fish condition "the words so far name ``cmd``"."""
    if not cmd.path:
        return "__fish_use_subcommand"
    parts = []
    node = root
    for word in cmd.path:
        sub = next(s for s in node.subcommands if s.name == word)
        parts.append("__fish_seen_subcommand_from " + " ".join((sub.name, *sub.aliases)))
        node = sub
    if cmd.subcommands:  # its own sub-command not given yet
        parts.append("not __fish_seen_subcommand_from " + _words(_all_names(cmd)))
    return "; and ".join(parts)


def _fish_flag(flag: Flag) -> str:
    out = []
    for name in flag.names:
        if name.startswith("--"):
            out.append(f"-l {name[2:]}")
        elif len(name) == 2:
            out.append(f"-s {name[1:]}")
        else:
            out.append(f"-o {name[1:]}")
    if flag.takes_value:
        out.append(f"-x -a {_fish_quote(_words(list(flag.choices)))}" if flag.choices
                   else "-r -F")
    if flag.help:
        out.append(f"-d {_fish_quote(flag.help)}")
    return " ".join(out)


def fish_completion(root: Command) -> str:
    """Return a fish completion script (for ~/.config/fish/completions/airflow-backup.fish)."""
    c = f"complete -c {PROG}"
    lines = [HEADER.format(shell="fish").rstrip("\n"), f"{c} -f"]
    for flag in root.flags:  # global: anywhere
        lines.append(f"{c} {_fish_flag(flag)}")
    for cmd in root.walk():
        cond = _fish_quote(_fish_condition(cmd, root))
        for sub in cmd.subcommands:
            for name in (sub.name, *sub.aliases):
                lines.append(f"{c} -n {cond} -a {name} -d {_fish_quote(sub.summary)}")
        if not cmd.path:
            continue
        own = _fish_quote(_fish_condition(cmd, root).removesuffix(
            "; and not __fish_seen_subcommand_from " + _words(_all_names(cmd))))
        for flag in cmd.flags:
            if not flag.inherited:
                lines.append(f"{c} -n {own} {_fish_flag(flag)}")
        if not cmd.subcommands:
            choices = [x for p in cmd.positionals for x in p.choices]
            lines.append(f"{c} -n {cond} -a {_fish_quote(_words(choices))}" if choices
                         else f"{c} -n {cond} -F")
    return "\n".join(lines) + "\n"
