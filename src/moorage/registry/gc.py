"""Mark-and-sweep GC for the registry that runs while it serves and takes pushes.

Roots are every manifest revision of every repository; a manifest marks its config, its
layers and (for an index) its child manifests, so a manifest an index references is never
swept, even once its own revision was deleted. The race with pushes is closed in two ways:

* the sweep holds the storage lock exclusively, while every write that makes content
  reachable (finishing an upload, a mount, a manifest PUT, which checks its blobs exist)
  holds it shared; just before deleting, the sweep marks again from the revisions written
  since the mark began, so a manifest put during the mark keeps its blobs;
* blobs written or used (HEAD, mount, referenced by a PUT) within ``grace`` seconds of the
  start are kept: a client that has just uploaded or checked a blob and is about to put the
  manifest naming it does not find it gone. Uploads are removed only when no request is
  writing them (they are flocked meanwhile) and they were idle for ``grace`` seconds, and at
  least ten minutes.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from moorage.registry.driver import DriverNotFound
from moorage.registry.fsdriver import FilesystemDriver
from moorage.registry.storage import RegistryStorage

UPLOAD_IDLE = 600  # an upload is abandoned after this long without a write (or --grace)


@dataclass
class RegistryGCResult:
    blobs: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept: int = 0


class _Marker:
    def __init__(self, storage: RegistryStorage) -> None:
        self.storage = storage
        self.driver = storage.driver
        self.marked: set[str] = set()
        self._manifests: set[str] = set()

    def manifest(self, hexd: str) -> None:
        todo = [hexd]
        while todo:
            h = todo.pop()
            if h in self._manifests:
                continue
            self._manifests.add(h)
            self.marked.add(h)
            try:
                doc = json.loads(self.driver.get(f"blobs/sha256/{h}"))
            except (DriverNotFound, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            refs = [doc.get("config"), *(doc.get("layers") or [])]
            for ref in refs:
                if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
                    self.marked.add(ref["digest"].partition(":")[2])
            for ref in doc.get("manifests") or []:
                if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
                    todo.append(ref["digest"].partition(":")[2])

    def all_revisions(self) -> None:
        for repo in self.storage.repositories_all():
            for h in self.driver.list(f"repos/{repo}/_manifests"):
                self.manifest(h)


def collect(root: Path, *, dry_run: bool = False, grace: float = 3600) -> RegistryGCResult:
    start = time.time()
    cutoff = start - grace
    storage = RegistryStorage(FilesystemDriver(root), root)
    driver = storage.driver
    marker = _Marker(storage)
    marker.all_revisions()  # the mark runs beside pushes
    res = RegistryGCResult()
    fd = os.open(storage.lock_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no upload, mount or manifest put is midway now
        marker.all_revisions()  # what was put since the mark began
        for h in driver.list("blobs/sha256"):
            key = f"blobs/sha256/{h}"
            if h in marker.marked:
                res.kept += 1
                continue
            try:
                if driver.mtime(key) >= cutoff:
                    res.kept += 1
                    continue
                size = driver.size(key)
            except DriverNotFound:
                continue
            res.blobs.append(f"sha256:{h}")
            res.bytes_freed += size
            if not dry_run:
                driver.delete(key)
        if not dry_run:
            gone = {d.partition(":")[2] for d in res.blobs}
            for repo in storage.repositories_all():
                for h in driver.list(f"repos/{repo}/_blobs"):
                    if h in gone:
                        driver.delete(f"repos/{repo}/_blobs/{h}")
        for uid in driver.list("uploads"):
            if driver.in_use(f"uploads/{uid}/data"):
                continue
            used = 0.0
            for part in ("", "/data", "/repo"):  # a new upload may have no files yet
                try:
                    used = max(used, driver.mtime(f"uploads/{uid}{part}"))
                except DriverNotFound:
                    continue
            if used < start - max(grace, UPLOAD_IDLE):
                res.uploads.append(uid)
                if not dry_run:
                    driver.delete(f"uploads/{uid}")
    finally:
        os.close(fd)
    return res
