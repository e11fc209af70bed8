"""Layer extraction on the real filesystem: metadata, compression, whiteouts, hostile layers."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from isal import igzip, isal_zlib

from moorage.errors import DigestMismatch, InvalidLayer
from moorage.oci.digest import Digest
from moorage.store.unpack import UnpackResult, open_decompressed, unpack_layer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)"),
]

MTIME = 1_600_000_000
Member = tuple[tarfile.TarInfo, bytes | None]


# --- building tarballs ----------------------------------------------------------------------


def _info(name: str, typ: bytes, mode: int, uid: int, gid: int, mtime: float) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    return ti


def reg(
    name: str,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: float = MTIME,
    xattrs: dict[str, bytes] | None = None,
) -> Member:
    ti = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime)
    ti.size = len(data)
    ti.pax_headers = {
        "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in (xattrs or {}).items()
    }
    return ti, data


def dir_(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: float = MTIME) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid, mtime), None


def sym(name: str, target: str, uid: int = 0, gid: int = 0, mtime: float = MTIME) -> Member:
    ti = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime)
    ti.linkname = target
    return ti, None


def hard(name: str, target: str) -> Member:
    ti = _info(name, tarfile.LNKTYPE, 0o644, 0, 0, MTIME)
    ti.linkname = target
    return ti, None


def dev(name: str, typ: bytes, major: int = 0, minor: int = 0, mode: int = 0o600) -> Member:
    ti = _info(name, typ, mode, 0, 0, MTIME)
    ti.devmajor, ti.devminor = major, minor
    return ti, None


def make_tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return igzip.compress(data)


def zstd_bytes(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def sha(data: bytes) -> Digest:
    return Digest.sha256(hashlib.sha256(data).hexdigest())


def unpack(data: bytes, dest: Path, **kw: Any) -> UnpackResult:
    return unpack_layer(io.BytesIO(data), dest, **kw)


# --- fixtures: dest plus a sentinel tree that must never change -----------------------------


def snapshot(root: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about the tree under ``root`` except the ``skip`` subtree."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            p = here / name
            if p == skip:
                continue
            st = p.lstat()
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = p.read_bytes()
            out[str(p.relative_to(root))] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_nlink,
                st.st_mtime_ns,
                st.st_ctime_ns,
                extra,
            )
    return out


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "passwd").write_text("root:x:0:0\n")
        (self.outside / "sub").mkdir()
        (self.outside / "sub" / "keep").write_text("keep")
        self.dest = root / "layers" / "l1" / "diff"
        self.dest.mkdir(parents=True)
        self.before = snapshot(root, self.dest)

    def assert_outside_untouched(self) -> None:
        assert snapshot(self.root, self.dest) == self.before


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    (tmp_path / "env").mkdir()
    e = Env(tmp_path / "env")
    yield e
    e.assert_outside_untouched()


def xattr(p: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(p, name, follow_symlinks=False)
    except OSError:
        return None


# --- the normal case ------------------------------------------------------------------------

CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service+ep


def normal_layer() -> bytes:
    return make_tar(
        dir_("./", mode=0o755, mtime=MTIME - 100),
        dir_("etc/", mode=0o755, mtime=MTIME - 1),
        reg("etc/hosts", b"127.0.0.1 localhost\n", mode=0o644, mtime=MTIME - 2),
        dir_("home/", mode=0o755),
        dir_("home/user/", mode=0o700, uid=1000, gid=1000, mtime=MTIME - 3),
        reg("home/user/.profile", b"export X=1\n", mode=0o600, uid=1000, gid=1000),
        dir_("usr/bin/", mode=0o755),  # parent usr/ is implicit
        reg("usr/bin/su", b"\x7fELF-su", mode=0o4755),
        reg("usr/bin/wall", b"\x7fELF-wall", mode=0o2755, gid=5),
        reg(
            "usr/bin/ping",
            b"\x7fELF-ping",
            mode=0o755,
            xattrs={"security.capability": CAP, "user.note": b"hi", "trusted.evil": b"x"},
        ),
        hard("usr/bin/su-again", "usr/bin/su"),
        sym("usr/bin/sh", "bash", uid=1000, gid=1000, mtime=MTIME - 5),
        sym("etc/localtime", "/usr/share/zoneinfo/UTC"),
        sym("etc/up", "../../.."),
        dir_("tmp/", mode=0o1777),
        dir_("dev/", mode=0o755),
        dev("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
        dev("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
        dev("run-fifo", tarfile.FIFOTYPE, mode=0o640),
        reg("a/" + "long-name-" * 20 + "end", b"long"),  # PAX path
        reg("fractional", b"", mtime=MTIME + 0.25),
    )


def test_normal_layer_metadata(env: Env) -> None:
    data = normal_layer()
    r = unpack(data, env.dest)
    d = env.dest

    assert r.diff_id == sha(data) == r.compressed_digest
    assert r.size == r.compressed_size == len(data)
    assert r.files == 20  # every entry but the root "./"
    contents = [b"127.0.0.1 localhost\n", b"export X=1\n", b"\x7fELF-su", b"\x7fELF-wall"]
    symlink_targets = ["bash", "/usr/share/zoneinfo/UTC", "../../.."]
    assert r.content_size == (
        sum(map(len, contents))
        + len(b"\x7fELF-ping")
        + len(b"long")
        + sum(len(t) for t in symlink_targets)  # Docker counts a symlink's size too
    )

    assert (d / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    st = (d / "home/user/.profile").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o600)
    st = (d / "home/user").lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o700)
    assert st.st_mtime_ns == (MTIME - 3) * 10**9  # fixed after its child was written
    assert (d / "etc").stat().st_mtime_ns == (MTIME - 1) * 10**9
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert d.stat().st_mtime_ns == (MTIME - 100) * 10**9
    assert stat.S_IMODE((d / "usr").stat().st_mode) == 0o755  # implicit parent

    assert stat.S_IMODE((d / "usr/bin/su").stat().st_mode) == 0o4755
    st = (d / "usr/bin/wall").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2755, 5)
    assert stat.S_IMODE((d / "tmp").stat().st_mode) == 0o1777
    assert (d / "etc/hosts").stat().st_mtime_ns == (MTIME - 2) * 10**9
    assert (d / "fractional").stat().st_mtime_ns == MTIME * 10**9 + 250_000_000

    ping = d / "usr/bin/ping"
    assert xattr(ping, "security.capability") == CAP
    assert xattr(ping, "user.note") == b"hi"
    assert xattr(ping, "trusted.evil") is None

    su, again = (d / "usr/bin/su").stat(), (d / "usr/bin/su-again").stat()
    assert (su.st_ino, su.st_nlink) == (again.st_ino, 2)

    sh = (d / "usr/bin/sh").lstat()
    assert stat.S_ISLNK(sh.st_mode)
    assert os.readlink(d / "usr/bin/sh") == "bash"
    assert (sh.st_uid, sh.st_gid, sh.st_mtime_ns) == (1000, 1000, (MTIME - 5) * 10**9)
    assert os.readlink(d / "etc/localtime") == "/usr/share/zoneinfo/UTC"  # verbatim
    assert os.readlink(d / "etc/up") == "../../.."

    null = (d / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    loop = (d / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.major(loop.st_rdev) == 7
    fifo = (d / "run-fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640

    assert (d / "a" / ("long-name-" * 20 + "end")).read_bytes() == b"long"


def test_same_owner_false_keeps_our_ids(env: Env) -> None:
    unpack(make_tar(reg("f", b"x", uid=1000, gid=1000, mode=0o640)), env.dest, same_owner=False)
    st = (env.dest / "f").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o640)


def test_gnu_format_long_names_and_links(env: Env) -> None:
    long_dir = "d" * 120
    data = make_tar(
        dir_(long_dir),
        reg(f"{long_dir}/{'f' * 150}", b"gnu"),
        hard("x", f"{long_dir}/{'f' * 150}"),
        sym("y", "t" * 200),
        fmt=tarfile.GNU_FORMAT,
    )
    unpack(data, env.dest)
    assert (env.dest / long_dir / ("f" * 150)).read_bytes() == b"gnu"
    assert (env.dest / "x").stat().st_nlink == 2
    assert os.readlink(env.dest / "y") == "t" * 200


def test_pax_global_header_and_unicode(env: Env) -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "4242"}
    ) as tf:
        ti, data = reg("héllo-wörld", b"u")
        tf.addfile(ti, io.BytesIO(data or b""))
    unpack(buf.getvalue(), env.dest)
    assert (env.dest / "héllo-wörld").stat().st_uid == 4242


def test_empty_stream_and_empty_tar(env: Env) -> None:
    r = unpack(b"", env.dest)
    assert (r.files, r.size) == (0, 0)
    r = unpack(make_tar(), env.dest)
    assert r.files == 0
    assert list(env.dest.iterdir()) == []


def test_trailing_bytes_are_part_of_the_digest(env: Env) -> None:
    data = make_tar(reg("f", b"x")) + b"\0" * 7000
    r = unpack(data, env.dest)
    assert r.diff_id == sha(data) and r.size == len(data)


def test_expected_diff_id(env: Env) -> None:
    data = make_tar(reg("f", b"x"))
    unpack(data, env.dest, expected_diff_id=sha(data))
    with pytest.raises(DigestMismatch, match="layer diff id mismatch: expected sha256:00"):
        unpack(data, env.dest, expected_diff_id=Digest.sha256("0" * 64))


def test_expected_diff_id_wrong_for_gzip(env: Env) -> None:
    data = make_tar(reg("f", b"x"))
    with pytest.raises(DigestMismatch):  # the compressed digest is not the diff id
        unpack(gzip_bytes(data), env.dest, expected_diff_id=sha(gzip_bytes(data)))


# --- compression ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("mode", ["auto", "explicit"])
def test_compressed_layers(env: Env, kind: str, mode: str) -> None:
    data = normal_layer()
    blob = gzip_bytes(data) if kind == "gzip" else zstd_bytes(data)
    r = unpack(blob, env.dest, compression="auto" if mode == "auto" else kind)
    assert r.diff_id == sha(data)
    assert r.compressed_digest == sha(blob)
    assert (r.size, r.compressed_size) == (len(data), len(blob))
    assert (env.dest / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert xattr(env.dest / "usr/bin/ping", "security.capability") == CAP


def test_multi_member_gzip_and_multi_frame_zstd(env: Env) -> None:
    data = make_tar(*(reg(f"f{i}", os.urandom(3000)) for i in range(50)))
    cut = len(data) // 3
    gz = gzip_bytes(data[:cut]) + gzip_bytes(data[cut:])
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    zs = zstd_bytes(data[:cut]) + skippable + zstd_bytes(data[cut:])
    for i, blob in enumerate((gz, zs)):
        dest = env.dest / str(i)
        dest.mkdir()
        r = unpack(blob, dest)
        assert r.diff_id == sha(data) and r.compressed_digest == sha(blob)
        assert r.files == 50


class _Trickle(io.RawIOBase):
    """Hands out the data in small odd-sized reads, so tar headers straddle chunks."""

    def __init__(self, data: bytes, step: int = 777) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._data.readinto(memoryview(b)[: self._step])


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("trickle", [False, True])
def test_large_file_round_trip(env: Env, kind: str, trickle: bool) -> None:
    payload = os.urandom(1 << 20) * (2 if trickle else 5) + b"tail"
    small = [reg(f"s{i}", os.urandom(i * 37)) for i in range(40)]
    data = make_tar(*small[:20], reg("big", payload), *small[20:], reg("after", b"ok"))
    blob = {"none": data, "gzip": gzip_bytes(data), "zstd": zstd_bytes(data)}[kind]
    stream = _Trickle(blob) if trickle else io.BytesIO(blob)
    r = unpack_layer(stream, env.dest)  # type: ignore[arg-type]
    assert r.diff_id == sha(data)
    for ti, content in small:
        assert (env.dest / ti.name).read_bytes() == content
    assert hashlib.sha256((env.dest / "big").read_bytes()).digest() == (
        hashlib.sha256(payload).digest()
    )
    assert (env.dest / "after").read_bytes() == b"ok"
    assert r.content_size == len(payload) + 2 + sum(ti.size for ti, _ in small)


def test_open_decompressed() -> None:
    data = normal_layer()
    for blob in (data, gzip_bytes(data), zstd_bytes(data)):
        assert open_decompressed(io.BytesIO(blob)).read() == data
    with pytest.raises(InvalidLayer, match="gzip"):
        open_decompressed(io.BytesIO(gzip_bytes(data)[:-10])).read()
    with pytest.raises(InvalidLayer, match="zstd"):
        open_decompressed(io.BytesIO(zstd_bytes(data)[:-3])).read()


class _FailingStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._data.readinto(b)
        if not n:
            raise ConnectionResetError("network went away")
        return n


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_stream_errors_propagate_unchanged(env: Env, kind: str) -> None:
    data = make_tar(reg("f", b"x" * 5000))[:3000]
    blob = {"none": data, "gzip": gzip_bytes(data), "zstd": zstd_bytes(data)}[kind]
    with pytest.raises(ConnectionResetError):
        unpack_layer(_FailingStream(blob), env.dest)  # type: ignore[arg-type]


# --- whiteouts ------------------------------------------------------------------------------


def is_whiteout(p: Path) -> bool:
    st = p.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def test_whiteouts_and_opaque_dirs(env: Env) -> None:
    data = make_tar(
        dir_("etc/"),
        reg("etc/.wh.motd"),
        dir_("var/"),
        reg("var/.wh..wh..opq"),
        reg("var/new", b"new"),
        reg(".wh..wh.plnk"),  # aufs metadata: ignored
        dir_(".wh..wh.aufs/"),
        reg("gone-dir/x", b"x"),
        sym("gone-dir/out", str(env.outside)),
        reg(".wh.gone-dir"),  # a later whiteout removes what this layer put there
        reg(".wh.gone-file-from-lower"),
    )
    unpack(data, env.dest)
    d = env.dest
    assert is_whiteout(d / "etc/motd")
    assert is_whiteout(d / "gone-dir")
    assert is_whiteout(d / "gone-file-from-lower")
    assert xattr(d / "var", "trusted.overlay.opaque") == b"y"
    assert (d / "var/new").read_bytes() == b"new"  # the opaque dir keeps its own content
    assert xattr(d / "etc", "trusted.overlay.opaque") is None
    assert sorted(p.name for p in d.iterdir()) == ["etc", "gone-dir", "gone-file-from-lower", "var"]
    assert sorted(p.name for p in (d / "etc").iterdir()) == ["motd"]


def test_file_after_whiteout_replaces_it(env: Env) -> None:
    unpack(make_tar(reg(".wh.f"), reg("f", b"back")), env.dest)
    assert (env.dest / "f").read_bytes() == b"back"


def test_overlay_mount_applies_whiteouts(env: Env, tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "opq").mkdir(parents=True)
    (lower / "keep").write_text("keep")
    (lower / "gone").write_text("gone")
    (lower / "gone-dir").mkdir()
    (lower / "gone-dir" / "f").write_text("f")
    (lower / "opq" / "old").write_text("old")
    data = make_tar(
        reg(".wh.gone"),
        reg(".wh.gone-dir"),
        dir_("opq/"),
        reg("opq/.wh..wh..opq"),
        reg("opq/new", b"new"),
        reg("added", b"added"),
    )
    unpack(gzip_bytes(data), env.dest)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={env.dest}:{lower}", str(mnt)],
        check=True,
    )
    try:
        assert sorted(p.name for p in mnt.iterdir()) == ["added", "keep", "opq"]
        assert sorted(p.name for p in (mnt / "opq").iterdir()) == ["new"]
        assert (mnt / "keep").read_text() == "keep"
        assert (mnt / "added").read_text() == "added"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert str(mnt) not in Path("/proc/mounts").read_text()


# --- duplicate entries ----------------------------------------------------------------------


def test_duplicates_later_entry_wins(env: Env) -> None:
    data = make_tar(
        reg("f", b"first", mode=0o600),
        reg("f", b"second", mode=0o640),
        dir_("d/", mode=0o700, mtime=MTIME - 9),
        reg("d/child", b"c"),
        dir_("d/", mode=0o750, mtime=MTIME - 7),  # metadata update only, child stays
        reg("f2dir", b"file"),
        dir_("f2dir/"),
        reg("dir2file/a/b", b"b"),
        sym("dir2file/a/out", str(env.outside)),
        sym("dir2file/a/up", "../../.."),
        reg("dir2file", b"now a file"),
        sym("s", str(env.outside)),
        reg("s", b"not a symlink any more"),
        hard("h", "f"),
        hard("h", "f"),
        hard("f", "f"),  # a link to itself is a no-op
    )
    unpack(data, env.dest)
    d = env.dest
    assert (d / "f").read_bytes() == b"second"
    assert stat.S_IMODE((d / "f").stat().st_mode) == 0o640
    st = (d / "d").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o750, (MTIME - 7) * 10**9)
    assert (d / "d/child").read_bytes() == b"c"
    assert (d / "f2dir").is_dir()
    assert (d / "dir2file").read_bytes() == b"now a file"
    assert (d / "s").read_bytes() == b"not a symlink any more"
    assert (d / "f").stat().st_nlink == 2


def test_absolute_and_dotted_names_are_normalised(env: Env) -> None:
    data = make_tar(reg("/abs/evil", b"inside"), reg("./rel//x/./y", b"y"), reg("///z", b"z"))
    unpack(data, env.dest)
    assert (env.dest / "abs/evil").read_bytes() == b"inside"
    assert (env.dest / "rel/x/y").read_bytes() == b"y"
    assert (env.dest / "z").read_bytes() == b"z"
    assert not Path("/abs/evil").exists()


# --- hostile layers -------------------------------------------------------------------------


def _hostile(env: Env) -> dict[str, bytes]:
    out = str(env.outside)
    null_name = tarfile.TarInfo("innocent")
    null_name.pax_headers = {"path": "a\x00b"}
    return {
        "dotdot": make_tar(reg("../evil", b"x")),
        "dotdot-deep": make_tar(reg("../../../../../../tmp/evil", b"x")),
        "dotdot-middle": make_tar(reg("a/../../evil", b"x")),
        "dotdot-dir": make_tar(dir_("a/../../evil/")),
        "symlink-abs-then-write": make_tar(sym("a", out), reg("a/passwd", b"pwned")),
        "symlink-abs-then-dir": make_tar(sym("a", out), dir_("a/newdir/")),
        "symlink-abs-then-symlink": make_tar(sym("a", out), sym("a/ln", "/")),
        "symlink-deep-then-write": make_tar(sym("a", out), reg("a/sub/keep", b"pwned")),
        "symlink-dotdot-then-write": make_tar(sym("a", ".."), reg("a/a/x", b"pwned")),
        "symlink-dotdot-chain": make_tar(sym("a", "../.."), reg("a/outside/passwd", b"pwned")),
        "dir-replaced-by-symlink": make_tar(
            dir_("a/"), reg("a/f", b"f"), sym("a", out), reg("a/passwd", b"pwned")
        ),
        "symlink-then-whiteout": make_tar(sym("a", out), reg("a/.wh.passwd")),
        "symlink-then-opaque": make_tar(sym("a", f"{out}/sub"), reg("a/.wh..wh..opq")),
        "hardlink-etc-passwd": make_tar(hard("pw", "/etc/passwd")),
        "hardlink-outside-abs": make_tar(hard("pw", f"{out}/passwd")),
        "hardlink-dotdot": make_tar(hard("pw", "../../../outside/passwd")),
        "hardlink-through-symlink": make_tar(sym("s", out), hard("pw", "s/passwd")),
        "hardlink-through-inner-symlink": make_tar(
            dir_("d/"), reg("d/f", b"f"), sym("s", "d"), hard("x", "s/f")
        ),
        "hardlink-not-yet-extracted": make_tar(hard("x", "later"), reg("later", b"l")),
        "hardlink-to-dir": make_tar(dir_("d/"), hard("x", "d")),
        "nul-in-name": make_tar((null_name, None)),
        "empty-name-file": make_tar(reg("./", b"")),
        "sparse": make_tar((_with_pax(reg("sp", b"")[0], {"GNU.sparse.major": "1"}), None)),
        "whiteout-dotdot": make_tar(reg("a/.wh..."), reg("a/.wh..")),
    }


def _with_pax(ti: tarfile.TarInfo, pax: dict[str, str]) -> tarfile.TarInfo:
    ti.pax_headers = {**ti.pax_headers, **pax}
    return ti


HOSTILE = [
    "dotdot",
    "dotdot-deep",
    "dotdot-middle",
    "dotdot-dir",
    "symlink-abs-then-write",
    "symlink-abs-then-dir",
    "symlink-abs-then-symlink",
    "symlink-deep-then-write",
    "symlink-dotdot-then-write",
    "symlink-dotdot-chain",
    "dir-replaced-by-symlink",
    "symlink-then-whiteout",
    "symlink-then-opaque",
    "hardlink-etc-passwd",
    "hardlink-outside-abs",
    "hardlink-dotdot",
    "hardlink-through-symlink",
    "hardlink-through-inner-symlink",
    "hardlink-not-yet-extracted",
    "hardlink-to-dir",
    "nul-in-name",
    "empty-name-file",
    "sparse",
    "whiteout-dotdot",
]


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("kind", ["none", "gzip"])
def test_hostile_layers_are_rejected(env: Env, case: str, kind: str) -> None:
    data = _hostile(env)[case]
    blob = gzip_bytes(data) if kind == "gzip" else data
    etc_passwd = os.stat("/etc/passwd")
    with pytest.raises(InvalidLayer) as info:
        unpack(blob, env.dest)
    assert info.value.message
    assert os.stat("/etc/passwd").st_nlink == etc_passwd.st_nlink
    assert not Path("/tmp/evil").exists()
    assert not [t for t in threading.enumerate() if t.name == "moorage-unpack"]
    # env fixture asserts the sentinel tree is untouched


def test_hostile_messages_name_the_entry(env: Env) -> None:
    with pytest.raises(InvalidLayer, match=r"'a/\.\./\.\./evil'.*'\.\.'"):
        unpack(_hostile(env)["dotdot-middle"], env.dest)
    with pytest.raises(InvalidLayer, match=r"'a'.*symlink"):
        unpack(_hostile(env)["symlink-abs-then-write"], env.dest)
    with pytest.raises(InvalidLayer, match=r"hard link 'x'.*'later'"):
        unpack(_hostile(env)["hardlink-not-yet-extracted"], env.dest)


def _zero_stream_tar(size: int) -> Iterator[bytes]:
    ti = tarfile.TarInfo("zeros")
    ti.size = size
    yield ti.tobuf(format=tarfile.PAX_FORMAT)
    chunk = bytes(1 << 20)
    left = size
    while left:
        n = min(left, len(chunk))
        yield chunk[:n]
        left -= n
    yield bytes(1024)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decompression_bomb(env: Env, kind: str) -> None:
    size = 200 << 20
    out = io.BytesIO()
    if kind == "gzip":
        comp = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)  # gzip framing
        for part in _zero_stream_tar(size):
            out.write(comp.compress(part))
        out.write(comp.flush())
    else:
        with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as zw:
            for part in _zero_stream_tar(size):
                zw.write(part)
    blob = out.getvalue()
    assert len(blob) < 2 << 20
    with pytest.raises(InvalidLayer, match=f"layer exceeds the size limit of {10 << 20} bytes"):
        unpack(blob, env.dest, max_size=10 << 20)
    assert sum(p.stat().st_size for p in env.dest.rglob("*")) <= 11 << 20


def test_size_limit_counts_uncompressed_layers_too(env: Env) -> None:
    data = make_tar(reg("f", b"x" * 100_000))
    with pytest.raises(InvalidLayer, match="size limit"):
        unpack(data, env.dest, max_size=50_000)


def test_missing_trailer_ends_at_an_entry_boundary(env: Env) -> None:
    # Go's archive/tar, and so Docker, takes end of data between entries as the end
    data = make_tar(reg("f", b"first"), reg("g", b"second"))
    res = unpack_layer(io.BytesIO(data[:1024]), env.dest)  # header + "first" padded
    assert (env.dest / "f").read_bytes() == b"first"
    assert not (env.dest / "g").exists()
    assert res.files == 1


@pytest.mark.parametrize(
    ("name", "mutate", "match"),
    [
        ("truncated-gzip-middle", lambda d: gzip_bytes(d)[: len(gzip_bytes(d)) // 2], "gzip"),
        ("truncated-gzip-trailer", lambda d: gzip_bytes(d)[:-4], "gzip"),
        ("corrupt-gzip", lambda d: _flip(gzip_bytes(d), 40), "gzip"),
        ("gzip-garbage-after", lambda d: gzip_bytes(d) + b"garbage!", "gzip"),
        ("truncated-zstd-middle", lambda d: zstd_bytes(d)[: len(zstd_bytes(d)) // 2], "zstd"),
        ("truncated-zstd-checksum", lambda d: zstd_bytes(d)[:-2], "zstd"),
        ("corrupt-zstd", lambda d: _flip(zstd_bytes(d), 30), "zstd"),
        ("truncated-tar-data", lambda d: d[:1500], "truncated tar"),
        ("truncated-tar-header", lambda d: d[:700], "truncated tar"),
        ("corrupt-header", lambda d: _flip(d, 3), "checksum"),
        ("garbage", lambda d: os.urandom(4096), "checksum"),
        ("bad-octal", lambda d: _bad_octal(d), "bad size"),
        ("data-after-one-zero-block", lambda d: _odd_end(d), "end-of-archive"),
    ],
)
def test_corrupt_streams(env: Env, name: str, mutate: Any, match: str) -> None:
    data = make_tar(reg("f", os.urandom(2000)), reg("g", os.urandom(3000)))
    with pytest.raises(InvalidLayer, match=match):
        unpack(mutate(data), env.dest)


def _flip(b: bytes, i: int) -> bytes:
    a = bytearray(b)
    a[i] ^= 0x5A
    return bytes(a)


def _first_entry_end(d: bytes) -> int:
    return 512 + 2048  # header + 2000 bytes padded: the tar ends cleanly after one entry


def _bad_octal(d: bytes) -> bytes:
    a = bytearray(d)
    a[124:136] = b"0000000x000\0"
    a[148:156] = b"        "
    a[148:156] = b"%06o\0 " % sum(a[:512])
    return bytes(a)


def _odd_end(d: bytes) -> bytes:
    body = d[: 512 + 2048 + 512 + 3072]
    return body + bytes(512) + b"x" * 512


def test_unknown_entry_type_is_rejected(env: Env) -> None:
    ti, _ = reg("weird")
    ti.type = b"Q"
    with pytest.raises(InvalidLayer, match="unsupported tar entry type"):
        unpack(make_tar((ti, None)), env.dest)
