"""Entry point of ``moor``. Imports stay lazy: each subcommand's module loads only when run."""

from __future__ import annotations

import sys

from moorage import __version__


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        # the fast path: no click, no store, just the answer
        sys.stdout.write(f"moor version {__version__}\n")
        return
    from moorage.cli.app import run

    run(args)


if __name__ == "__main__":
    main()
