"""Shell completion for bash, zsh and fish: static scripts generated from the argument parser.

``rolebroker completion bash`` prints a script made from ``build_parser``
itself, so a new command or option completes as soon as it exists. The
scripts know the commands, each command's options, which options take a
value, and what a value can be: a role name, ``text|json``, a shell, a file.
Role names come from ``rolebroker completion --list-roles``, which reads
only the profiles ``configure`` wrote into ``~/.aws/config``: no network,
no token, nothing a Tab press could wait for.

The parser is read through argparse's ``_actions`` and its subparsers'
``choices``: private names, but unchanged since Python 3.2, and this is the
only module that reads them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rolebroker.commands import Context

# What a value can be, by the option or positional that takes it.
ROLE_VALUES = ("--role", "ROLE")
FILE_VALUES = ("--token-file",)


class Spec:
    """One command (or the top level): its option flags, those that take a value, and positional values."""

    def __init__(self, name: str, help_text: str = "") -> None:
        self.name = name
        self.help = help_text
        self.flags: list[str] = []
        self.value_flags: dict[str, tuple[str, ...]] = {}  # flag -> fixed choices ("" choices: free text)
        self.positional: tuple[str, ...] = ()  # fixed words, or ("ROLE",) for role names
        self.subcommands: list[Spec] = []


def _choices(action: Any) -> tuple[str, ...]:
    return tuple(str(choice) for choice in action.choices) if action.choices else ()


def spec_of(parser: Any, name: str = "rolebroker", help_text: str = "") -> Spec:
    import argparse

    spec = Spec(name, help_text)
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            spec.subcommands = [spec_of(sub, word, helps.get(word, "")) for word, sub in action.choices.items()]
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            long = [flag for flag in action.option_strings if flag.startswith("--")]
            spec.flags += long
            if action.nargs != 0:
                for flag in long:
                    spec.value_flags[flag] = _choices(action)
        elif action.metavar == "ROLE":
            spec.positional = ("ROLE",)
        elif action.choices:
            spec.positional = _choices(action)
    return spec


def cmd_completion(ctx: Context) -> int:
    if ctx.opts.list_roles:
        ctx.out("".join(f"{name}\n" for name in configured_roles(ctx)))
        return 0
    from rolebroker.cli import build_parser
    from rolebroker.errors import UsageError

    if not ctx.opts.shell:
        raise UsageError("completion needs a shell: rolebroker completion bash|zsh|fish")
    spec = spec_of(build_parser(ctx.rt.stdout, ctx.rt.stderr))
    ctx.out(SCRIPTS[ctx.opts.shell](spec))
    return 0


def configured_roles(ctx: Context) -> list[str]:
    """The roles ``configure`` wrote profiles for: cheap to read, and what this person can use."""
    from rolebroker.profiles import managed_profiles, read_text

    try:
        return sorted(managed_profiles(read_text(ctx.settings.aws_config_path)))
    except Exception:  # a Tab press must never print an error
        return []


def _words(items: Any) -> str:
    return " ".join(sorted(set(items)))


def _all_value_flags(spec: Spec) -> set[str]:
    flags = set(spec.value_flags)
    for sub in spec.subcommands:
        flags |= _all_value_flags(sub)
    return flags


# --------------------------------------------------------------------------
# bash


def bash_script(spec: Spec) -> str:
    cases = []
    for sub in spec.subcommands:
        if sub.positional == ("ROLE",):
            values = '"$(rolebroker completion --list-roles 2>/dev/null)"'
        else:
            values = f'"{_words([*sub.positional, *(s.name for s in sub.subcommands)])}"'
        cases.append(f'        {sub.name}) flags="{_words(sub.flags)}"; values={values} ;;')
    fixed = []
    for flag, choices in sorted(_value_choices(spec).items()):
        fixed.append(f'        {flag}) COMPREPLY=($(compgen -W "{_words(choices)}" -- "$cur")); return 0 ;;')
    return _BASH.format(
        value_flags=_words(_all_value_flags(spec)),
        commands=_words([s.name for s in spec.subcommands]),
        global_flags=_words(spec.flags),
        cases="\n".join(cases),
        fixed="\n".join(fixed),
        role_flags="|".join(f for f in ROLE_VALUES if f.startswith("--")),
        file_flags="|".join(FILE_VALUES),
    )


def _value_choices(spec: Spec) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for sub in [spec, *spec.subcommands]:
        found.update({flag: choices for flag, choices in sub.value_flags.items() if choices})
    return found


_BASH = r'''# rolebroker completion for bash. Install:
#   rolebroker completion bash > ~/.local/share/bash-completion/completions/rolebroker
# or add to ~/.bashrc:  eval "$(rolebroker completion bash)"
_rolebroker() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd="" word i flags values
    local takes_value=" {value_flags} "
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ "$word" == "--" ]]; then
            # exec ROLE -- CMD ...: a command name, then files
            if ((i == COMP_CWORD - 1)); then COMPREPLY=($(compgen -c -- "$cur")); return 0; fi
            compopt -o default; COMPREPLY=(); return 0
        fi
        if [[ "$takes_value" == *" $word "* ]]; then ((i++)); continue; fi
        if [[ "$word" != -* && -z "$cmd" ]]; then cmd="$word"; fi
    done
    case "$prev" in
        {role_flags}) COMPREPLY=($(compgen -W "$(rolebroker completion --list-roles 2>/dev/null)" -- "$cur"))
            return 0 ;;
        {file_flags}) compopt -o filenames; COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
{fixed}
    esac
    if [[ "$takes_value" == *" $prev "* ]]; then COMPREPLY=(); return 0; fi
    case "$cmd" in
        "") COMPREPLY=($(compgen -W "{commands} {global_flags}" -- "$cur")); return 0 ;;
{cases}
        *) return 0 ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    fi
}}
complete -F _rolebroker rolebroker
'''


# --------------------------------------------------------------------------
# zsh


def zsh_script(spec: Spec) -> str:
    def described(items: list[Spec], what: str) -> str:
        entries = " ".join(_zsh_quote(f"{s.name}:{s.help}") for s in items)
        return f"local -a {what}s; {what}s=({entries}); _describe {what} {what}s"

    cases, flag_cases = [], []
    for sub in spec.subcommands:
        flag_cases.append(f"            {sub.name}) compadd -- {_words(sub.flags)} ;;")
        if sub.positional == ("ROLE",):
            values = "compadd -- ${(f)\"$(rolebroker completion --list-roles 2>/dev/null)\"}"
        elif sub.subcommands:
            values = described(sub.subcommands, "action")
        elif sub.positional:
            values = f"compadd -- {_words(sub.positional)}"
        else:
            continue
        cases.append(f"        {sub.name}) {values} ;;")
    fixed = [f"        {flag}) compadd -- {_words(choices)}; return ;;"
             for flag, choices in sorted(_value_choices(spec).items())]
    return _ZSH.format(
        value_flags=" ".join(sorted(_all_value_flags(spec))),
        commands=described(spec.subcommands, "command"),
        global_flags=" ".join(sorted(set(spec.flags))),
        cases="\n".join(cases),
        flag_cases="\n".join(flag_cases),
        fixed="\n".join(fixed),
        role_flags="|".join(f for f in ROLE_VALUES if f.startswith("--")),
        file_flags="|".join(FILE_VALUES),
    )


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_ZSH = r'''#compdef rolebroker
# rolebroker completion for zsh. Install:
#   rolebroker completion zsh > "${{fpath[1]}}/_rolebroker"   (then restart zsh)
# or add to ~/.zshrc, after compinit:  source <(rolebroker completion zsh)
_rolebroker() {{
    local cmd="" word i
    local -a takes_value
    takes_value=({value_flags})
    for ((i = 2; i < CURRENT; i++)); do
        word=${{words[i]}}
        if [[ $word == -- ]]; then
            # exec ROLE -- CMD: complete the command like the shell would
            words=("${{(@)words[i+1,-1]}}"); (( CURRENT -= i )); _normal; return
        fi
        if (( ${{takes_value[(Ie)$word]}} )); then (( i++ )); continue; fi
        [[ $word != -* && -z $cmd ]] && cmd=$word
    done
    case ${{words[CURRENT-1]}} in
        {role_flags}) compadd -- ${{(f)"$(rolebroker completion --list-roles 2>/dev/null)"}}; return ;;
        {file_flags}) _files; return ;;
{fixed}
    esac
    (( ${{takes_value[(Ie)${{words[CURRENT-1]}}]}} )) && return
    if [[ -z $cmd ]]; then
        if [[ $PREFIX == -* ]]; then compadd -- {global_flags}; else {commands}; fi
        return
    fi
    if [[ $PREFIX == -* ]]; then
        case $cmd in
{flag_cases}
        esac
        return
    fi
    case $cmd in
{cases}
    esac
}}
if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _rolebroker "$@"
else
    compdef _rolebroker rolebroker
fi
'''


# --------------------------------------------------------------------------
# fish


def fish_script(spec: Spec) -> str:
    lines = [
        "# rolebroker completion for fish. Install:",
        "#   rolebroker completion fish > ~/.config/fish/completions/rolebroker.fish",
        "complete -c rolebroker -f",
    ]
    roles = "'(rolebroker completion --list-roles 2>/dev/null)'"
    for flag in sorted(set(spec.flags)):
        lines.append(f"complete -c rolebroker -l {flag[2:]}{_fish_value(flag, spec.value_flags, roles)}")
    for sub in spec.subcommands:
        lines.append(f"complete -c rolebroker -n __fish_use_subcommand -a {sub.name} -d {_fish_quote(sub.help)}")
        seen = f"-n '__fish_seen_subcommand_from {sub.name}'"
        for flag in sorted(set(sub.flags) - set(spec.flags)):
            lines.append(f"complete -c rolebroker {seen} -l {flag[2:]}{_fish_value(flag, sub.value_flags, roles)}")
        if sub.positional == ("ROLE",):
            lines.append(f"complete -c rolebroker {seen} -a {roles}")
        elif sub.positional:
            lines.append(f"complete -c rolebroker {seen} -a {_fish_quote(_words(sub.positional))}")
        for action in sub.subcommands:
            lines.append(f"complete -c rolebroker {seen} -a {action.name} -d {_fish_quote(action.help)}")
    return "\n".join(lines) + "\n"


def _fish_value(flag: str, value_flags: dict[str, tuple[str, ...]], roles: str) -> str:
    if flag not in value_flags:
        return ""
    if flag in ROLE_VALUES:
        return f" -x -a {roles}"
    if flag in FILE_VALUES:
        return " -r -F"
    choices = value_flags[flag]
    return f" -x -a {_fish_quote(_words(choices))}" if choices else " -x"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
