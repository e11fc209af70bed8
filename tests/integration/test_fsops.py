"""Filesystem operations on a (fake, hostile) container root: cp both ways, diff, export, races."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.engine.containers import fsops
from moorage.engine.containers.fsops import (
    container_destination,
    copy_from_container,
    copy_to_container,
    diff,
    export_rootfs,
    host_destination,
    host_to_tar,
    resolve_in_root,
    stat_path,
    tar_to_host,
)
from moorage.errors import InvalidArgument, NotFound

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, overlay mounts)"),
]

MTIME = 1_600_000_000
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(params=["openat2", "fallback"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with openat2 and once with the component-by-component walk."""
    if request.param == "fallback":
        monkeypatch.setattr(fsops, "_openat2_usable", False)
    else:
        assert fsops._openat2_usable, "openat2 should be usable on this kernel"
    return str(request.param)


def make_root(base: Path) -> Path:
    """A fake container root with files, dirs, symlinks (some hostile), hard links, nodes."""
    root = base / "root"
    for d in ("etc", "bin", "data/sub", "target", "empty"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:in-container\n")
    (root / "bin/sh").write_bytes(b"\x7fELF fake shell")
    os.chmod(root / "bin/sh", 0o4755)
    (root / "data/secret").write_text("inside secret\n")
    (root / "data/sub/deep.txt").write_text("deep\n")
    os.chown(root / "data/sub/deep.txt", 1234, 5678)
    os.chmod(root / "data/sub/deep.txt", 0o640)
    os.link(root / "data/secret", root / "data/hard")
    os.symlink("/etc/passwd", root / "etc/evil")  # absolute: the container's /etc/passwd
    os.symlink("../../..", root / "data/up")  # climbs "above" the root
    os.symlink("/target", root / "link")  # absolute symlink to an in-root directory
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/nonexistent/thing", root / "dangling")
    os.mkfifo(root / "data/fifo")
    for p in [root / "data/secret", root / "data/sub", root / "data"]:
        os.utime(p, (MTIME, MTIME), follow_symlinks=False)
    return root


def read_tar(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = (m, f.read() if f is not None else None)
    return out


def tar_names(data: bytes) -> list[str]:
    """Entry names exactly as written (tarfile strips the trailing '/' of directories)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name + ("/" if m.isdir() and m.name != "." else "") for m in tf]


def mktar(*entries: tuple[str, str, bytes | str]) -> io.BytesIO:
    """entries: (name, kind, data) with kind reg / dir / sym / lnk; data = content or target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.uid, ti.gid = 1000, 1001
            ti.mode = 0o755 if kind == "dir" else 0o644
            content = None
            if kind == "reg":
                assert isinstance(data, bytes)
                ti.size = len(data)
                content = io.BytesIO(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = str(data)
            elif kind == "lnk":
                ti.type = tarfile.LNKTYPE
                ti.linkname = str(data)
            tf.addfile(ti, content)
    buf.seek(0)
    return buf


def tree(path: Path) -> dict[str, bytes | str | None]:
    """Every entry under path: file contents, symlink targets, None for dirs."""
    out: dict[str, bytes | str | None] = {}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = str(p.relative_to(path))
            if p.is_symlink():
                out[rel] = os.readlink(p)
            elif p.is_dir():
                out[rel] = None
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = "special"
    return out


# --- resolve_in_root -------------------------------------------------------------------------


def _where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.fixture
def root_fd(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = make_root(tmp_path)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        yield root, fd
    finally:
        os.close(fd)


def test_openat2_is_available_here() -> None:
    assert fsops._SYS_OPENAT2 == 437
    assert fsops._openat2_usable


def test_resolve_clamps_to_root(resolver: str, root_fd: tuple[Path, int]) -> None:
    root, fd = root_fd
    assert _where(resolve_in_root(fd, "/etc/evil")) == str(root / "etc/passwd")
    assert _where(resolve_in_root(fd, "etc/evil")) == str(root / "etc/passwd")
    assert _where(resolve_in_root(fd, "/data/up")) == str(root)
    assert _where(resolve_in_root(fd, "/data/up/etc/passwd")) == str(root / "etc/passwd")
    assert _where(resolve_in_root(fd, "/../../../../etc/passwd")) == str(root / "etc/passwd")
    assert _where(resolve_in_root(fd, "/data/up/data/up/../../etc/evil")) == str(
        root / "etc/passwd"
    )
    assert _where(resolve_in_root(fd, "/link/")) == str(root / "target")
    assert _where(resolve_in_root(fd, "/")) == str(root)
    assert _where(resolve_in_root(fd, "")) == str(root)


def test_resolve_follow_final(resolver: str, root_fd: tuple[Path, int]) -> None:
    root, fd = root_fd
    assert _where(resolve_in_root(fd, "/etc/evil", follow_final=False)) == str(root / "etc/evil")
    lfd = resolve_in_root(fd, "/data/up", follow_final=False)
    try:
        assert stat.S_ISLNK(os.fstat(lfd).st_mode)
    finally:
        os.close(lfd)
    # a trailing slash always follows
    assert _where(resolve_in_root(fd, "/link/", follow_final=False)) == str(root / "target")


def test_resolve_errors(resolver: str, root_fd: tuple[Path, int]) -> None:
    _, fd = root_fd
    with pytest.raises(NotFound):
        resolve_in_root(fd, "/nope")
    with pytest.raises(NotFound):
        resolve_in_root(fd, "/etc/passwd/x")
    with pytest.raises(NotFound):
        resolve_in_root(fd, "/etc/passwd/")
    with pytest.raises(NotFound):
        resolve_in_root(fd, "/dangling")  # -> /nonexistent/thing, inside the root
    with pytest.raises(InvalidArgument, match="symbolic links"):
        resolve_in_root(fd, "/loop1")
    with pytest.raises(InvalidArgument):
        resolve_in_root(fd, "/a\0b")


def test_enosys_falls_back_to_the_walk(
    root_fd: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, fd = root_fd
    calls = []

    def no_openat2(dirfd: int, path: bytes, flags: int, resolve: int) -> int:
        calls.append(path)
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fsops, "_openat2", no_openat2)
    monkeypatch.setattr(fsops, "_openat2_usable", True)
    assert _where(resolve_in_root(fd, "/data/up/etc/evil")) == str(root / "etc/passwd")
    assert fsops._openat2_usable is False
    assert _where(resolve_in_root(fd, "/etc/evil")) == str(root / "etc/passwd")
    assert len(calls) == 1  # not tried again


def test_magic_links_refused(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    os.symlink("/proc/self/root", root / "hostroot")  # inside the root: /proc doesn't exist
    (root / "proc/self").mkdir(parents=True)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(NotFound):
            resolve_in_root(fd, "/hostroot/etc/passwd")
    finally:
        os.close(fd)


# --- copy_from_container ---------------------------------------------------------------------


def test_copy_from_directory(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    out = io.BytesIO()
    st = copy_from_container(root, "/data", out)
    assert st["name"] == "data"
    assert st["mode"] == GO_DIR | 0o755
    assert st["mtime"] == "2020-09-13T12:26:40Z"
    assert st["linkTarget"] == ""
    assert tar_names(out.getvalue()) == [
        "data/",
        "data/fifo",
        "data/hard",
        "data/secret",
        "data/sub/",
        "data/sub/deep.txt",
        "data/up",
    ]
    entries = read_tar(out.getvalue())
    hard, hard_data = entries["data/hard"]
    assert hard.isreg() and hard_data == b"inside secret\n"
    secret, _ = entries["data/secret"]
    assert secret.islnk() and secret.linkname == "data/hard"
    deep, deep_data = entries["data/sub/deep.txt"]
    assert deep_data == b"deep\n"
    assert (deep.uid, deep.gid, deep.mode) == (1234, 5678, 0o640)
    up, _ = entries["data/up"]
    assert up.issym() and up.linkname == "../../.."
    assert entries["data/fifo"][0].isfifo()
    assert entries["data"][0].mtime == MTIME


def test_copy_from_contents_and_root(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    out = io.BytesIO()
    st = copy_from_container(root, "/data/.", out)
    assert st["name"] == "."
    names = tar_names(out.getvalue())
    assert names[0] == "."
    assert "./secret" in names and "./sub/deep.txt" in names
    out = io.BytesIO()
    assert copy_from_container(root, "/", out)["name"] == "/"
    names = tar_names(out.getvalue())
    assert "./etc/passwd" in names and "./bin/sh" in names
    # through the in-root symlink to a directory, with a trailing slash
    out = io.BytesIO()
    (root / "target/t.txt").write_text("t")
    assert copy_from_container(root, "/link/", out)["name"] == "link"
    assert tar_names(out.getvalue()) == ["link/", "link/t.txt"]


def test_copy_from_file_and_symlinks(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    out = io.BytesIO()
    st = copy_from_container(root, "/bin/sh", out)
    assert st == {
        "name": "sh",
        "size": 15,
        "mode": (1 << 23) | 0o755,
        "mtime": st["mtime"],
        "linkTarget": "",
    }
    (ti, data) = read_tar(out.getvalue())["sh"]
    assert data == b"\x7fELF fake shell" and ti.mode == 0o4755
    # a final symlink is archived as a link, its stat names the in-root resolution
    out = io.BytesIO()
    st = copy_from_container(root, "/etc/evil", out)
    assert st["mode"] & GO_SYMLINK and st["linkTarget"] == "/etc/passwd"
    ti, _ = read_tar(out.getvalue())["evil"]
    assert ti.issym() and ti.linkname == "/etc/passwd"
    out = io.BytesIO()
    assert copy_from_container(root, "/data/up", out)["linkTarget"] == "/"
    assert copy_from_container(root, "/dangling", io.BytesIO())["linkTarget"] == (
        "/nonexistent/thing"
    )
    # symlinks in the middle resolve inside the root: the container's passwd, not the host's
    out = io.BytesIO()
    copy_from_container(root, "/data/up/data/up/etc/passwd", out)
    assert read_tar(out.getvalue())["passwd"][1] == b"root:x:0:0:in-container\n"


def test_copy_from_errors(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with pytest.raises(NotFound, match="/nope"):
        copy_from_container(root, "/nope", io.BytesIO())
    with pytest.raises(NotFound):
        copy_from_container(root, "/etc/passwd/x", io.BytesIO())
    with pytest.raises(InvalidArgument, match="not a directory"):
        copy_from_container(root, "/etc/passwd/.", io.BytesIO())
    with pytest.raises(NotFound):
        stat_path(root, "/dangling/")


def test_copy_from_device_and_long_names(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    os.mknod(root / "data/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    long = "x" * 120
    (root / "data" / long).mkdir()
    (root / "data" / long / ("y" * 150)).write_text("long")
    out = io.BytesIO()
    copy_from_container(root, "data", out)
    entries = read_tar(out.getvalue())
    null, _ = entries["data/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert entries[f"data/{long}/{'y' * 150}"][1] == b"long"


# --- copy_to_container -----------------------------------------------------------------------


def test_copy_to_directory_owners(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    tar = mktar(
        ("new/", "dir", b""),
        ("new/a.txt", "reg", b"A"),
        ("new/deeper/b.txt", "reg", b"B"),  # parent not in the archive
        ("new/ln", "sym", "/etc/passwd"),
        ("new/hl", "lnk", "new/a.txt"),
    )
    copy_to_container(root, "/empty", tar)
    dest = root / "empty/new"
    assert (dest / "a.txt").read_bytes() == b"A"
    assert (dest / "deeper/b.txt").read_bytes() == b"B"
    assert os.readlink(dest / "ln") == "/etc/passwd"
    assert os.stat(dest / "hl").st_ino == os.stat(dest / "a.txt").st_ino
    for p in [dest, dest / "a.txt", dest / "deeper", dest / "deeper/b.txt"]:
        st = p.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), p
    assert dest.stat().st_mtime == MTIME and stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert (dest / "a.txt").stat().st_mtime == MTIME
    assert (root / "etc/passwd").read_text() == "root:x:0:0:in-container\n"

    # -a keeps the archive's owners; explicit uid/gid is the container's root
    copy_to_container(root, "/empty", mktar(("k.txt", "reg", b"K")), copy_uid_gid=True)
    st = (root / "empty/k.txt").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    copy_to_container(root, "/empty", mktar(("m.txt", "reg", b"M")), uid=100000, gid=100000)
    st = (root / "empty/m.txt").stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_copy_to_through_in_root_symlinks(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    host_name = f"/moorage-fsops-test-{uuid.uuid4().hex}"
    os.symlink(host_name, root / "abs")  # absolute link: must resolve inside the root
    (root / host_name.lstrip("/")).mkdir()
    copy_to_container(root, "/abs", mktar(("f", "reg", b"F")))
    assert (root / host_name.lstrip("/") / "f").read_bytes() == b"F"
    assert not os.path.exists(host_name)
    copy_to_container(root, "/link", mktar(("g", "reg", b"G")))
    assert (root / "target/g").read_bytes() == b"G"
    # ../../.. clamps to the root
    copy_to_container(root, "/data/up/data/up/target", mktar(("h", "reg", b"H")))
    assert (root / "target/h").read_bytes() == b"H"
    copy_to_container(root, "../../../../target", mktar(("i", "reg", b"I")))
    assert (root / "target/i").read_bytes() == b"I"


def test_copy_to_errors(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with pytest.raises(NotFound) as info:
        copy_to_container(root, "/nope", mktar(("f", "reg", b"F")))
    assert str(info.value) == "no such directory: /nope"
    with pytest.raises(NotFound):
        copy_to_container(root, "/dangling", mktar(("f", "reg", b"F")))
    with pytest.raises(InvalidArgument, match="not a directory"):
        copy_to_container(root, "/etc/passwd", mktar(("f", "reg", b"F")))
    with pytest.raises(InvalidArgument, match="invalid tar"):
        copy_to_container(root, "/empty", io.BytesIO(b"not a tar archive" * 100))
    copy_to_container(root, "/empty", io.BytesIO(b""))  # empty stream: nothing to do
    assert os.listdir(root / "empty") == []


def test_copy_to_refuses_to_escape(resolver: str, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    before = tree(tmp_path / "outside")
    os.symlink(str(outside), root / "empty/hostlink")  # a symlink already in the destination
    cases = [
        mktar(("../escape", "reg", b"x")),
        mktar(("a/../../escape", "reg", b"x")),
        mktar(("hostlink/escape", "reg", b"x")),
        mktar(("evil", "sym", str(outside)), ("evil/escape", "reg", b"x")),
        mktar(("hl", "lnk", "../../etc/passwd")),
        mktar(("hl", "lnk", "hostlink/thing")),
    ]
    for tar in cases:
        with pytest.raises(InvalidArgument):
            copy_to_container(root, "/empty", tar)
    assert tree(outside) == before
    assert not (tmp_path / "escape").exists() and not (root / "escape").exists()
    # the symlinks above resolve in the root, to a directory that is not there: none is made
    assert not (root / str(outside).lstrip("/")).exists()
    assert (root / "etc/passwd").read_text() == "root:x:0:0:in-container\n"
    # a parent symlink climbing out of the root is followed as in a chroot: "../../.." from
    # /empty stops at the root, so this is the container's /etc
    copy_to_container(
        root, "/empty", mktar(("evil2", "sym", "../../.."), ("evil2/etc/escape", "reg", b"x"))
    )
    assert (root / "etc/escape").read_bytes() == b"x"
    assert tree(outside) == before
    assert not (tmp_path / "etc").exists() and not (tmp_path / "escape").exists()


def image_root(base: Path) -> Path:
    """A Debian-like root: /lib -> usr/lib (relative), /etc2 -> /etc (absolute)."""
    root = base / "root"
    for d in ("usr/lib", "etc", "home"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:in-container\n")
    os.symlink("usr/lib", root / "lib")
    os.symlink("/etc", root / "etc2")
    os.symlink("../../../../../../usr", root / "home/clamp")  # ".." stops at the root
    os.symlink("/etc/passwd", root / "usr/lib/victim")
    return root


def test_copy_to_follows_parent_symlinks_in_root(resolver: str, tmp_path: Path) -> None:
    root = image_root(tmp_path)
    copy_to_container(root, "/", mktar(("lib/x", "reg", b"X"), ("etc2/y", "reg", b"Y")))
    assert (root / "usr/lib/x").read_bytes() == b"X"
    assert (root / "etc/y").read_bytes() == b"Y"
    assert os.readlink(root / "lib") == "usr/lib" and os.readlink(root / "etc2") == "/etc"
    # docker cp somefile CTR:/lib/ (the destination itself was already followed)
    copy_to_container(root, "/lib/", mktar(("foo", "reg", b"F")))
    assert (root / "usr/lib/foo").read_bytes() == b"F"
    # missing directories are created below the link's target; ".." clamps at the root;
    # a hard link's target is found through the links too
    tar = mktar(
        ("lib/new/deeper/z", "reg", b"Z"),
        ("home/clamp/lib/q", "reg", b"Q"),
        ("lib/hl", "lnk", "etc2/y"),
    )
    copy_to_container(root, "/", tar)
    assert (root / "usr/lib/new/deeper/z").read_bytes() == b"Z"
    assert (root / "usr/lib/q").read_bytes() == b"Q"
    assert os.stat(root / "usr/lib/hl").st_ino == os.stat(root / "etc/y").st_ino
    # a symlink from the archive is followed by the entries after it
    copy_to_container(root, "/home", mktar(("l2", "sym", "../usr/lib"), ("l2/w", "reg", b"W")))
    assert (root / "usr/lib/w").read_bytes() == b"W"
    assert os.readlink(root / "home/l2") == "../usr/lib"
    # the last component is never followed: the symlink is replaced, /etc/passwd untouched
    copy_to_container(root, "/", mktar(("lib/victim", "reg", b"replaced")))
    assert not (root / "usr/lib/victim").is_symlink()
    assert (root / "usr/lib/victim").read_bytes() == b"replaced"
    assert (root / "etc/passwd").read_text() == "root:x:0:0:in-container\n"
    # as Docker (NoOverwriteDirNonDir): a directory entry does not replace the symlink
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
        copy_to_container(root, "/", mktar(("lib/", "dir", b""), ("lib/v", "reg", b"V")))
    assert os.readlink(root / "lib") == "usr/lib"
    # a link to a file, to nothing, or a loop leads to no directory: refused
    os.symlink("/etc/passwd", root / "tofile")
    os.symlink("/nonexistent", root / "nowhere")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    for name in ("tofile", "nowhere", "loop1"):
        with pytest.raises(InvalidArgument):
            copy_to_container(root, "/", mktar((f"{name}/f", "reg", b"x")))
    assert not (root / "nonexistent").exists()
    assert (root / "etc/passwd").read_text() == "root:x:0:0:in-container\n"


def test_copy_to_parent_symlink_out_of_root_stays_inside(resolver: str, tmp_path: Path) -> None:
    root = image_root(tmp_path)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "host-file").write_text("host")
    before = tree(sentinel)
    os.symlink("/../../.." + str(sentinel), root / "esc")  # absolute, with ".." above "/"
    os.symlink("../sentinel", root / "escrel")  # relative, climbing out of the root
    from_archive: list[tuple[str, str, bytes | str]] = [
        ("esc3", "sym", "/../../" + str(sentinel)),  # a link from the archive itself
        ("esc3/z", "reg", b"Z"),
    ]
    cases: list[list[tuple[str, str, bytes | str]]] = [
        [("esc/z", "reg", b"Z")],
        [("escrel/z", "reg", b"Z")],
        from_archive,
    ]
    # the links resolve inside the root, where there is no such directory: refused
    for entries in cases:
        with pytest.raises(InvalidArgument):
            copy_to_container(root, "/", mktar(*entries))
        assert tree(sentinel) == before
    inside = root / str(sentinel).lstrip("/")
    assert not inside.exists() and not (root / "sentinel").exists()
    # once the container has them, that is where the entries go
    inside.mkdir(parents=True)
    (root / "sentinel").mkdir()
    copy_to_container(root, "/", mktar(("esc/z", "reg", b"Z1")))
    assert (inside / "z").read_bytes() == b"Z1"
    copy_to_container(root, "/", mktar(("escrel/z", "reg", b"Z2")))
    assert (root / "sentinel/z").read_bytes() == b"Z2"
    copy_to_container(root, "/usr", mktar(*from_archive))
    assert (inside / "z").read_bytes() == b"Z"
    assert tree(sentinel) == before
    assert not (sentinel / "z").exists()


def test_copy_to_overwrite_rules(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "empty/file").write_text("old")
    (root / "empty/dir").mkdir()
    os.symlink("/etc/passwd", root / "empty/ln")
    copy_to_container(root, "/empty", mktar(("file", "reg", b"new")))
    assert (root / "empty/file").read_text() == "new"
    # a symlink in the way is replaced, never written through
    copy_to_container(root, "/empty", mktar(("ln", "reg", b"replaced")))
    assert not (root / "empty/ln").is_symlink()
    assert (root / "etc/passwd").read_text() == "root:x:0:0:in-container\n"
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        copy_to_container(root, "/empty", mktar(("dir", "reg", b"x")))
    with pytest.raises(InvalidArgument, match="cannot overwrite non-directory"):
        copy_to_container(root, "/empty", mktar(("file/", "dir", b"")))
    # "./" leaves the destination alone; existing dirs are merged into
    os.chmod(root / "empty", 0o711)
    copy_to_container(root, "/empty", mktar(("./", "dir", b""), ("./dir/x", "reg", b"X")))
    assert stat.S_IMODE((root / "empty").stat().st_mode) == 0o711
    assert (root / "empty/dir/x").read_text() == "X"


def test_copy_round_trip_preserves_everything(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    os.mknod(root / "data/null", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    out = io.BytesIO()
    copy_from_container(root, "/data", out)
    out.seek(0)
    copy_to_container(root, "/target", out, copy_uid_gid=True)
    src, dst = root / "data", root / "target/data"
    assert tree(src) == tree(dst)
    for rel in ["sub/deep.txt", "null", "fifo", "secret", "sub", "up"]:
        a, b = (src / rel).lstat(), (dst / rel).lstat()
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) == (
            b.st_mode,
            b.st_uid,
            b.st_gid,
            b.st_rdev,
        )
        assert int(a.st_mtime) == int(b.st_mtime), rel
    assert (dst / "hard").stat().st_ino == (dst / "secret").stat().st_ino


# --- host side -------------------------------------------------------------------------------


def test_host_round_trip_and_rename(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("F")
    os.symlink("d/f", src / "l")
    out = io.BytesIO()
    host_to_tar(src, out)
    assert tar_names(out.getvalue()) == ["src/", "src/d/", "src/d/f", "src/l"]
    out = io.BytesIO()
    host_to_tar(f"{src}/.", out)
    assert tar_names(out.getvalue()) == [".", "./d/", "./d/f", "./l"]
    dest = tmp_path / "dest"
    dest.mkdir()
    out.seek(0)
    tar_to_host(out, dest, rename_to="copy")
    assert tree(dest / "copy") == tree(src)
    out = io.BytesIO()
    host_to_tar(src / "l", out)
    assert read_tar(out.getvalue())["l"][0].issym()
    out = io.BytesIO()
    host_to_tar(src / "l", out, follow_link=True)
    assert read_tar(out.getvalue())["l"][1] == b"F"
    out = io.BytesIO()
    host_to_tar(src / "d", out, rename_to="renamed")
    assert tar_names(out.getvalue()) == ["renamed/", "renamed/f"]
    with pytest.raises(NotFound):
        host_to_tar(tmp_path / "nope", io.BytesIO())
    with pytest.raises(NotFound, match="no such directory"):
        tar_to_host(io.BytesIO(b""), tmp_path / "nope")


def test_host_destination_rules(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    os.symlink("dir", tmp_path / "dirlink")
    t = str(tmp_path)
    assert host_destination(f"{t}/dir", src_is_dir=False, src_ends_with_dot=False) == (
        tmp_path / "dir",
        None,
    )
    assert host_destination(f"{t}/dirlink", src_is_dir=True, src_ends_with_dot=False) == (
        tmp_path / "dir",
        None,
    )
    assert host_destination(f"{t}/new", src_is_dir=True, src_ends_with_dot=True) == (
        tmp_path,
        "new",
    )
    assert host_destination(f"{t}/file", src_is_dir=False, src_ends_with_dot=False) == (
        tmp_path,
        "file",
    )
    with pytest.raises(InvalidArgument, match="cannot copy a directory to a file"):
        host_destination(f"{t}/file", src_is_dir=True, src_ends_with_dot=False)
    with pytest.raises(NotFound, match="destination directory does not exist"):
        host_destination(f"{t}/new/", src_is_dir=False, src_ends_with_dot=False)
    with pytest.raises(NotFound, match="destination directory does not exist"):
        host_destination(f"{t}/no/such/new", src_is_dir=False, src_ends_with_dot=False)


def test_container_to_host_new_name(tmp_path: Path) -> None:
    """docker cp CTR:/data ./newname, with the container's archive treated as hostile."""
    root = make_root(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    out = io.BytesIO()
    copy_from_container(root, "/data", out)
    where, rename = host_destination(f"{host}/newname", src_is_dir=True, src_ends_with_dot=False)
    out.seek(0)
    tar_to_host(out, where, rename_to=rename)
    assert (host / "newname/secret").read_text() == "inside secret\n"
    assert os.readlink(host / "newname/up") == "../../.."
    # a hostile archive cannot reach out of the destination through its own symlinks
    with pytest.raises(InvalidArgument):
        tar_to_host(mktar(("x", "sym", str(tmp_path)), ("x/pwned", "reg", b"!")), host)
    assert not (tmp_path / "pwned").exists()


def test_host_to_container_destination(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert container_destination(root, "/link", src_is_dir=True, src_ends_with_dot=False) == (
        "/target",
        None,
    )
    assert container_destination(
        root, "/etc/passwd", src_is_dir=False, src_ends_with_dot=False
    ) == ("/etc", "passwd")
    assert container_destination(root, "/etc/new", src_is_dir=True, src_ends_with_dot=False) == (
        "/etc",
        "new",
    )
    with pytest.raises(InvalidArgument, match="cannot copy a directory to a file"):
        container_destination(root, "/etc/evil", src_is_dir=True, src_ends_with_dot=False)
    src = tmp_path / "hostsrc"
    src.mkdir()
    (src / "f").write_text("f")
    where, rename = container_destination(
        root, "/etc/new", src_is_dir=True, src_ends_with_dot=False
    )
    buf = io.BytesIO()
    host_to_tar(src, buf, rename_to=rename)
    buf.seek(0)
    copy_to_container(root, where, buf)
    assert (root / "etc/new/f").read_text() == "f"


# --- export ----------------------------------------------------------------------------------


def test_export_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "bin/sh").write_bytes(b"shell")
    os.chmod(root / "bin/sh", 0o755)
    os.link(root / "bin/sh", root / "bin/ash")
    os.symlink("/bin/sh", root / "bin/zsh")
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(root / "dev/null", 0o666)  # past the umask
    os.mknod(root / "dev/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.chown(root / "dev/loop0", 0, 6)
    os.utime(root / "bin/sh", (MTIME, MTIME))
    out = io.BytesIO()
    export_rootfs(root, out)
    assert tar_names(out.getvalue()) == [
        "bin/",
        "bin/ash",
        "bin/sh",
        "bin/zsh",
        "dev/",
        "dev/loop0",
        "dev/null",
    ]
    e = read_tar(out.getvalue())
    assert e["bin/ash"][1] == b"shell" and e["bin/sh"][0].linkname == "bin/ash"
    assert e["bin/zsh"][0].issym() and e["bin/zsh"][0].linkname == "/bin/sh"
    assert e["dev/null"][0].ischr() and e["dev/null"][0].mode == 0o666
    loop = e["dev/loop0"][0]
    assert loop.isblk() and (loop.devmajor, loop.devminor, loop.gid) == (7, 0, 6)
    assert e["bin/ash"][0].mtime == MTIME
    assert out.getvalue().endswith(bytes(1024))


# --- diff on a real overlay mount ------------------------------------------------------------


def _mount_overlay(lowers: list[Path], upper: Path, work: Path, merged: Path) -> None:
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)


def test_diff_on_overlay(tmp_path: Path) -> None:
    bottom, top = tmp_path / "l1", tmp_path / "l2"
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (bottom, top, upper, work, merged):
        d.mkdir()
    for sub in ("etc", "bin", "opt/dir", "var/lib", "opq"):
        (bottom / sub).mkdir(parents=True)
    (bottom / "etc/passwd").write_text("root\n")
    (bottom / "etc/hosts").write_text("localhost\n")
    (bottom / "bin/sh").write_text("sh")
    (bottom / "opt/dir/a").write_text("a")
    (bottom / "opt/dir/b").write_text("b")
    (bottom / "gone").write_text("deleted by the top layer")
    (bottom / "opq/old").write_text("hidden by the top layer")
    # the top image layer deletes /gone and makes /opq opaque
    os.mknod(top / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (top / "opq").mkdir()
    os.setxattr(top / "opq", "trusted.overlay.opaque", b"y")
    (top / "opq/kept").write_text("k")
    (top / "etc").mkdir()
    (top / "etc/motd").write_text("hi")

    _mount_overlay([top, bottom], upper, work, merged)
    try:
        with open(merged / "etc/passwd", "a") as f:
            f.write("user\n")
        (merged / "etc/hosts").unlink()
        (merged / "new").write_text("new")
        (merged / "newdir/sub").mkdir(parents=True)
        (merged / "newdir/sub/f").write_text("f")
        shutil.rmtree(merged / "opt/dir")
        (merged / "opt/dir").mkdir()
        (merged / "opt/dir/a").write_text("re-created")
        (merged / "gone").write_text("back")  # hidden below by a whiteout: an addition
        (merged / "opq/old").write_text("again")  # hidden below by an opaque dir: an addition
        (merged / "opq/kept").unlink()
        changes = diff(upper, [top, bottom])
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert os.getxattr(upper / "opt/dir", "trusted.overlay.opaque") == b"y"
    assert changes == [
        ("C", "/etc"),
        ("D", "/etc/hosts"),
        ("C", "/etc/passwd"),
        ("A", "/gone"),
        ("A", "/new"),
        ("A", "/newdir"),
        ("A", "/newdir/sub"),
        ("A", "/newdir/sub/f"),
        ("C", "/opq"),
        ("D", "/opq/kept"),
        ("A", "/opq/old"),
        ("C", "/opt"),
        ("C", "/opt/dir"),
        ("C", "/opt/dir/a"),
        ("D", "/opt/dir/b"),
    ]


def test_diff_sorting_and_symlinked_upper(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "a").mkdir(parents=True)
    (lower / "a/x").write_text("x")
    (upper / "a").mkdir(parents=True)
    (upper / "a/x").write_text("changed")
    (upper / "a-b").write_text("new")
    os.symlink("/", upper / "hostroot")  # the container's symlink is not followed
    assert diff(upper, [lower]) == [
        ("C", "/a"),
        ("C", "/a/x"),
        ("A", "/a-b"),
        ("A", "/hostroot"),
    ]


# --- the race --------------------------------------------------------------------------------

_SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, c = (os.fsencode(x) for x in sys.argv[1:4])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
while True:
    # dir <-> absolute symlink, dir <-> relative symlink, each an atomic exchange
    for other in (b, c):
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, other, RENAME_EXCHANGE) != 0:
            sys.exit("renameat2: %s" % os.strerror(ctypes.get_errno()))
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, other, RENAME_EXCHANGE)
"""


@pytest.mark.parametrize("via_parent", [False, True], ids=["dest", "parent"])
@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "fallback"])
def test_race_swapping_dir_and_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_openat2: bool, via_parent: bool
) -> None:
    """A container swaps /data with symlinks to a host directory while we copy both ways.

    ``via_parent``: copy in at ``/`` with entries named ``data/...``, so the swapped path is
    an entry's parent (followed in the root) rather than the destination.
    """
    if not use_openat2:
        monkeypatch.setattr(fsops, "_openat2_usable", False)
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data/secret").write_bytes(b"inside secret")
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    marker = f"HOST-MARKER-{uuid.uuid4().hex}".encode()
    (sentinel / "secret").write_bytes(marker)
    (sentinel / "host-only-file").write_bytes(marker)
    sentinel_before = tree(sentinel)
    os.symlink(str(sentinel), root / "data.abs")  # -> the sentinel by absolute path
    os.symlink("../sentinel", root / "data.rel")  # -> the sentinel by climbing out

    swapper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SWAPPER,
            *(str(root / n) for n in ("data", "data.abs", "data.rel")),
        ],
        stdout=subprocess.PIPE,
    )
    counts = {"from_ok": 0, "to_ok": 0, "refused": 0}
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 5
        for i in range(300):
            if time.monotonic() > deadline:
                break
            for src in ("/data/secret", "/data", "/data/"):
                out = io.BytesIO()
                try:
                    copy_from_container(root, src, out)
                    counts["from_ok"] += 1
                except (NotFound, InvalidArgument):
                    counts["refused"] += 1
                data = out.getvalue()
                assert marker not in data, src
                assert b"host-only-file" not in data, src
            pre = "data/" if via_parent else ""
            tar = mktar((pre + "payload", "reg", b"payload %d" % i), (pre + "sub/p2", "reg", b"p2"))
            try:
                copy_to_container(root, "/" if via_parent else "/data", tar)
                counts["to_ok"] += 1
            except (NotFound, InvalidArgument):
                counts["refused"] += 1
            assert tree(sentinel) == sentinel_before
        assert swapper.poll() is None, "the swapper died"
    finally:
        swapper.kill()
        swapper.wait()
    assert tree(sentinel) == sentinel_before
    assert not (tmp_path / "payload").exists()
    assert counts["from_ok"] > 0 and counts["to_ok"] > 0, counts
    # whatever was written landed inside the root
    landed = [p for p in root.rglob("payload")]
    assert landed and all(root in p.parents for p in landed)
