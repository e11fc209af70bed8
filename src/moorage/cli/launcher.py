"""A faster ``moor`` than pip's console script: ``python -m moorage.cli.launcher PATH``.

pip's script starts Python with ``site`` (the venv's site-packages, its ``.pth`` files:
~2.5 ms, a quarter of the interpreter's start) before it can hand the command to the warm
process, which needs none of it. This one starts the interpreter with ``-S`` and puts only
moorage's own directory on ``sys.path``; a command that runs cold imports ``site`` first
(``moorage.cli.main``). ``make setup`` installs it over pip's; pip's keeps working."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import moorage

TEMPLATE = """#!{python} -S
# moor: written by `python -m moorage.cli.launcher` (starts without site; see that module)
import sys
sys.path[0:0] = [{src!r}]
from moorage.cli.main import main
main()
"""


def script(python: str, src: str) -> str:
    return TEMPLATE.format(python=python, src=src)


def install(path: Path) -> None:
    src = str(Path(moorage.__file__).resolve().parent.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(script(sys.executable, src))
    tmp.chmod(0o755)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m moorage.cli.launcher PATH\n")
        return 2
    install(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
