"""The registry's storage service: blobs, uploads, manifests, tags and referrers on a driver.

Layout (keys of the driver)::

    blobs/sha256/<hex>                       every blob and manifest, by digest (verified)
    uploads/<uuid>/data, uploads/<uuid>/repo an upload in progress and the repository it is for
    repos/<name>/_blobs/<hex>                a blob linked into a repository (empty)
    repos/<name>/_manifests/<hex>            a manifest revision (holds its media type)
    repos/<name>/_tags/<tag>                 a tag (holds the manifest digest)
    repos/<name>/_referrers/<subject>/<hex>  a manifest whose ``subject`` is <subject> (descriptor)

Repository names follow the distribution grammar, so a name component never starts with ``_``
and never is ``..``: names and our own directories cannot collide, nor escape the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.errors import MoorageError, Unsupported
from moorage.oci import mediatypes as mt
from moorage.oci.digest import Digest
from moorage.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from moorage.registry.driver import Appender, DriverBusy, DriverNotFound, StorageDriver
from moorage.registry.errors import RegistryError

MAX_MANIFEST_SIZE = 4 * 2**20
MAX_PAGE = 1000  # the most entries one tags/list or _catalog page holds

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_UUID_RE = re.compile(r"[0-9a-f]{32}")
_SMALL_BLOB = 256 * 1024


def check_name(name: str) -> str:
    if len(name) > 255 or not NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name[:300]!r}")
    return name


def parse_digest(text: str) -> Digest:
    try:
        d = Digest.parse(text)
    except MoorageError:
        raise RegistryError("DIGEST_INVALID", f"invalid digest {text[:200]!r}") from None
    if d.algorithm != "sha256":
        raise RegistryError("UNSUPPORTED", f"digest algorithm {d.algorithm} is not supported")
    return d


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    data: bytes


@dataclass(frozen=True)
class PutResult:
    digest: Digest
    subject: Digest | None


class Upload:
    """The service's view of one upload: its id, repository and bytes so far."""

    def __init__(self, uid: str, name: str, size: int) -> None:
        self.uid = uid
        self.name = name
        self.size = size


class RegistryStorage:
    def __init__(self, driver: StorageDriver, lock_dir: Path) -> None:
        self.driver = driver
        self.lock_path = lock_dir / "gc.lock"
        self.lock_path.touch(exist_ok=True)
        # running hashes of uploads, so finishing one does not read it back; a hash whose
        # size disagrees with the file (another worker appended) is recomputed from the data
        self._hashes: dict[str, Any] = {}
        self._small: dict[str, bytes] = {}  # immutable small blobs (manifests, configs)

    # ---- locking against the garbage collector --------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held (shared) while making content reachable; the GC sweeps holding it exclusively."""
        import fcntl

        fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # ---- blobs -------------------------------------------------------------------------------

    @staticmethod
    def blob_key(d: Digest) -> str:
        return f"blobs/sha256/{d.hex}"

    @staticmethod
    def _link_key(name: str, d: Digest) -> str:
        return f"repos/{name}/_blobs/{d.hex}"

    def blob_size(self, name: str, d: Digest) -> int:
        """The size of a blob linked into ``name``; BLOB_UNKNOWN otherwise."""
        try:
            if not self.driver.exists(self._link_key(name, d)):
                raise DriverNotFound(d)
            return self.driver.size(self.blob_key(d))
        except DriverNotFound:
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown: {d}") from None

    def small_blob(self, d: Digest, size: int) -> bytes | None:
        """The content of a small blob from memory (blobs are immutable), or None if large."""
        if size > _SMALL_BLOB:
            return None
        data = self._small.get(d.hex)
        if data is None:
            try:
                data = self.driver.get(self.blob_key(d))
            except DriverNotFound:
                raise RegistryError("BLOB_UNKNOWN", f"blob unknown: {d}") from None
            if hashlib.sha256(data).hexdigest() != d.hex:
                return data  # damaged on disk: served as is (clients verify), never cached
            if len(self._small) > 4096:
                self._small.clear()
            self._small[d.hex] = data
        return data

    def touch_blob(self, name: str, d: Digest) -> None:
        """Note a use of the blob (HEAD before a push): the GC keeps recently used blobs."""
        with contextlib.suppress(DriverNotFound):
            self.driver.touch(self.blob_key(d))
            self.driver.touch(self._link_key(name, d))

    def link_blob(self, name: str, d: Digest) -> None:
        self.driver.put(self._link_key(name, d), b"")

    def mount_blob(self, name: str, d: Digest, source: str) -> bool:
        """Cross-repository mount: link a blob ``source`` has into ``name``."""
        with self.writing():
            if not self.driver.exists(self._link_key(source, d)) or not self.driver.exists(
                self.blob_key(d)
            ):
                return False
            self.driver.touch(self.blob_key(d))
            self.link_blob(name, d)
            return True

    def delete_blob(self, name: str, d: Digest) -> None:
        if not self.driver.exists(self._link_key(name, d)):
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown: {d}")
        self.driver.delete(self._link_key(name, d))

    # ---- uploads -----------------------------------------------------------------------------

    def start_upload(self, name: str) -> Upload:
        uid = uuid.uuid4().hex
        self.driver.put(f"uploads/{uid}/repo", name.encode())
        self.driver.appender(f"uploads/{uid}/data").close()
        self._hashes[uid] = (hashlib.sha256(), 0)
        return Upload(uid, name, 0)

    def get_upload(self, name: str, uid: str) -> Upload:
        if not _UUID_RE.fullmatch(uid):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload unknown: {uid[:100]!r}")
        try:
            owner = self.driver.get(f"uploads/{uid}/repo").decode()
            size = self.driver.size(f"uploads/{uid}/data")
        except DriverNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload unknown: {uid}") from None
        if owner != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload unknown: {uid}")
        return Upload(uid, name, size)

    def begin_append(self, up: Upload) -> tuple[Appender, Any]:
        """An appender for the upload and its running hash (None: recomputed at the end)."""
        h = self._hashes.pop(up.uid, None)
        if h is not None and h[1] != up.size:
            h = None
        try:
            w = self.driver.appender(f"uploads/{up.uid}/data")
        except DriverBusy:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", "another request is writing this upload"
            ) from None
        if w.size != up.size:
            w.close()
            raise RegistryError("RANGE_INVALID", "the upload changed under this request")
        return w, (h[0] if h is not None else None)

    def end_append(self, up: Upload, w: Appender, hasher: Any) -> None:
        w.close()
        up.size = w.size
        if hasher is not None:
            if len(self._hashes) > 10000:
                self._hashes.clear()
            self._hashes[up.uid] = (hasher, up.size)

    def _upload_digest(self, up: Upload) -> Digest:
        h = self._hashes.pop(up.uid, None)
        if h is not None and h[1] == up.size:
            return Digest.sha256(h[0].hexdigest())
        hasher = hashlib.sha256()
        with self.driver.open(f"uploads/{up.uid}/data") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
        return Digest.sha256(hasher.hexdigest())

    def finish_upload(self, up: Upload, expected: Digest) -> None:
        """Verify the upload against ``expected`` and commit it as a blob of ``up.name``."""
        got = self._upload_digest(up)
        if got != expected:
            self.cancel_upload(up)
            raise RegistryError(
                "DIGEST_INVALID", f"digest mismatch: expected {expected}, got {got}"
            )
        with self.writing():
            key = self.blob_key(expected)
            try:
                if not self.driver.exists(key):
                    self.driver.move(f"uploads/{up.uid}/data", key)
                self.driver.touch(key)  # new to the GC, however long the upload took
            except DriverNotFound:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload {up.uid} is gone") from None
            self.driver.delete(f"uploads/{up.uid}")
            self.link_blob(up.name, expected)

    def cancel_upload(self, up: Upload) -> None:
        self._hashes.pop(up.uid, None)
        self.driver.delete(f"uploads/{up.uid}")

    # ---- manifests -----------------------------------------------------------------------

    def _revision_key(self, name: str, d: Digest) -> str:
        return f"repos/{name}/_manifests/{d.hex}"

    def resolve(self, name: str, reference: str) -> Digest:
        if TAG_RE.fullmatch(reference):
            try:
                return Digest.parse(self.driver.get(f"repos/{name}/_tags/{reference}").decode())
            except DriverNotFound:
                if not self.repo_exists(name):
                    raise RegistryError("NAME_UNKNOWN", f"repository {name} not known") from None
                raise RegistryError(
                    "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{reference}"
                ) from None
        if ":" in reference:
            return parse_digest(reference)
        raise RegistryError("MANIFEST_INVALID", f"invalid tag or digest {reference[:200]!r}")

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        d = self.resolve(name, reference)
        try:
            media_type = self.driver.get(self._revision_key(name, d)).decode()
        except DriverNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}@{d}") from None
        data = self._small.get(d.hex)
        if data is None:
            try:
                data = self.driver.get(self.blob_key(d))
            except DriverNotFound:
                raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {d}") from None
            if hashlib.sha256(data).hexdigest() == d.hex:
                self._small[d.hex] = data
        return StoredManifest(d, media_type, data)

    def put_manifest(
        self, name: str, reference: str, data: bytes, content_type: str | None
    ) -> PutResult:
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError(
                "MANIFEST_INVALID", f"manifest is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        is_tag = bool(TAG_RE.fullmatch(reference))
        digest = Digest.of(data)
        if not is_tag:
            want = parse_digest(reference)
            if want != digest:
                raise RegistryError(
                    "DIGEST_INVALID", f"manifest digest {digest} does not match {want}"
                )
        doc = _validate_manifest(data, content_type)
        media_type = doc.effective_media_type
        with self.writing():
            self._check_references(name, doc)
            if self.driver.exists(self.blob_key(digest)):
                self.driver.touch(self.blob_key(digest))
            else:
                self.driver.put(self.blob_key(digest), data)
            self.driver.put(self._revision_key(name, digest), media_type.encode())
            subject = doc.subject.digest if doc.subject is not None else None
            if subject is not None:
                desc: dict[str, Any] = {
                    "mediaType": media_type,
                    "digest": str(digest),
                    "size": len(data),
                }
                artifact = doc.artifact_type or (
                    str(doc.config.media_type) if isinstance(doc, ImageManifest) else None
                )
                if artifact:
                    desc["artifactType"] = artifact
                if doc.annotations:
                    desc["annotations"] = dict(doc.annotations)
                self.driver.put(
                    f"repos/{name}/_referrers/{subject.hex}/{digest.hex}",
                    json.dumps(desc).encode(),
                )
            if is_tag:
                self.driver.put(f"repos/{name}/_tags/{reference}", str(digest).encode())
        return PutResult(digest, subject)

    def _check_references(self, name: str, doc: ImageManifest | ImageIndex) -> None:
        missing: list[str] = []
        if isinstance(doc, ImageManifest):
            for desc in (doc.config, *doc.layers):
                if mt.is_non_distributable(desc.media_type) and desc.urls:
                    continue
                link = self._link_key(name, desc.digest)
                if not self.driver.exists(link) or not self.driver.exists(
                    self.blob_key(desc.digest)
                ):
                    missing.append(str(desc.digest))
                else:
                    self.driver.touch(self.blob_key(desc.digest))
        else:
            for desc in doc.manifests:
                if not self.driver.exists(self._revision_key(name, desc.digest)):
                    missing.append(str(desc.digest))
        if missing:
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN",
                f"manifest references unknown blobs: {', '.join(missing[:5])}",
                detail={"digests": missing[:20]},
            )

    def delete_manifest(self, name: str, reference: str) -> None:
        if TAG_RE.fullmatch(reference):
            key = f"repos/{name}/_tags/{reference}"
            if not self.driver.exists(key):
                raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{reference}")
            self.driver.delete(key)
            return
        d = parse_digest(reference)
        key = self._revision_key(name, d)
        if not self.driver.exists(key):
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}@{d}")
        for tag in self.driver.list(f"repos/{name}/_tags"):
            with contextlib.suppress(DriverNotFound):
                if self.driver.get(f"repos/{name}/_tags/{tag}").decode() == str(d):
                    self.driver.delete(f"repos/{name}/_tags/{tag}")
        for subject in self.driver.list(f"repos/{name}/_referrers"):
            self.driver.delete(f"repos/{name}/_referrers/{subject}/{d.hex}")
        self.driver.delete(key)

    # ---- listing -------------------------------------------------------------------------

    def repo_exists(self, name: str) -> bool:
        return self.driver.exists(f"repos/{name}/_manifests") or self.driver.exists(
            f"repos/{name}/_blobs"
        )

    def tags(self, name: str) -> list[str]:
        if not self.repo_exists(name):
            raise RegistryError("NAME_UNKNOWN", f"repository {name} not known")
        return self.driver.list(f"repos/{name}/_tags")

    def repositories(self) -> list[str]:
        """Repositories that hold at least one manifest (the catalog)."""
        return self._walk(manifests_only=True)

    def repositories_all(self) -> list[str]:
        """Every repository directory, with manifests or only blobs (the GC)."""
        return self._walk(manifests_only=False)

    def _walk(self, *, manifests_only: bool) -> list[str]:
        out: list[str] = []
        todo = [""]
        while todo:
            prefix = todo.pop()
            base = f"repos/{prefix}" if prefix else "repos"
            entries = self.driver.list(base)
            if prefix and ("_manifests" in entries or (not manifests_only and "_blobs" in entries)):
                out.append(prefix)
            for e in entries:
                if not e.startswith("_"):
                    todo.append(f"{prefix}/{e}" if prefix else e)
        return sorted(out)

    def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[Any]:
        out = []
        for entry in self.driver.list(f"repos/{name}/_referrers/{subject.hex}"):
            try:
                desc = json.loads(self.driver.get(f"repos/{name}/_referrers/{subject.hex}/{entry}"))
            except (DriverNotFound, ValueError):
                continue
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return out


def _validate_manifest(data: bytes, content_type: str | None) -> ImageManifest | ImageIndex:
    """Parse a pushed manifest: ``mediaType`` required and agreeing with the body and header."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise RegistryError("MANIFEST_INVALID", "manifest is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RegistryError("MANIFEST_INVALID", "manifest is not a JSON object")
    declared = obj.get("mediaType")
    if not isinstance(declared, str) or not declared:
        raise RegistryError("MANIFEST_INVALID", "manifest has no mediaType field")
    if not (mt.is_manifest(declared) or mt.is_index(declared)):
        raise RegistryError("MANIFEST_INVALID", f"unsupported manifest mediaType {declared!r}")
    try:
        return parse_manifest(data, content_type)
    except (MoorageError, Unsupported) as e:
        raise RegistryError("MANIFEST_INVALID", str(e)) from None
