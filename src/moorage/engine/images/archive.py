"""``load`` and ``save``: docker-archive and OCI-layout tarballs, streamed in one pass.

Loading reads the tarball once, front to back (so it works from a pipe): every blob-like
member goes straight into the content store, small JSON documents are kept in memory; then
``manifest.json`` (docker-archive) or ``index.json`` (OCI layout) says which images to record.
Saving writes an OCI layout plus Docker's ``manifest.json`` and ``repositories``, which both
``docker load`` and OCI tools read; blob bodies are copied with ``sendfile``.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from moorage.engine.images.layers import (
    LayerInfo,
    ensure_layer,
    layer_from_stream,
    manifest_for,
    record_image,
)
from moorage.engine.images.service import ImageRecord, ImageService, familiar
from moorage.errors import (
    DigestMismatch,
    InvalidArchive,
    InvalidArgument,
    InvalidReference,
    MoorageError,
    NotFound,
)
from moorage.oci import mediatypes as mt
from moorage.oci.config import ImageConfig
from moorage.oci.digest import Digest
from moorage.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from moorage.oci.platform import host_platform, select_manifest
from moorage.oci.reference import parse_reference
from moorage.store import Store

_SMALL = 8 << 20  # JSON documents up to this size are also kept in memory
_MAX_KEPT = 64 << 20  # ... up to this much in all; the rest is read back from the store
_BLOB_NAME = re.compile(r"^blobs/(sha256|sha512)/([a-f0-9]+)$")
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


@dataclass
class LoadResult:
    loaded: list[str] = field(default_factory=list)  # familiar tags, or image ids
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (tag, old image id)


@dataclass
class _Member:
    digest: Digest
    size: int
    data: bytes | None  # kept for small members


class _ArchiveReader:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.members: dict[str, _Member] = {}
        self.links: dict[str, str] = {}
        self._kept = 0  # bytes of members held in memory

    def read(self, stream: BinaryIO) -> None:
        try:
            # a file is read with large direct reads; a pipe through tarfile's stream mode
            if stream.seekable():
                tf = tarfile.open(fileobj=stream, mode="r:*")  # noqa: SIM115 (closed below)
            else:
                tf = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InvalidArchive(f"invalid image archive: not a tar file ({e})") from None
        try:
            for m in tf:
                name = _clean(m.name)
                if m.issym():
                    self.links[name] = _clean(posixpath.join(posixpath.dirname(name), m.linkname))
                elif m.islnk():
                    self.links[name] = _clean(m.linkname)
                elif m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    self._member(name, m.size, f)
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise InvalidArchive(f"invalid image archive: {e}") from None
        finally:
            tf.close()

    def _member(self, name: str, size: int, f: IO[bytes]) -> None:
        expected: Digest | None = None
        bm = _BLOB_NAME.match(name)
        if bm:
            try:
                expected = Digest.parse(f"{bm.group(1)}:{bm.group(2)}")
            except MoorageError:
                raise InvalidArchive(f"invalid image archive: bad blob name {name}") from None
        small = size <= _SMALL and self._kept + size <= _MAX_KEPT
        if small and (bm or not name.endswith("layer.tar")):
            self._kept += size
            data = f.read()
            if len(data) != size:
                raise InvalidArchive(f"invalid image archive: {name} is truncated")
            digest = Digest.of(data)
            if expected is not None and expected != digest:
                raise DigestMismatch(
                    f"invalid image archive: {name} does not match its digest (got {digest})"
                )
            if bm:
                self.store.content.put(data, expected)
            self.members[name] = _Member(digest, size, data)
            return
        head = f.read(512)
        body = cast(IO[bytes], _Prefixed(head, f))
        if _looks_like_layer(head):
            # unpack while storing: one pass over the bytes instead of write-then-reread
            info = layer_from_stream(self.store, body, expected_blob=expected)
            if info.blob_size != size:
                raise InvalidArchive(f"invalid image archive: {name} is truncated")
            self.members[name] = _Member(info.blob_digest, size, None)
            return
        with self.store.content.writer() as w:
            n = w.copy_from(body)
            if n != size:
                raise InvalidArchive(f"invalid image archive: {name} is truncated")
            try:
                digest = w.commit(expected)
            except DigestMismatch:
                raise DigestMismatch(
                    f"invalid image archive: {name} does not match its digest (got {w.digest})"
                ) from None
        self.members[name] = _Member(digest, size, None)

    def member(self, name: str) -> _Member:
        seen = 0
        name = _clean(name)
        while name in self.links and seen < 32:
            name = self.links[name]
            seen += 1
        try:
            return self.members[name]
        except KeyError:
            raise InvalidArchive(f"invalid image archive: {name} is missing") from None

    def json(self, name: str) -> Any:
        m = self.member(name)
        data = m.data if m.data is not None else self.store.content.read(m.digest)
        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidArchive(f"invalid image archive: {name} is not valid JSON: {e}") from None


def _looks_like_layer(head: bytes) -> bool:
    """A tar header (ustar/GNU magic), or a gzip or zstd stream."""
    return head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd"))


class _Prefixed(io.RawIOBase):
    """``head`` (already read) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out = bytes(self._head) + self._rest.read()
                self._head = memoryview(b"")
                return out
            out = bytes(self._head[:n])
            self._head = self._head[n:]
            return out
        return self._rest.read(n)


def _clean(name: str) -> str:
    n = posixpath.normpath("/" + name).lstrip("/")
    return n


def load(images: ImageService, stream: BinaryIO) -> LoadResult:
    """``moor load``: every image (and every tag) in a docker-archive or OCI-layout tar."""
    store = images.store
    with store.adding():
        reader = _ArchiveReader(store)
        reader.read(stream)
        if "manifest.json" in reader.members:
            return _loaded(images, _load_docker(images, reader))
        if "index.json" in reader.members:
            return _loaded(images, _load_oci(images, reader))
        if "repositories" in reader.members:
            raise InvalidArchive(
                "invalid image archive: legacy (pre-1.10) Docker archives without "
                "manifest.json are not supported"
            )
        raise InvalidArchive(
            "invalid image archive: it holds neither manifest.json (docker-archive) nor "
            "index.json (OCI layout)"
        )


def _loaded(images: ImageService, result: LoadResult) -> LoadResult:
    from moorage.engine.events import record_event

    for name in result.loaded:
        rec = images.find(name)
        record_event(images.store, "image", "load", str(rec.id) if rec else name, {"name": name})
    return result


def _load_docker(images: ImageService, reader: _ArchiveReader) -> LoadResult:
    entries = reader.json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise InvalidArchive("invalid image archive: manifest.json must be a non-empty list")
    result = LoadResult()
    for i, entry in enumerate(entries):
        where = f"manifest.json entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArchive(f"invalid image archive: {where} has no Config")
        layer_names = entry.get("Layers")
        if not isinstance(layer_names, list) or not all(isinstance(x, str) for x in layer_names):
            raise InvalidArchive(f"invalid image archive: {where} has no Layers list")
        config_member = reader.member(entry["Config"])
        _check_named_digest(entry["Config"], config_member.digest)
        blobs = [reader.member(name).digest for name in layer_names]
        tags = _docker_repo_tags(entry.get("RepoTags"), where)
        _import_image(images, reader, config_member, blobs, tags, result)
    return result


def _load_oci(images: ImageService, reader: _ArchiveReader) -> LoadResult:
    index = reader.json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArchive("invalid image archive: index.json has no manifests list")
    result = LoadResult()
    for i, desc in enumerate(index["manifests"]):
        if not isinstance(desc, dict):
            raise InvalidArchive(
                f"invalid image archive: index.json manifests[{i}] is not an object"
            )
        annotations = desc.get("annotations") or {}
        tags = _oci_ref_names(annotations)
        manifest = _oci_manifest(reader, desc, f"index.json manifests[{i}]")
        config_member = reader.member(f"blobs/{str(manifest.config.digest).replace(':', '/')}")
        blobs = [layer.digest for layer in manifest.layers]
        for d in blobs:
            reader.member(f"blobs/{str(d).replace(':', '/')}")
        _import_image(images, reader, config_member, blobs, tags, result)
    return result


def _oci_manifest(reader: _ArchiveReader, desc: dict[str, Any], where: str) -> ImageManifest:
    for _ in range(4):  # nested indexes, bounded
        try:
            digest = Digest.parse(str(desc.get("digest")))
        except MoorageError:
            raise InvalidArchive(f"invalid image archive: {where} has a bad digest") from None
        m = reader.member(f"blobs/{digest.algorithm}/{digest.hex}")
        raw = m.data if m.data is not None else reader.store.content.read(m.digest)
        try:
            doc = parse_manifest(raw, desc.get("mediaType"))
        except MoorageError as e:
            raise InvalidArchive(f"invalid image archive: {where}: {e}") from None
        if isinstance(doc, ImageIndex):
            chosen = select_manifest(list(doc.manifests), host_platform())
            desc = chosen.to_json()
            continue
        return doc
    raise InvalidArchive(f"invalid image archive: {where}: indexes nested too deep")


def _oci_ref_names(annotations: dict[str, Any]) -> list[str]:
    for key in (_CONTAINERD_NAME, _REF_NAME):
        name = annotations.get(key)
        if isinstance(name, str) and name:
            try:
                ref = parse_reference(name)
            except InvalidReference:
                continue  # a bare tag like "latest" names no repository
            if ref.digest is None and ref.tag is not None:
                return [str(ref)]
    return []


def _docker_repo_tags(raw: object, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArchive(f"invalid image archive: {where} RepoTags must be a list")
    out = []
    for t in raw:
        try:
            ref = parse_reference(str(t))
        except InvalidReference as e:
            raise InvalidArchive(f"invalid image archive: {where}: {e}") from None
        if ref.digest is not None:
            raise InvalidArchive(f"invalid image archive: {where}: RepoTags holds a digest: {t}")
        out.append(str(ref.with_default_tag()))
    return out


def _check_named_digest(name: str, digest: Digest) -> None:
    """A config named ``<hex>.json`` or ``blobs/sha256/<hex>`` must hash to that hex."""
    base = posixpath.basename(name)
    stem = base[:-5] if base.endswith(".json") else base
    if re.fullmatch(r"[a-f0-9]{64}", stem) and stem != digest.hex:
        raise DigestMismatch(
            f"invalid image archive: {name} does not match its digest (got {digest})"
        )


def _import_image(
    images: ImageService,
    reader: _ArchiveReader,
    config_member: _Member,
    blobs: Sequence[Digest],
    tags: Sequence[str],
    result: LoadResult,
) -> None:
    store = images.store
    raw_config = config_member.data
    if raw_config is None:
        raw_config = store.content.read(config_member.digest)
    try:
        config = ImageConfig.from_json(raw_config)
    except MoorageError as e:
        raise InvalidArchive(f"invalid image archive: image config: {e}") from None
    diff_ids = list(config.rootfs.diff_ids)
    if len(diff_ids) != len(blobs):
        raise InvalidArchive(
            f"invalid image archive: the config lists {len(diff_ids)} layers "
            f"but the manifest {len(blobs)}"
        )
    config_digest = store.content.put(raw_config)
    layers: list[LayerInfo] = []
    for blob, diff_id in zip(blobs, diff_ids, strict=True):
        layers.append(ensure_layer(store, blob, diff_id))
    manifest = manifest_for(config_digest, len(raw_config), layers)
    moved = record_image(
        store,
        manifest=manifest,
        manifest_media_type=mt.OCI_MANIFEST,
        config_digest=config_digest,
        created=config.created,
        os_name=config.os or "linux",
        architecture=config.architecture or "",
        layers=layers,
        tags=tags,
    )
    result.renamed.extend(moved)
    if tags:
        result.loaded.extend(familiar(t) for t in tags)
    else:
        result.loaded.append(str(config_digest))


# ---- save ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SaveImage:
    rec: ImageRecord
    tags: tuple[str, ...]  # normalised references to name in the archive


def _select_for_save(images: ImageService, names: Iterable[str]) -> list[_SaveImage]:
    chosen: dict[str, tuple[ImageRecord, list[str]]] = {}
    for name in names:
        rec = images.resolve(name)
        entry = chosen.setdefault(str(rec.id), (rec, []))
        tags: list[str] = []
        try:
            ref = parse_reference(name)
        except InvalidReference:
            ref = None
        if ref is not None and not rec.id.hex.startswith(name.removeprefix("sha256:")):
            if ref.tag is None and ref.digest is None:
                # a bare repository name saves every tag of that repository
                for other in images.ls():
                    for t in other.tags:
                        if parse_reference(t).name == ref.name:
                            chosen.setdefault(str(other.id), (other, []))[1].append(t)
                continue
            if ref.digest is None:
                tags.append(str(ref.with_default_tag()))
        entry[1].extend(t for t in tags if t not in entry[1])
    return [_SaveImage(rec, tuple(dict.fromkeys(tags))) for rec, tags in chosen.values()]


def save(
    images: ImageService, names: Sequence[str], out: BinaryIO, *, fmt: str = "docker-archive"
) -> None:
    """``moor save``: write the images to ``out`` as a docker-archive or an OCI archive."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise InvalidArgument(f"unknown --format {fmt!r}: use docker-archive or oci-archive")
    if not names:
        raise InvalidArgument("save needs at least one image")
    selected = _select_for_save(images, names)
    from moorage.engine.events import record_event
    from moorage.engine.images.service import familiar

    for item in selected:
        name = familiar(item.tags[0]) if item.tags else str(item.rec.id)
        record_event(images.store, "image", "save", str(item.rec.id), {"name": name})
    store = images.store
    writer = _TarWriter(out)
    written: set[str] = set()
    index_entries: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    writer.directory("blobs/")
    writer.directory("blobs/sha256/")
    for item in selected:
        rec = item.rec
        manifest_raw = store.content.read(rec.manifest_digest)
        manifest = parse_manifest(manifest_raw, rec.manifest_media_type)
        if not isinstance(manifest, ImageManifest):
            raise InvalidArgument(f"image {rec.short_id} has an index, not a manifest")
        layer_paths = []
        for desc in manifest.layers:
            path = f"blobs/sha256/{desc.digest.hex}"
            layer_paths.append(path)
            if path not in written:
                writer.blob(path, store.content.path_of(desc.digest))
                written.add(path)
        for d in (rec.id, rec.manifest_digest):
            path = f"blobs/sha256/{d.hex}"
            if path not in written:
                writer.blob(path, store.content.path_of(d))
                written.add(path)
        base = {
            "mediaType": rec.manifest_media_type,
            "digest": str(rec.manifest_digest),
            "size": len(manifest_raw),
        }
        for tag in item.tags or (None,):
            entry = dict(base)
            if tag is not None:
                ref = parse_reference(tag)
                entry["annotations"] = {_CONTAINERD_NAME: str(ref), _REF_NAME: ref.tag or ""}
                repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = rec.id.hex
            index_entries.append(entry)
        docker_manifest.append(
            {
                "Config": f"blobs/sha256/{rec.id.hex}",
                "RepoTags": [familiar(t) for t in item.tags] or None,
                "Layers": layer_paths,
            }
        )
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
    writer.file("index.json", _json(index))
    if fmt == "docker-archive":
        writer.file("manifest.json", _json(docker_manifest))
        if repositories:
            writer.file("repositories", _json(repositories))
    writer.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    writer.close()


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class _TarWriter:
    """A minimal streaming tar writer: headers from tarfile, bodies by sendfile."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.out.flush()
        try:
            self.fd: int | None = out.fileno()
        except (OSError, io.UnsupportedOperation, AttributeError):
            self.fd = None

    def _write(self, data: bytes) -> None:
        if self.fd is not None:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        else:
            self.out.write(data)

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.type = kind
        ti.mode = mode
        ti.mtime = 0
        self._write(ti.tobuf(format=tarfile.PAX_FORMAT))

    def directory(self, name: str) -> None:
        self._header(name, 0, tarfile.DIRTYPE, 0o755)

    def file(self, name: str, data: bytes) -> None:
        self._header(name, len(data), tarfile.REGTYPE, 0o644)
        self._write(data)
        self._pad(len(data))

    def blob(self, name: str, path: os.PathLike[str] | str) -> None:
        try:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {os.path.basename(path)} is missing from the store") from None
        try:
            size = os.fstat(src).st_size
            self._header(name, size, tarfile.REGTYPE, 0o644)
            self._copy(src, size)
        finally:
            os.close(src)
        self._pad(size)

    def _copy(self, src: int, size: int) -> None:
        offset = 0
        if self.fd is not None:
            try:
                while offset < size:
                    n = os.sendfile(self.fd, src, offset, min(size - offset, 1 << 30))
                    if n == 0:
                        break
                    offset += n
            except OSError:
                pass  # not sendfile-able (e.g. some pipes): fall back to read/write
        while offset < size:
            chunk = os.pread(src, min(1 << 20, size - offset), offset)
            if not chunk:
                raise MoorageError("a blob shrank while it was being saved")
            self._write(chunk)
            offset += len(chunk)

    def _pad(self, size: int) -> None:
        rem = size % tarfile.BLOCKSIZE
        if rem:
            self._write(b"\0" * (tarfile.BLOCKSIZE - rem))

    def close(self) -> None:
        self._write(b"\0" * (tarfile.BLOCKSIZE * 2))
        if self.fd is None:
            self.out.flush()
