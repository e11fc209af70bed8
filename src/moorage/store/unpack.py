"""Streaming, hostile-safe extraction of one image layer into an overlayfs lower directory.

The layer blob is read exactly once: it is (optionally) decompressed in-process, both the
compressed bytes and the uncompressed tar stream are hashed on the way through, and the tar
stream is parsed by a small hand-written reader (ustar, GNU long names, PAX records incl.
``SCHILY.xattr.*``) that writes straight into ``dest``.

Safety model: the *content* of the layer is the adversary.  Every path is resolved relative to
a directory file descriptor of ``dest``, one component at a time with ``O_NOFOLLOW``, so a
symlink created by an earlier entry is never followed while extracting; names containing
``..`` are rejected; hard links may only point at entries already extracted into ``dest``.
Nothing outside ``dest`` is ever created, modified or removed.

On any error :func:`unpack_layer` raises and leaves a partially populated ``dest`` behind: the
caller owns ``dest`` and must remove it (e.g. with :func:`shutil.rmtree`, which does not
follow symlinks).

OCI whiteouts are converted to the overlayfs form: ``dir/.wh.name`` becomes a character device
0/0 at ``dir/name`` and ``dir/.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on ``dir``.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import queue
import re
import shutil
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

import zstandard
from isal import igzip, isal_zlib

from moorage.errors import (
    DigestMismatch,
    InvalidArgument,
    InvalidLayer,
    StoreError,
    Unsupported,
)
from moorage.oci.digest import Digest
from moorage.store.dirfds import DirFdCache

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Compression", "UnpackResult", "open_decompressed", "unpack_layer"]

Compression = Literal["auto", "none", "gzip", "zstd"]

_CHUNK = 1 << 20  # read/hash/write granularity
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_MAX_META = 8 << 20  # largest PAX header / GNU long name we accept
_MAX_DIR_CACHE = 64

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_WH_PREFIX = b".wh."
_WH_META_PREFIX = b".wh..wh."
_WH_OPAQUE = b".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# errno values that say "the store / machine is in trouble", not "the layer is bad"
_ENV_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)
_XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})

# isal's stubs declare these loosely; name them once with precise types
_IsalError = cast("type[Exception]", isal_zlib.error)
_open_gzip = cast("Callable[..., BinaryIO]", igzip.IGzipFile)

_OCTAL_RE = re.compile(rb"[0-7]+")
_PAX_TIME_RE = re.compile(rb"-?[0-9]+(\.[0-9]*)?")
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown
_MAX_DEV = 2**32 - 1
_MAX_TIME_NS = 2**63 - 1


@dataclass(frozen=True)
class UnpackResult:
    """What :func:`unpack_layer` learnt about the layer while extracting it."""

    diff_id: Digest
    """sha256 of the uncompressed tar stream."""
    compressed_digest: Digest
    """sha256 of all bytes read from the input stream (== ``diff_id`` when uncompressed)."""
    size: int
    """Uncompressed tar bytes."""
    compressed_size: int
    """Bytes read from the input stream."""
    files: int
    """Tar entries materialised in ``dest`` (files, dirs, links, devices, whiteouts)."""
    content_size: int
    """Sum of the sizes of the regular files and symlinks written (hard links not counted
    twice): the layer size Docker reports."""


# --------------------------------------------------------------------------------------------
# Input side: raw bytes -> (decompress) -> tar bytes
# --------------------------------------------------------------------------------------------


class _ReadFailed(Exception):
    """The caller's stream raised; carries the original exception through the decompressors."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _ZstdFrames:
    """Follows zstd frame and block boundaries in the compressed bytes (RFC 8878).

    The streaming zstd reader silently returns EOF when its input ends in the middle of a
    frame; this tracker notices truncation so we can report it.  It costs one Python step per
    block (blocks are up to 128 KiB).
    """

    _MAGIC, _FHD, _HDR, _BLOCK, _SKIPPABLE = range(5)

    def __init__(self) -> None:
        self._state = self._MAGIC
        self._need = 4  # header bytes to collect for the current state
        self._acc = bytearray()
        self._skip = 0  # body bytes to pass over before collecting the next header
        self._checksum = False

    def feed(self, data: memoryview) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            k = min(self._need - len(self._acc), n - i)
            self._acc += data[i : i + k]
            i += k
            if len(self._acc) == self._need:
                f = bytes(self._acc)
                self._acc.clear()
                self._advance(f)

    def _expect(self, state: int, need: int) -> None:
        self._state, self._need = state, need

    def _advance(self, f: bytes) -> None:
        st = self._state
        if st == self._MAGIC:
            if f == _ZSTD_MAGIC:
                self._expect(self._FHD, 1)
            elif int.from_bytes(f, "little") & 0xFFFFFFF0 == 0x184D2A50:
                self._expect(self._SKIPPABLE, 4)
            else:
                raise InvalidLayer("corrupt zstd stream: bad frame magic")
        elif st == self._FHD:
            d = f[0]
            if d & 0x08:
                raise InvalidLayer("corrupt zstd stream: reserved frame header bit set")
            single = (d >> 5) & 1
            self._checksum = bool((d >> 2) & 1)
            rest = (1 - single) + (0, 1, 2, 4)[d & 3] + (single, 2, 4, 8)[d >> 6]
            if rest:
                self._expect(self._HDR, rest)
            else:
                self._expect(self._BLOCK, 3)
        elif st == self._HDR:
            self._expect(self._BLOCK, 3)
        elif st == self._BLOCK:
            v = int.from_bytes(f, "little")
            last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
            if btype == 3:
                raise InvalidLayer("corrupt zstd stream: reserved block type")
            self._skip = 1 if btype == 1 else bsize
            if last:
                self._skip += 4 if self._checksum else 0
                self._expect(self._MAGIC, 4)
        else:  # skippable frame: its length
            self._skip = int.from_bytes(f, "little")
            self._expect(self._MAGIC, 4)

    def finish(self) -> None:
        if self._skip or self._acc or self._state != self._MAGIC:
            raise InvalidLayer("corrupt zstd stream: truncated frame")


class _Source(io.RawIOBase):
    """The caller's stream, with a sniffing buffer, sha256 and a byte count."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            stream, "readinto", None
        )
        self._pending = b""
        self.hasher = hashlib.sha256()
        self.count = 0
        self.tracker: _ZstdFrames | None = None

    def readable(self) -> bool:
        return True

    def _raw(self, mv: memoryview) -> int:
        try:
            if self._readinto is not None:
                n = self._readinto(mv)
            else:
                data = self._stream.read(len(mv))
                n = len(data)
                mv[:n] = data
        except Exception as e:
            raise _ReadFailed(e) from e
        if n is None:
            raise _ReadFailed(BlockingIOError("layer stream is non-blocking and has no data"))
        return n

    def peek_bytes(self, n: int) -> bytes:
        """Up to ``n`` first bytes without consuming them (only before any read)."""
        buf = bytearray(n)
        got = len(self._pending)
        buf[:got] = self._pending
        mv = memoryview(buf)
        while got < n:
            k = self._raw(mv[got:])
            if not k:
                break
            got += k
        self._pending = bytes(buf[:got])
        return self._pending

    def readinto(self, b: WriteableBuffer) -> int:
        mv = memoryview(b).cast("B")
        if self._pending:
            n = min(len(mv), len(self._pending))
            mv[:n] = self._pending[:n]
            self._pending = self._pending[n:]
        else:
            n = self._raw(mv)
        if n:
            chunk = mv[:n]
            self.hasher.update(chunk)
            self.count += n
            if self.tracker is not None:
                self.tracker.feed(chunk)
        return n

    def drain(self) -> None:
        buf = memoryview(bytearray(_CHUNK))
        while self.readinto(buf):
            pass


def _sniff(src: _Source) -> Literal["none", "gzip", "zstd"]:
    head = src.peek_bytes(4)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Decoder(io.RawIOBase):
    """Decompressed view of a :class:`_Source`; every decoding failure is an InvalidLayer."""

    def __init__(self, src: _Source, compression: Compression, *, unwrap: bool) -> None:
        super().__init__()
        if compression not in ("auto", "none", "gzip", "zstd"):
            raise InvalidArgument(f"unknown layer compression {compression!r}")
        self._src = src
        self._unwrap = unwrap
        self.kind = compression
        self._reader: Any = None  # an IGzipFile or a zstandard stream reader (has readinto)
        self._done = False
        try:
            if compression == "auto":
                self.kind = _sniff(src)
            if self.kind == "gzip":
                self._reader = _open_gzip(fileobj=src, mode="rb")
            elif self.kind == "zstd":
                src.tracker = _ZstdFrames()
                self._reader = zstandard.ZstdDecompressor().stream_reader(
                    cast(BinaryIO, src), read_size=_CHUNK, read_across_frames=True, closefd=False
                )
        except Exception as e:
            raise self._map(e) from e

    def readable(self) -> bool:
        return True

    def _map(self, e: Exception) -> BaseException:
        if isinstance(e, _ReadFailed):
            return e.original if self._unwrap else e
        if isinstance(e, InvalidLayer):
            return e
        what = {"gzip": "gzip", "zstd": "zstd"}.get(self.kind, "layer")
        msg = str(e) or type(e).__name__
        if isinstance(e, EOFError):
            msg = "truncated stream"
        return InvalidLayer(f"corrupt {what} stream: {msg}")

    def readinto(self, b: WriteableBuffer) -> int:
        if self._done:
            return 0
        try:
            n = (self._src if self._reader is None else self._reader).readinto(b) or 0
            if n == 0:
                self._done = True
                self._src.drain()  # trailing bytes still belong to the digest
                if self._src.tracker is not None:
                    self._src.tracker.finish()
            return n
        except (
            _ReadFailed,
            InvalidLayer,
            OSError,
            EOFError,
            ValueError,
            _IsalError,
            zstandard.ZstdError,
        ) as e:
            raise self._map(e) from e


def open_decompressed(stream: BinaryIO, compression: Compression = "auto") -> BinaryIO:
    """A reader of the uncompressed bytes of ``stream``.

    ``"auto"`` sniffs the magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``, anything else is
    taken as an uncompressed tar).  Corrupt or truncated compressed data raises
    :class:`InvalidLayer` while reading; errors of ``stream`` itself propagate unchanged.
    """
    return cast(BinaryIO, io.BufferedReader(_Decoder(_Source(stream), compression, unwrap=True)))


class _DirectChunks:
    """Tar bytes in chunks, decoded on the calling thread into one reused buffer."""

    def __init__(self, dec: _Decoder) -> None:
        self._dec = dec
        self._mv = memoryview(bytearray(_CHUNK))

    def next_chunk(self) -> memoryview:
        """The next chunk of tar bytes; empty at the end of the stream."""
        return self._mv[: self._dec.readinto(self._mv)]

    def close(self) -> None:
        pass


class _PrefetchChunks:
    """Tar bytes in chunks, decompressed on a worker thread while the caller writes files.

    isal, zstandard and hashlib release the GIL, so decompression (and the compressed-bytes
    digest) overlaps with the tar digest and the file writes.  A small pool of buffers bounds
    the read-ahead; errors of the worker are re-raised by :meth:`next_chunk`.
    """

    _BUFFERS = 4

    def __init__(self, dec: _Decoder) -> None:
        self._dec = dec
        self._free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
        for _ in range(self._BUFFERS):
            self._free.put(bytearray(_CHUNK))
        self._current: bytearray | None = None
        self._finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moorage-unpack", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                buf = self._free.get()
                if buf is None:
                    return
                n = self._dec.readinto(buf)
                self._full.put((buf, n))
                if not n:
                    return
        except BaseException as e:  # handed over to the consuming thread
            self._full.put(e)

    def next_chunk(self) -> memoryview:
        if self._current is not None:
            self._free.put(self._current)
            self._current = None
        if self._finished:
            return memoryview(b"")
        item = self._full.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        buf, n = item
        if not n:
            self._finished = True
            return memoryview(b"")
        self._current = buf
        return memoryview(buf)[:n]

    def close(self) -> None:
        self._stop.set()
        self._free.put(None)  # wakes a worker waiting for a buffer
        self._thread.join()


class _TarStream:
    """Buffered reader of the tar byte stream: hashes, counts and enforces the size limit."""

    def __init__(
        self, chunks: _DirectChunks | _PrefetchChunks, hasher: hashlib._Hash | None, max_size: int
    ) -> None:
        self._chunks = chunks
        self._mv = memoryview(b"")
        self._pos = 0
        self._end = 0
        self._eof = False
        self._hasher = hasher
        self._max = max_size
        self.total = 0

    def _fill(self) -> int:
        """Refill the (empty) buffer; 0 at end of stream."""
        self._pos = self._end = 0
        if self._eof:
            return 0
        self._mv = self._chunks.next_chunk()
        n = len(self._mv)
        if not n:
            self._eof = True
            return 0
        self.total += n
        if self.total > self._max:
            raise InvalidLayer(f"layer exceeds the size limit of {self._max} bytes")
        if self._hasher is not None:
            self._hasher.update(self._mv[:n])
        self._end = n
        return n

    def read_block(self) -> bytes | None:
        """The next 512-byte block, or None at a clean end of stream."""
        pos = self._pos
        if self._end - pos >= _BLOCK:
            self._pos = pos + _BLOCK
            return bytes(self._mv[pos : pos + _BLOCK])
        if self._end == pos and not self._fill():
            return None
        return self.read_exact(_BLOCK)

    def read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n:
            avail = self._end - self._pos
            if not avail:
                avail = self._fill()
                if not avail:
                    raise InvalidLayer("truncated tar stream: unexpected end of data")
            k = min(n, avail)
            parts.append(bytes(self._mv[self._pos : self._pos + k]))
            self._pos += k
            n -= k
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n:
            avail = self._end - self._pos
            if not avail:
                avail = self._fill()
                if not avail:
                    raise InvalidLayer("truncated tar stream: unexpected end of data")
            k = min(n, avail)
            self._pos += k
            n -= k

    def copy_to(self, fd: int, n: int) -> None:
        while n:
            avail = self._end - self._pos
            if not avail:
                avail = self._fill()  # replaces self._mv
                if not avail:
                    raise InvalidLayer("truncated tar stream: unexpected end of data")
            mv = self._mv
            k = min(n, avail)
            pos = self._pos
            end = pos + k
            while pos < end:
                pos += os.write(fd, mv[pos:end])
            self._pos = end
            n -= k

    def drain(self) -> None:
        while self._fill():
            pass


# --------------------------------------------------------------------------------------------
# Tar parsing
# --------------------------------------------------------------------------------------------

_REG, _AREG, _CONTIG = b"0", b"\0", b"7"
_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK, _GNU_VOLHDR = b"x", b"g", b"L", b"K", b"V"
_DATA_TYPES = frozenset({_REG, _AREG, _CONTIG})
_ENTRY_TYPES = _DATA_TYPES | {_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO}


@dataclass
class _Entry:
    name: bytes
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return repr(self.name.decode("utf-8", "backslashreplace"))


def _cstr(b: bytes) -> bytes:
    i = b.find(b"\0")
    return b if i < 0 else b[:i]


def _number(f: bytes, what: str) -> int:
    if f and f[0] & 0x80:  # GNU base-256
        if f[0] == 0xFF:
            return int.from_bytes(f, "big", signed=True)
        return int.from_bytes(bytes([f[0] & 0x7F]) + f[1:], "big")
    s = _cstr(f).strip(b" ")
    if not s:
        return 0
    if not _OCTAL_RE.fullmatch(s):
        raise InvalidLayer(f"corrupt tar header: bad {what} field {s!r}")
    return int(s, 8)


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # some writers pad with NULs
            break
        sp = data.find(b" ", pos, pos + 24)
        length_s = data[pos:sp] if sp > pos else b""
        if not length_s.isdigit():
            raise InvalidLayer("corrupt tar stream: bad PAX record length")
        length = int(length_s)
        end = pos + length
        if length <= len(length_s) + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidLayer("corrupt tar stream: bad PAX record")
        kv = data[sp + 1 : end - 1]
        eq = kv.find(b"=")
        if eq <= 0:
            raise InvalidLayer("corrupt tar stream: bad PAX record")
        records[kv[:eq]] = kv[eq + 1 :]
        pos = end
    return records


def _pax_int(v: bytes, key: str) -> int:
    if not v.isdigit() or len(v) > 20:
        raise InvalidLayer(f"corrupt tar stream: bad PAX {key} {v!r}")
    return int(v)


def _pax_time_ns(v: bytes) -> int:
    if len(v) > 40 or not _PAX_TIME_RE.fullmatch(v):
        raise InvalidLayer(f"corrupt tar stream: bad PAX mtime {v[:40]!r}")
    return int(Decimal(v.decode("ascii")) * 1_000_000_000)


def _xattr_name(raw: bytes, e: _Entry) -> str:
    if not raw or b"\0" in raw:
        raise InvalidLayer(f"invalid xattr name {raw!r} on layer entry {e.display}")
    return raw.decode("utf-8", "surrogateescape")


def _checksum_ok(blk: bytes) -> bool:
    stored = _number(blk[148:156], "checksum")
    unsigned = sum(blk) - sum(blk[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    signed = (
        unsigned
        - 256 * sum(1 for b in blk if b & 0x80)
        + 256 * sum(1 for b in blk[148:156] if b & 0x80)
    )
    return stored == signed


class _TarReader:
    """Yields entries from a tar stream (ustar, GNU, PAX); metadata headers are folded in."""

    def __init__(self, ts: _TarStream) -> None:
        self._ts = ts
        self._left = 0  # unread data bytes of the current entry
        self._pad = 0
        self._global: dict[bytes, bytes] = {}

    def _finish_entry(self) -> None:
        if self._left or self._pad:
            self._ts.skip(self._left + self._pad)
            self._left = self._pad = 0

    def copy_data(self, fd: int) -> None:
        n, self._left = self._left, 0
        self._ts.copy_to(fd, n)

    def _read_data(self, size: int, what: str) -> bytes:
        if size > _MAX_META:
            raise InvalidLayer(f"{what} of {size} bytes is too large")
        data = self._ts.read_exact(size)
        self._ts.skip(-size % _BLOCK)
        return data

    def next(self) -> _Entry | None:
        self._finish_entry()
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            blk = self._ts.read_block()
            if blk is None:
                if not pax and long_name is None and long_link is None:
                    # end of data at an entry boundary: the end, as Go's archive/tar (and so
                    # Docker) takes it; an empty stream is an empty layer
                    return None
                raise InvalidLayer("truncated tar stream: a header without its entry")
            if blk == _ZERO_BLOCK:
                blk2 = self._ts.read_block()
                if blk2 is None or blk2 == _ZERO_BLOCK:
                    return None
                raise InvalidLayer("corrupt tar stream: data after an end-of-archive block")
            if not _checksum_ok(blk):
                raise InvalidLayer("corrupt tar stream: bad header checksum")
            typ = blk[156:157]
            size = _number(blk[124:136], "size")
            if size < 0:
                raise InvalidLayer("corrupt tar header: negative size")
            if typ in (_PAX, _PAX_GLOBAL):
                recs = _parse_pax(self._read_data(size, "PAX header"))
                if typ == _PAX:
                    pax.update(recs)
                else:
                    for k, v in recs.items():
                        if v:
                            self._global[k] = v
                        else:
                            self._global.pop(k, None)
                continue
            if typ == _GNU_LONGNAME:
                long_name = _cstr(self._read_data(size, "GNU long name"))
                continue
            if typ == _GNU_LONGLINK:
                long_link = _cstr(self._read_data(size, "GNU long link name"))
                continue
            return self._entry(blk, typ, size, {**self._global, **pax}, long_name, long_link)

    def _entry(
        self,
        blk: bytes,
        typ: bytes,
        size: int,
        pax: dict[bytes, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> _Entry:
        name = _cstr(blk[0:100])
        if blk[257:263] == b"ustar\0":
            prefix = _cstr(blk[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else _cstr(blk[157:257])
        e = _Entry(
            name=name,
            type=typ,
            mode=_number(blk[100:108], "mode") & 0o7777,
            uid=_number(blk[108:116], "uid"),
            gid=_number(blk[116:124], "gid"),
            size=size,
            mtime_ns=_number(blk[136:148], "mtime") * 1_000_000_000,
            linkname=linkname,
            devmajor=0,
            devminor=0,
        )
        if typ in (_CHR, _BLK):
            e.devmajor = _number(blk[329:337], "devmajor")
            e.devminor = _number(blk[337:345], "devminor")
        for k, v in pax.items():
            if k == b"path":
                e.name = v
            elif k == b"linkpath":
                e.linkname = v
            elif k == b"size":
                e.size = _pax_int(v, "size")
            elif k == b"uid":
                e.uid = _pax_int(v, "uid")
            elif k == b"gid":
                e.gid = _pax_int(v, "gid")
            elif k == b"mtime":
                e.mtime_ns = _pax_time_ns(v)
            elif k.startswith(b"SCHILY.xattr."):
                e.xattrs[_xattr_name(k[13:], e)] = v
            elif k.startswith(b"LIBARCHIVE.xattr."):
                xname = _xattr_name(urllib.parse.unquote_to_bytes(k[17:]), e)
                try:
                    e.xattrs[xname] = base64.b64decode(v + b"=" * (-len(v) % 4))
                except ValueError:
                    raise InvalidLayer(f"corrupt tar stream: bad xattr {xname!r}") from None
            elif k.startswith(b"GNU.sparse."):
                raise InvalidLayer(f"unsupported sparse file entry {e.display}")
        if typ == _AREG and e.name.endswith(b"/"):
            e.type = _DIR  # old tars mark directories with a trailing slash
        if not (0 <= e.uid <= _MAX_ID and 0 <= e.gid <= _MAX_ID):
            raise InvalidLayer(f"corrupt tar header: bad owner for {e.display}")
        if not (0 <= e.devmajor <= _MAX_DEV and 0 <= e.devminor <= _MAX_DEV):
            raise InvalidLayer(f"corrupt tar header: bad device number for {e.display}")
        if not -_MAX_TIME_NS <= e.mtime_ns <= _MAX_TIME_NS:
            raise InvalidLayer(f"corrupt tar header: bad mtime for {e.display}")
        if e.type not in _ENTRY_TYPES and e.type != _GNU_VOLHDR:
            raise InvalidLayer(f"unsupported tar entry type {e.type!r} for {e.display}")
        # Only regular files (and unknown-but-skipped types) carry data, as in Go and tarfile.
        self._left = e.size if e.type in _DATA_TYPES or e.type == _GNU_VOLHDR else 0
        self._pad = -self._left % _BLOCK
        return e


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_Comps = tuple[bytes, ...]


def _split(name: bytes, what: str, display: str) -> _Comps:
    if b"\0" in name:
        raise InvalidLayer(f"invalid {what} in layer entry {display}: NUL byte")
    comps = tuple(c for c in name.split(b"/") if c and c != b".")
    if b".." in comps:
        raise InvalidLayer(f"invalid {what} in layer entry {display}: '..' component")
    return comps


def _show(comps: _Comps) -> str:
    return repr(b"/".join(comps).decode("utf-8", "backslashreplace"))


class _Extractor:
    def __init__(self, root_fd: int, same_owner: bool) -> None:
        self._root = root_fd
        self._same_owner = same_owner
        self._fds: DirFdCache[bytes] = DirFdCache(root_fd)
        self._dirs: dict[_Comps, tuple[int, int]] = {}  # deferred (mode, mtime_ns)
        self.files = 0
        self.content_size = 0

    def close(self) -> None:
        self._fds.close()

    # -- walking ------------------------------------------------------------------------------

    def _open_child_dir(self, pfd: int, name: bytes, comps: _Comps, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise InvalidLayer(f"{_show(comps)} does not exist in the layer") from None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidLayer(
                    f"{_show(comps)} is a symlink or not a directory; refusing to follow it"
                ) from None
            raise
        os.mkdir(name, 0o755, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        os.fchmod(fd, 0o755)
        return fd

    def _dir(self, comps: _Comps, create: bool) -> int:
        """fd of the directory at ``comps`` inside dest, never following a symlink."""
        return self._fds.walk(
            comps, lambda pfd, prefix: self._open_child_dir(pfd, prefix[-1], prefix, create)
        )

    def _forget(self, comps: _Comps) -> None:
        """``comps`` was removed: drop cached fds and deferred metadata at and below it."""
        n = len(comps)
        self._fds.forget(comps)
        for k in [k for k in self._dirs if k[:n] == comps]:
            del self._dirs[k]

    def _remove(self, pfd: int, comps: _Comps) -> None:
        base = comps[-1]
        st = os.lstat(base, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode):
            self._forget(comps)
            shutil.rmtree(base, dir_fd=pfd)  # the fd-based variant: never follows symlinks
        else:
            os.unlink(base, dir_fd=pfd)

    def _create(self, pfd: int, comps: _Comps, make: Callable[[], None]) -> None:
        """Run ``make`` (which creates comps[-1] in pfd), replacing an existing entry."""
        try:
            make()
        except FileExistsError:
            self._remove(pfd, comps)
            make()

    # -- metadata -----------------------------------------------------------------------------

    def _set_xattrs(self, target: int | str, e: _Entry, follow: bool, lenient: bool) -> None:
        for key, value in e.xattrs.items():
            if key.startswith("trusted."):
                continue
            try:
                os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError as err:
                if err.errno in _XATTR_UNSUPPORTED or (lenient and err.errno == errno.EPERM):
                    continue
                raise

    def _xattrs_by_path(self, pfd: int, base: bytes, e: _Entry) -> None:
        """xattrs on a symlink/device/fifo: no fd we could write through, so use O_PATH."""
        if not any(not k.startswith("trusted.") for k in e.xattrs):
            return
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            # /proc/self/fd/N is a magic link to exactly the inode we opened
            self._set_xattrs(f"/proc/self/fd/{fd}", e, True, lenient=True)
        except FileNotFoundError:
            pass  # no /proc: such xattrs are rare enough to drop
        finally:
            os.close(fd)

    # -- entries ------------------------------------------------------------------------------

    def apply(self, e: _Entry, reader: _TarReader) -> None:
        if e.type == _GNU_VOLHDR:
            return
        if len(self._fds) > _MAX_DIR_CACHE:
            self.close()
        comps = _split(e.name, "name", e.display)
        if not comps:
            if e.type != _DIR:
                raise InvalidLayer(f"invalid layer entry {e.display}: empty name")
            self._directory(e, ())
            return
        base = comps[-1]
        if base.startswith(_WH_PREFIX):
            self._whiteout(e, comps)
            return
        pfd = self._dir(comps[:-1], create=True)
        typ = e.type
        if typ in _DATA_TYPES:
            self._regular(e, pfd, comps, reader)
        elif typ == _DIR:
            self._directory(e, comps)
        elif typ == _SYM:
            if not e.linkname or b"\0" in e.linkname:
                raise InvalidLayer(f"invalid symlink target in layer entry {e.display}")
            self._create(pfd, comps, lambda: os.symlink(e.linkname, base, dir_fd=pfd))
            self._node_meta(e, pfd, base, chmod=False)
            self.content_size += len(e.linkname)  # a symlink's size, as Docker counts it
        elif typ == _LNK:
            self._hardlink(e, pfd, comps)
        else:
            if typ == _FIFO:
                kind, dev = stat.S_IFIFO, 0
            else:
                kind = stat.S_IFCHR if typ == _CHR else stat.S_IFBLK
                dev = os.makedev(e.devmajor, e.devminor)
            self._create(
                pfd, comps, lambda: os.mknod(base, kind | (e.mode & 0o777), dev, dir_fd=pfd)
            )
            self._node_meta(e, pfd, base, chmod=True)
        self.files += 1

    def _regular(self, e: _Entry, pfd: int, comps: _Comps, reader: _TarReader) -> None:
        base = comps[-1]
        try:
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, comps)
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if e.size:
                reader.copy_data(fd)
            if self._same_owner:
                os.fchown(fd, e.uid, e.gid)
            os.fchmod(fd, e.mode)
            self._set_xattrs(fd, e, True, lenient=False)
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(fd)
        self.content_size += e.size

    def _directory(self, e: _Entry, comps: _Comps) -> None:
        if comps:
            pfd = self._dir(comps[:-1], create=True)
            base = comps[-1]
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode):
                    self._remove(pfd, comps)
                    os.mkdir(base, 0o700, dir_fd=pfd)
        fd = self._dir(comps, create=False)
        if self._same_owner:
            os.fchown(fd, e.uid, e.gid)
        self._set_xattrs(fd, e, True, lenient=False)
        self._dirs[comps] = (e.mode, e.mtime_ns)  # applied once all children exist

    def _node_meta(self, e: _Entry, pfd: int, base: bytes, chmod: bool) -> None:
        if self._same_owner:
            os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # we just created this device/fifo, so it is not a symlink
            os.chmod(base, e.mode, dir_fd=pfd)
        self._xattrs_by_path(pfd, base, e)
        os.utime(base, ns=(e.mtime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, e: _Entry, pfd: int, comps: _Comps) -> None:
        target = _split(e.linkname, "hard link target", e.display)
        if not target:
            raise InvalidLayer(f"invalid hard link target in layer entry {e.display}: empty")
        if target == comps:
            return  # a link to itself: nothing to do
        base = comps[-1]
        try:
            os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            pass
        else:
            self._remove(pfd, comps)
        tfd = self._dir(target[:-1], create=False)
        try:
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidLayer(
                f"hard link {e.display} points at {_show(target)}, "
                "which is not an earlier entry of the layer"
            ) from None
        except PermissionError:
            raise InvalidLayer(
                f"hard link {e.display} points at {_show(target)}, which is a directory"
            ) from None

    def _whiteout(self, e: _Entry, comps: _Comps) -> None:
        base = comps[-1]
        if base == _WH_OPAQUE:
            fd = self._dir(comps[:-1], create=True)
            os.setxattr(fd, _OPAQUE_XATTR, b"y")
        elif base.startswith(_WH_META_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not for overlayfs
        else:
            name = base[len(_WH_PREFIX) :]
            if name in (b"", b".", b".."):
                raise InvalidLayer(f"invalid whiteout entry {e.display}")
            pfd = self._dir(comps[:-1], create=True)
            hidden = (*comps[:-1], name)
            self._create(
                pfd, hidden, lambda: os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            )
        self.files += 1

    def finish(self) -> None:
        """Apply directory modes and mtimes, now that no more children will be added."""
        for comps, (mode, mtime_ns) in list(self._dirs.items()):
            if len(self._fds) > _MAX_DIR_CACHE:
                self.close()
            try:
                fd = self._dir(comps, create=False)
            except InvalidLayer:
                continue
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))


def _os_error(e: OSError, entry: _Entry | None) -> Exception:
    where = f"layer entry {entry.display}" if entry is not None else "layer"
    msg = f"cannot extract {where}: {e.strerror or e}"
    if e.errno in _ENV_ERRNOS:
        return StoreError(msg)
    return InvalidLayer(msg)


def unpack_layer(
    stream: BinaryIO,
    dest: Path,
    *,
    compression: Compression = "auto",
    max_size: int = 64 * 2**30,
    expected_diff_id: Digest | None = None,
    same_owner: bool = True,
) -> UnpackResult:
    """Extract the layer tarball read from ``stream`` into the existing empty directory ``dest``.

    Raises :class:`InvalidLayer` for corrupt, truncated, oversized or hostile layers,
    :class:`DigestMismatch` when the tar stream's sha256 is not ``expected_diff_id``, and
    :class:`StoreError` when the filesystem fails (no space, I/O error).  Errors of ``stream``
    itself propagate unchanged.  On any error ``dest`` may hold a partial extraction and the
    caller must remove it; nothing outside ``dest`` is ever touched.
    """
    if expected_diff_id is not None and expected_diff_id.algorithm != "sha256":
        raise Unsupported(f"unsupported diff id algorithm {expected_diff_id.algorithm!r}")
    src = _Source(stream)
    entry: _Entry | None = None
    try:
        decoder = _Decoder(src, compression, unwrap=False)  # sniffs the magic bytes
    except _ReadFailed as e:
        raise e.original from None
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extractor(root_fd, same_owner)
    tar_hasher = None if decoder.kind == "none" else hashlib.sha256()
    try:
        chunks = _DirectChunks(decoder) if tar_hasher is None else _PrefetchChunks(decoder)
        try:
            ts = _TarStream(chunks, tar_hasher, max_size)
            reader = _TarReader(ts)
            while (entry := reader.next()) is not None:
                ex.apply(entry, reader)
            entry = None
            ex.finish()
            ts.drain()
        finally:
            chunks.close()  # stops and joins the decompression thread
    except _ReadFailed as e:
        raise e.original from None
    except OSError as e:
        raise _os_error(e, entry) from e
    finally:
        ex.close()
        os.close(root_fd)

    compressed = Digest.sha256(src.hasher.hexdigest())
    diff_id = compressed if tar_hasher is None else Digest.sha256(tar_hasher.hexdigest())
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatch(f"layer diff id mismatch: expected {expected_diff_id}, got {diff_id}")
    return UnpackResult(
        diff_id=diff_id,
        compressed_digest=compressed,
        size=ts.total,
        compressed_size=src.count,
        files=ex.files,
        content_size=ex.content_size,
    )
