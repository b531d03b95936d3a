"""Render every `streamrec` command and option as Markdown into README.md (between markers).

.venv/bin/python scripts/cli_reference.py          # rewrite the README section
.venv/bin/python scripts/cli_reference.py --check  # exit 1 when README is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def render() -> str:
    for k in [k for k in os.environ if k.startswith("STREAMREC_")]:
        del os.environ[k]  # defaults must not depend on the caller's environment
    sys.path.insert(0, str(ROOT))
    from streamrec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    out = []
    for name, p in sub.choices.items():
        out.append(f"#### `streamrec {name}`\n\n{helps.get(name, '')}\n")
        rows = []
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flag = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest.upper()}`"
            if a.choices and not a.option_strings:
                flag = " / ".join(f"`{c}`" for c in a.choices)
            text = (a.help or "").replace("|", "\\|")
            default = a.default
            if isinstance(default, Path) and str(default).startswith(str(ROOT)):
                default = Path(os.path.relpath(default, ROOT))
            shown = "" if default in (None, False, argparse.SUPPRESS) else f"`{default}`"
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
