"""Entry point of ``moor``. Imports stay lazy: each subcommand's module loads only when run."""

import posix  # os costs the warm client ~1 ms more (imported below where needed)
import sys

from moorage import __version__

TYPE_CHECKING = False  # typing itself would cost the client 3 ms of imports
if TYPE_CHECKING:
    from collections.abc import Callable

# set by the warm process's child: tells the client the exit code before this process exits
# (the exit of a child forked from the warm process unmaps a large address space, ~1.5 ms)
before_exit: "Callable[[int], None] | None" = None


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        # the fast path: no click, no store, just the answer
        sys.stdout.write(f"moor version {__version__}\n")
        return
    warm = argv is None and _warm_enabled()
    if warm:
        # a warm moor process has everything imported: let it run the command (warmclient)
        from moorage.cli import warmclient

        served = warmclient.run(args)
        if served is not None:
            posix._exit(served)
    if sys.flags.no_site:  # started by the fast launcher: site-packages are needed now
        import site

        site.main()
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
        try:  # noqa: SIM105 - contextlib would cost 3 ms of import on every command
            stream.flush()
        except (OSError, ValueError):
            pass
    if before_exit is not None:
        before_exit(code)
    # the next command starts warm; not after `system warm` (it says what it wants) nor after
    # conmon's exit command, which uses a warm process but does not start one
    if warm and warmclient.command_path(args) not in (["system", "warm"], ["container", "cleanup"]):
        from moorage.cli import warm as warm_server

        warm_server.spawn(args)  # so that the next command starts warm
    posix._exit(code)


def _warm_enabled() -> bool:
    from moorage.cli.warmclient import getenv

    value = getenv("MOORAGE_WARM")
    return (value if value is not None else "1") not in ("0", "false", "no", "off", "")


if __name__ == "__main__":
    main()
