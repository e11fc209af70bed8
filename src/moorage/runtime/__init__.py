"""OCI runtimes (runc by default, crun selectable) driven through conmon."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from moorage.errors import MoorageError

if TYPE_CHECKING:
    import subprocess


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the state follows the command name, which is in parentheses and may contain spaces
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


class RuntimeFailure(MoorageError):
    """The OCI runtime (or conmon) failed; the message is the runtime's own."""


class OCIRuntime(Protocol):
    """What the engine needs from an OCI runtime. State lives under ``state_root``."""

    name: str
    path: str
    state_root: Path

    def run(
        self, cid: str, bundle: Path, *, pid_file: Path, log_file: Path, stdin: bool
    ) -> subprocess.Popen[bytes]: ...
    def start(self, cid: str) -> None: ...
    def kill(self, cid: str, signal: int, *, all_processes: bool = False) -> None: ...
    def delete(self, cid: str, *, force: bool = False) -> None: ...
    def state(self, cid: str) -> dict[str, Any] | None: ...
    def pause(self, cid: str) -> None: ...
    def resume(self, cid: str) -> None: ...
    def update(self, cid: str, resources: dict[str, Any]) -> None: ...
    def pids(self, cid: str) -> list[int]: ...
    def global_args(self) -> list[str]: ...


def get_runtime(name: str, state_root: Path) -> OCIRuntime:
    from moorage.runtime.runc import RuncLike

    return RuncLike.named(name, state_root)
