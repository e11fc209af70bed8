"""Entry point of ``moor``. Imports stay lazy: each subcommand's module loads only when run."""

from __future__ import annotations

import contextlib
import os
import sys

from moorage import __version__


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        # the fast path: no click, no store, just the answer
        sys.stdout.write(f"moor version {__version__}\n")
        return
    from moorage.cli.app import run

    try:
        run(args)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write(f"{e.code}\n")
            code = 1
    # everything is committed and flushed by now: skip the interpreter's ~15 ms teardown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
