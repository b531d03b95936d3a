"""Render every `streamrec` command and option as Markdown into README.md (between markers).

.venv/bin/python scripts/cli_reference.py          # rewrite the README section
.venv/bin/python scripts/cli_reference.py --check  # exit 1 when README is stale (a test runs this)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def render() -> str:
    for k in [k for k in os.environ if k.startswith("STREAMREC_")]:
        del os.environ[k]  # defaults must not depend on the caller's environment
    sys.path.insert(0, str(ROOT))
    import click

    from streamrec.cli import build_cli

    out = []
    commands = []
    for name, command in build_cli().commands.items():  # a group's subcommands: `cluster up`, ...
        subs = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        commands += [(f"{name} {sub}".strip(), c) for sub, c in subs]
    for name, command in commands:
        out.append(f"#### `streamrec {name}`\n\n{command.help or ''}\n")
        rows = []
        for p in command.params:
            if isinstance(p, click.Argument):
                choices = getattr(p.type, "choices", None)
                flag = " / ".join(f"`{c}`" for c in choices) if choices else f"`{p.name.upper()}`"
                rows.append(f"| {flag} | {'(optional) ' if not p.required else ''}positional |  |")
                continue
            flag = ", ".join(f"`{s}`" for s in [*p.opts, *p.secondary_opts])
            text = (p.help or "").replace("|", "\\|")  # ends with [env NAME] (streamrec.cli)
            default = p.default
            if isinstance(default, Path) and str(default).startswith(str(ROOT)):
                default = Path(os.path.relpath(default, ROOT))
            shown = "" if default in (None, False) or p.is_flag and not p.secondary_opts else f"`{default}`"
            if isinstance(p.type, click.IntRange | click.FloatRange):
                text += f" ({p.type._describe_range()})"
            rows.append(f"| {flag} | {text} | {shown} |")
        out.append(
            "| option | meaning [environment variable] | default |\n|---|---|---|\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(out)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    fresh = text[:start] + "\n" + render() + "\n" + text[end:]
    if "--check" in sys.argv:
        if fresh != text:
            print("README.md's CLI reference is stale: run .venv/bin/python scripts/cli_reference.py")
            return 1
        return 0
    readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
