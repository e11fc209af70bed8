"""Names on user-defined networks: aardvark-dns, one per run root, answering on each DNS
network's gateway address. Each network is a file in its config directory (first line: the
addresses to listen on; then ``<container id> <ipv4s> <ipv6s> <names>``); SIGHUP makes it
reload, and it exits by itself when no file is left."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AARDVARK = ("/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")
ANSWER_WAIT = 1.0  # seconds aardvark may take to answer again after a reload


@dataclass(frozen=True)
class DnsEntry:
    container_id: str
    ip: str
    names: tuple[str, ...]


def binary() -> str | None:
    return next((p for p in AARDVARK if os.access(p, os.X_OK)), None)


class Aardvark:
    def __init__(self, config_dir: Path) -> None:
        self.dir = config_dir

    def write(self, network: str, gateway: str, entries: Iterable[DnsEntry]) -> bool:
        """Replace the network's file (atomically: aardvark may be reading it); False when
        it already says that (no reload needed: each one makes aardvark rebind)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [gateway]
        lines += [f"{e.container_id} {e.ip}  {','.join(e.names)}" for e in entries]
        with contextlib.suppress(OSError):
            if (self.dir / network).read_text() == "\n".join(lines) + "\n":
                return False
        # one temporary name per writer: parallel commands (and compose's threads) write too;
        # made beside the config directory, as aardvark would read it as a network there
        tmp = self.dir.parent / f".aardvark-{network}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.dir / network)
        return True

    def remove(self, network: str) -> bool:
        try:
            (self.dir / network).unlink()
        except FileNotFoundError:
            return False
        return True

    def pid(self) -> int:
        try:
            pid = int((self.dir / "aardvark.pid").read_text().strip())
        except (OSError, ValueError):
            return 0
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"aardvark" not in f.read():
                    return 0
        except OSError:
            return 0
        return pid

    def reload(self) -> None:
        """Make aardvark see the current files: SIGHUP it, or start it if it is not
        running and there is a network to serve. One at a time: two commands (or compose's
        threads) that both found it not running would start two servers on one address."""
        from moorage.store.locks import flocked

        self.dir.mkdir(parents=True, exist_ok=True)
        # beside the config directory, not in it: aardvark reads every file there as a network
        with flocked(self.dir.parent / "aardvark.lock", exclusive=True):
            self._reload()

    def _reload(self) -> None:
        pid = self.pid()
        networks = [p for p in self.dir.glob("*") if p.is_file() and not p.name.startswith(".")
                    and p.name != "aardvark.pid"]  # fmt: skip
        if pid:
            try:
                os.kill(pid, signal.SIGTERM if not networks else signal.SIGHUP)
            except ProcessLookupError:
                pass
            else:
                if not networks or self._answers(networks, ANSWER_WAIT):
                    return
                # aardvark 1.4 tears its servers down and up on every SIGHUP, and under load
                # one has been seen to stay deaf for good: start a fresh one
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / "aardvark.pid").unlink()
        if not networks:
            return
        exe = binary()
        if exe is None:
            return  # no DNS: names still work through links and /etc/hosts
        # it daemonizes itself and writes aardvark.pid in the config directory
        subprocess.run(
            [exe, "--config", str(self.dir), "-p", "53", "run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False, timeout=10,
        )  # fmt: skip

    def _answers(self, networks: list[Path], wait: float) -> bool:
        """Whether aardvark answers, within ``wait`` seconds, a query for a name it serves
        itself (never one it would forward: no traffic leaves the host for this)."""
        probe = None
        for path in networks:
            with contextlib.suppress(OSError):
                lines = path.read_text().splitlines()
                if len(lines) > 1 and len(lines[1].split()) >= 3:
                    probe = (lines[0].split(",")[0].strip(), lines[1].split()[2].split(",")[0])
                    break
        if probe is None:
            return True
        gateway, name = probe
        qid = os.urandom(2)
        query = (qid + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p)
                 + b"\x00\x00\x01\x00\x01")  # fmt: skip
        deadline = time.monotonic() + wait
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.05)
            while time.monotonic() < deadline:
                try:
                    sock.sendto(query, (gateway, 53))
                    while True:
                        data = sock.recv(512)
                        if data[:2] == qid:
                            return True
                except OSError:  # refused while it rebinds, or no answer yet
                    time.sleep(0.01)
        return False

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
