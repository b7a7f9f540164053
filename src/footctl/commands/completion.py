"""``footctl completion bash|zsh|fish``: a completion script generated from the
argument parser itself, so it never falls behind the commands."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from footctl.errors import ExitCode

if TYPE_CHECKING:
    from footctl.cli import Output


@dataclass
class _Node:
    """One command level: its subcommands (with help), options and fixed choices."""

    commands: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)


def command_tree(parser: argparse.ArgumentParser) -> dict[tuple[str, ...], _Node]:
    """Every command path (``()``, ``("program",)``, ``("program", "check")``...) and
    what may follow it."""
    tree: dict[tuple[str, ...], _Node] = {}

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        node = tree.setdefault(path, _Node())
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, child in action.choices.items():
                    node.commands[name] = helps.get(name, "")
                    walk(child, (*path, name))
            elif action.option_strings:
                for option in action.option_strings:
                    if action.help != argparse.SUPPRESS:
                        node.options[option] = action.help or ""
            elif action.choices:
                node.choices.extend(str(c) for c in action.choices)

    walk(parser, ())
    return tree


def _bash(tree: dict[tuple[str, ...], _Node]) -> str:
    cases = []
    for path, node in sorted(tree.items()):
        words = " ".join([*node.commands, *node.options, *node.choices])
        cases.append(f"        {shlex.quote(' '.join(path))}) words={shlex.quote(words)} ;;")
    body = "\n".join(cases)
    return f"""# footctl completion for bash: source <(footctl completion bash)
_footctl() {{
    local cur path="" w i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in -*) continue ;; esac
        if _footctl_words "${{path:+$path }}$w" >/dev/null; then path="${{path:+$path }}$w"; fi
    done
    COMPREPLY=($(compgen -W "$(_footctl_words "$path")" -- "$cur"))
}}
_footctl_words() {{
    local words
    case "$1" in
{body}
        *) return 1 ;;
    esac
    printf '%s\\n' "$words"
}}
complete -F _footctl footctl
"""


def _zsh(tree: dict[tuple[str, ...], _Node]) -> str:
    return (
        "#compdef footctl\n"
        "# footctl completion for zsh: source <(footctl completion zsh) in ~/.zshrc\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(tree)
    )


def _fish_escape(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(tree: dict[tuple[str, ...], _Node]) -> str:
    lines = [
        "# footctl completion for fish: footctl completion fish > "
        "~/.config/fish/completions/footctl.fish",
        "complete -c footctl -f",
    ]
    for path, node in sorted(tree.items()):
        if path:
            here = f"__fish_seen_subcommand_from {path[-1]}"
            below = list(node.commands)
            cond = here + (f"; and not __fish_seen_subcommand_from {' '.join(below)}"
                           if below else "")
        else:
            cond = "__fish_use_subcommand"
        for name, text in node.commands.items():
            lines.append(f"complete -c footctl -n {_fish_escape(cond)} -a {name} "
                         f"-d {_fish_escape(text)}")
        for choice in node.choices:
            lines.append(f"complete -c footctl -n {_fish_escape(cond)} -a {choice}")
        for option, text in node.options.items():
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            lines.append(f"complete -c footctl -n {_fish_escape(cond)} {flag} "
                         f"-d {_fish_escape(text)}")
    return "\n".join(lines) + "\n"


GENERATORS = {"bash": _bash, "zsh": _zsh, "fish": _fish}


def script(shell: str) -> str:
    """The completion script for ``shell``."""
    from footctl.cli import build_parser  # noqa: PLC0415

    return GENERATORS[shell](command_tree(build_parser()))


def main(args: argparse.Namespace, out: Output) -> int:
    """Print the script (it is the result, so ``--json`` wraps it)."""
    text = script(args.shell)
    out.result({"ok": True, "shell": args.shell, "script": text}, text.rstrip("\n"))
    return ExitCode.OK
