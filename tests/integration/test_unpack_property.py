"""Property: whatever a layer contains, extraction never touches anything outside ``dest``.

Random entry sequences are drawn from a tiny alphabet of names (``a``, ``b``, ``..``, ``.``,
empty components, leading ``/`` and ``./``, whiteout names) with files, directories,
symlinks (targets include absolute paths into a sentinel tree and ``..`` chains) and hard
links.  Extraction must either succeed or raise :class:`InvalidLayer`; no other exception may
escape, and a sentinel tree next to ``dest`` must be byte-for-byte and stat-for-stat unchanged.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from moorage.errors import InvalidLayer
from moorage.store.unpack import unpack_layer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)"),
]

OUT = "{OUT}"  # replaced by the sentinel directory's absolute path of each example
ROOT_PROBES = [Path("/a"), Path("/b"), Path("/x"), Path("/etc/a"), Path("/etc/b"), Path("/etc/x")]

# plain names dominate so that most sequences get past their first entry; ".." shows up
# often enough that a good share of examples are about it
component = st.sampled_from(
    ["a"] * 6 + ["b"] * 4 + ["x"] * 3 + ["..", ".", "", ".wh.a", ".wh..wh..opq"]
)
name = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from([""] * 6 + ["/", "./", "../"]),
    st.lists(component, min_size=1, max_size=4),
)
link_target = st.one_of(
    name,
    st.sampled_from(
        [
            "..",
            "../..",
            "../../..",
            "../../outside",
            "/",
            "/etc",
            OUT,
            OUT + "/sub",
            OUT + "/file",
            "a",
            "a/b",
            ".",
        ]
    ),
)
entry = st.one_of(
    st.tuples(st.just("file"), name, st.binary(max_size=64)),
    st.tuples(st.just("dir"), name, st.just("")),
    st.tuples(st.just("symlink"), name, link_target),
    st.tuples(st.just("symlink"), name, link_target),
    st.tuples(st.just("hardlink"), name, link_target),
    st.tuples(st.just("fifo"), name, st.just("")),
)


def build(entries: list[tuple[str, str, object]], out: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, path, arg in entries:
            ti = tarfile.TarInfo(path)
            ti.mode = 0o755
            data = None
            if kind == "file":
                assert isinstance(arg, bytes)
                ti.size = len(arg)
                data = io.BytesIO(arg)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            else:
                assert isinstance(arg, str)
                ti.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                ti.linkname = arg.replace(OUT, out)
            tf.addfile(ti, data)
    return buf.getvalue()


def snapshot(root: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for n in [*dirnames, *filenames]:
            p = here / n
            if p == skip:
                continue
            s = p.lstat()
            extra: object = None
            if stat.S_ISLNK(s.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(s.st_mode):
                extra = p.read_bytes()
            out[str(p.relative_to(root))] = (
                s.st_mode,
                s.st_uid,
                s.st_size,
                s.st_nlink,
                s.st_mtime_ns,
                s.st_ctime_ns,
                extra,
            )
        dirnames[:] = [d for d in dirnames if here / d != skip]
    return out


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(entries=st.lists(entry, min_size=1, max_size=10), gzip=st.booleans())
def test_nothing_outside_dest_is_touched(
    entries: list[tuple[str, str, object]], gzip: bool
) -> None:
    probes_before = [p.exists() or p.is_symlink() for p in ROOT_PROBES]
    with tempfile.TemporaryDirectory(prefix="moorage-unpack-prop-") as tmp:
        root = Path(tmp)
        outside = root / "outside"
        (outside / "sub").mkdir(parents=True)
        (outside / "file").write_bytes(b"sentinel")
        (outside / "sub" / "a").write_bytes(b"a")
        (outside / "a").symlink_to("sub")
        dest = root / "layers" / "diff"
        dest.mkdir(parents=True)
        before = snapshot(root, dest)
        before_outside = snapshot(outside, dest)

        data = build(entries, str(outside))
        if gzip:
            from isal import igzip

            data = igzip.compress(data)
        try:
            unpack_layer(io.BytesIO(data), dest)
            event("extracted")
        except InvalidLayer as e:
            event("rejected: " + re.sub(r"'[^']*'", "...", e.message)[:60])

        assert snapshot(root, dest) == before
        shutil.rmtree(dest)  # what the caller does; must not reach out of dest either
        assert snapshot(outside, dest) == before_outside
    assert [p.exists() or p.is_symlink() for p in ROOT_PROBES] == probes_before


# --- mutated tarballs: the parser must fail cleanly --------------------------------------------


def _base_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti_type, path, data, link in [
            (tarfile.DIRTYPE, "d", b"", ""),
            (tarfile.REGTYPE, "d/f", b"hello" * 30, ""),
            (tarfile.REGTYPE, "d/" + "long" * 40, b"x", ""),
            (tarfile.SYMTYPE, "d/s", b"", "../d/f"),
            (tarfile.LNKTYPE, "d/h", b"", "d/f"),
            (tarfile.CHRTYPE, "d/c", b"", ""),
            (tarfile.REGTYPE, "d/.wh.gone", b"", ""),
            (tarfile.REGTYPE, "d/.wh..wh..opq", b"", ""),
        ]:
            ti = tarfile.TarInfo(path)
            ti.type = ti_type
            ti.linkname = link
            ti.size = len(data)
            ti.mtime = 1_600_000_000.5
            ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()


BASE = _base_layer()


def _is_header(block: bytes) -> bool:
    try:
        chk = int(block[148:156].split(b"\0", 1)[0].strip() or b"x", 8)
    except ValueError:
        return False
    return chk == sum(block[:148]) + 8 * 32 + sum(block[156:])


HEADERS = [i for i in range(0, len(BASE), 512) if _is_header(BASE[i : i + 512])]


def _fix_checksums(data: bytearray) -> None:
    for off in HEADERS:
        if off + 512 <= len(data):
            data[off + 148 : off + 156] = b"        "
            data[off + 148 : off + 156] = b"%06o\0 " % sum(data[off : off + 512])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(
        st.tuples(st.integers(0, len(BASE) - 1), st.integers(1, 255)), min_size=1, max_size=6
    ),
    header_only=st.booleans(),
    fix=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, len(BASE))),
    compression=st.sampled_from(["none", "gzip", "zstd"]),
)
def test_mutated_tarballs_fail_cleanly(
    flips: list[tuple[int, int]],
    header_only: bool,
    fix: bool,
    cut: int | None,
    compression: str,
) -> None:
    data = bytearray(BASE)
    for pos, xor in flips:
        if header_only:  # aim at the header fields of some header block
            pos = HEADERS[pos % len(HEADERS)] + pos % 512
        data[pos] ^= xor
    if fix:
        _fix_checksums(data)
    blob = bytes(data[:cut] if cut is not None else data)
    if compression == "gzip":
        from isal import igzip

        blob = igzip.compress(blob)
    elif compression == "zstd":
        import zstandard

        blob = zstandard.ZstdCompressor().compress(blob)
    with tempfile.TemporaryDirectory(prefix="moorage-unpack-mut-") as tmp:
        root = Path(tmp)
        (root / "outside").mkdir()
        dest = root / "dest"
        dest.mkdir()
        before = snapshot(root, dest)
        try:
            unpack_layer(io.BytesIO(blob), dest, max_size=1 << 20)
            event("extracted")
        except InvalidLayer as e:
            event("rejected: " + re.sub(r"'[^']*'", "...", e.message)[:50])
        assert snapshot(root, dest) == before
