"""``RUN --mount``: cache directories that persist across builds (per id), tmpfs, and
read-only binds of the build context or of another stage.

The mounts are made on the RUN container's root filesystem before the runtime starts it
(runc takes the rootfs with its submounts), and removed as soon as it exits, so nothing
they hold ends up in the step's layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from moorage.build import copy as cp
from moorage.errors import InvalidArgument

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MNT_DETACH = 2


@dataclass(frozen=True)
class RunMount:
    type: str  # cache | tmpfs | bind
    target: str
    id: str = ""
    readonly: bool = False
    sharing: str = "shared"
    source: str = ""
    from_: str = ""
    uid: int = 0
    gid: int = 0
    mode: int = 0o755
    size: str = ""


def parse_mount(text: str) -> RunMount:
    """One ``--mount=type=cache,target=/x,...`` value (BuildKit's keys)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        fields[key] = value if sep else "true"
    kind = fields.pop("type", "bind")
    if kind not in ("cache", "tmpfs", "bind"):
        raise InvalidArgument(f"unsupported mount type {kind!r} (cache, tmpfs and bind are)")
    target = fields.pop("target", "") or fields.pop("dst", "") or fields.pop("destination", "")
    if not target:
        raise InvalidArgument("mount target must be specified")
    ro = fields.pop("ro", None) or fields.pop("readonly", None) or fields.pop("readwrite", None)
    readonly = ro in ("true", "1") if ro is not None else kind == "bind"
    if "rw" in fields:
        readonly = fields.pop("rw") not in ("true", "1")
    sharing = fields.pop("sharing", "shared")
    if sharing not in ("shared", "private", "locked"):
        raise InvalidArgument(f"unsupported sharing value {sharing!r}")
    try:
        uid = int(fields.pop("uid", "0"))
        gid = int(fields.pop("gid", "0"))
        mode = int(fields.pop("mode", "0755"), 8)
    except ValueError as e:
        raise InvalidArgument(f"invalid mount option: {e}") from None
    mount = RunMount(
        type=kind,
        target=target,
        id=fields.pop("id", ""),
        readonly=readonly,
        sharing=sharing,
        source=fields.pop("source", "") or fields.pop("src", ""),
        from_=fields.pop("from", ""),
        uid=uid,
        gid=gid,
        mode=mode,
        size=fields.pop("size", ""),
    )
    if fields:
        raise InvalidArgument(f"unexpected key {next(iter(fields))!r} in mount {text!r}")
    return mount


def _mount(source: str, target: Path, fstype: str | None, flags: int, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(),
        str(target).encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise InvalidArgument(f"cannot mount {source} on {target}: {os.strerror(err)}")


def _umount(target: Path) -> None:
    _libc.umount2(str(target).encode(), _MNT_DETACH)


def cache_dir(store_root: Path, mount: RunMount) -> Path:
    name = hashlib.sha256((mount.id or mount.target).encode()).hexdigest()[:32]
    return store_root / "build" / "cache" / name


@contextlib.contextmanager
def mounted(
    rootfs: Path,
    upper: Path,
    mounts: list[RunMount],
    store_root: Path,
    sources: dict[str, Path],
) -> Iterator[None]:
    """Mount ``mounts`` on ``rootfs`` for the body; afterwards unmount them and remove from
    ``upper`` the empty mount-point directories made for them. ``sources`` maps a bind's
    ``from`` ("" for the build context) to the directory it reads from."""
    made: list[str] = []
    done: list[Path] = []
    locks: list[int] = []
    try:
        for m in mounts:
            target = posixpath.normpath("/" + m.target)
            parts = [p for p in target.split("/") if p]
            for i in range(1, len(parts) + 1):
                rel = "/".join(parts[:i])
                if not os.path.lexists(cp.in_root(rootfs, rel)):
                    made.append(rel)
            src_path: Path | None = None
            if m.type == "bind":
                base = sources.get(m.from_)
                if base is None:
                    raise InvalidArgument(f"mount from {m.from_!r}: no such stage or image")
                src_path = cp.in_root(base, m.source or "/")
                if not src_path.exists():
                    raise InvalidArgument(f"mount source {m.source or '/'} does not exist")
            if src_path is not None and not src_path.is_dir():
                cp.mkdirs(rootfs, posixpath.dirname(target), None)
                host = cp.in_root(rootfs, target)
                if not os.path.lexists(host):
                    host.touch()
            else:
                host = cp.mkdirs(rootfs, target, None)
            if m.type == "cache":
                src = cache_dir(store_root, m)
                if not src.is_dir():
                    src.mkdir(parents=True, mode=m.mode)
                    os.chown(src, m.uid, m.gid)
                    os.chmod(src, m.mode)
                if m.sharing == "locked":
                    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    locks.append(fd)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                _mount(str(src), host, None, _MS_BIND | _MS_REC)
            elif m.type == "tmpfs":
                _mount("tmpfs", host, "tmpfs", 0, f"size={m.size}" if m.size else "")
            else:
                assert src_path is not None
                _mount(str(src_path), host, None, _MS_BIND | _MS_REC)
            done.append(host)
            if m.readonly:
                _mount("none", host, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_REC)
        yield
    finally:
        for host in reversed(done):
            _umount(host)
        for rel in reversed(made):
            with contextlib.suppress(OSError):
                p = upper / rel
                if p.is_dir() and not p.is_symlink():
                    os.rmdir(p)
                elif p.is_file() and p.stat().st_size == 0:
                    p.unlink()
        for fd in locks:
            os.close(fd)
