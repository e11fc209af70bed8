"""Pull and push: images between the local store and a registry (the engine's side)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Protocol

from moorage.distribution.client import RegistryClient
from moorage.engine.images.layers import (
    LayerInfo,
    ensure_layer,
    known_layer,
    layer_from_stream,
    record_image,
)
from moorage.engine.images.service import ImageService
from moorage.errors import (
    DigestMismatch,
    InvalidArgument,
    InvalidLayer,
    MoorageError,
    NotFound,
)
from moorage.oci import mediatypes as mt
from moorage.oci.config import ImageConfig
from moorage.oci.descriptor import compact_json
from moorage.oci.digest import Digest
from moorage.oci.manifest import ImageIndex, ImageManifest, parse_manifest
from moorage.oci.platform import Platform, host_platform, select_manifest
from moorage.oci.reference import Reference, parse_reference
from moorage.store import Store

CONCURRENCY = 3  # Docker's default for both directions
GZIP_LEVEL = 1  # ISA-L level 1: several times zlib's speed for a ratio close to gzip -6


class Reporter(Protocol):
    """Where transfer progress goes (the CLI draws bars on a TTY, plain lines otherwise)."""

    def message(self, text: str) -> None: ...

    def status(self, key: str, text: str) -> None: ...

    def progress(self, key: str, verb: str, done: int, total: int) -> None: ...


class _Quiet:
    def message(self, text: str) -> None:
        pass

    def status(self, key: str, text: str) -> None:
        pass

    def progress(self, key: str, verb: str, done: int, total: int) -> None:
        pass


def _counter(reporter: Reporter, key: str, verb: str, total: int) -> Callable[[int], None]:
    state = {"done": 0, "t": 0.0}

    def add(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["t"] > 0.1 or state["done"] >= total:
            state["t"] = now
            reporter.progress(key, verb, int(state["done"]), total)

    return add


Credentials = tuple[str, str]


def _client(
    ref: Reference, tls_verify: bool | None, creds: Credentials | None, stored: bool
) -> RegistryClient:
    """A client for the reference's registry, with ``creds`` when given (the API's
    X-Registry-Auth), else what ``moor login`` stored unless ``stored`` is False (the API,
    as dockerd, uses only what its client sends)."""
    from moorage.distribution import credentials

    if creds is None and stored:
        creds = credentials.lookup(ref.domain)
    return RegistryClient(ref.domain, tls_verify=tls_verify, credentials=creds)


def _note_source(store: Store, digests: Sequence[Digest], registry: str, repo: str) -> None:
    with store.db.transaction() as conn:
        conn.executemany(
            "INSERT OR IGNORE INTO blob_sources(digest, registry, repository) VALUES (?, ?, ?)",
            [(str(d), registry, repo) for d in digests],
        )


# ---- pull -----------------------------------------------------------------------------------


@dataclass
class PullResult:
    reference: str
    digest: Digest
    image_id: Digest
    downloaded: bool  # False: every layer and the image were already here


def pull(
    images: ImageService,
    name: str,
    *,
    platform: Platform | None = None,
    tls_verify: bool | None = None,
    reporter: Reporter | None = None,
    credentials: Credentials | None = None,
    stored_credentials: bool = True,
) -> PullResult:
    rep = reporter or _Quiet()
    ref = parse_reference(name)
    if ref.tag is None and ref.digest is None:
        rep.message(f"Using default tag: {ref.with_default_tag().tag}")
        ref = ref.with_default_tag()
    store = images.store
    client = _client(ref, tls_verify, credentials, stored_credentials)
    try:
        reference = str(ref.digest) if ref.digest is not None else str(ref.tag)
        top = client.get_manifest(ref.path, reference)
        shown = ref.path.removeprefix("library/") if ref.is_docker_hub else ref.path
        rep.message(f"{ref.tag or ref.digest}: Pulling from {shown}")
        manifest = top
        doc = _parse(manifest.data, manifest.media_type)
        if isinstance(doc, ImageIndex):
            want = platform or host_platform()
            chosen = select_manifest(list(doc.manifests), want)
            manifest = client.get_manifest(ref.path, str(chosen.digest))
            doc = _parse(manifest.data, manifest.media_type)
            if isinstance(doc, ImageIndex):
                raise InvalidArgument(f"{ref}: nested image indexes are not supported")
        raw_config = client.get_blob(ref.path, doc.config.digest)
        config = ImageConfig.from_json(raw_config)
        diff_ids = list(config.rootfs.diff_ids)
        layers_desc = [d for d in doc.layers]
        if len(diff_ids) != len(layers_desc):
            raise InvalidArgument(
                f"{ref}: the config lists {len(diff_ids)} layers, the manifest {len(layers_desc)}"
            )
        for d in layers_desc:
            if mt.is_non_distributable(d.media_type) and d.urls:
                raise InvalidArgument(
                    f"{ref}: foreign (non-distributable) layers are not supported"
                )
        config_digest = Digest.of(raw_config)
        try:
            existing = images.get(config_digest)
        except NotFound:
            existing = None
        with store.adding(keep_on_failure=True):
            store.content.put(raw_config)
            infos = _fetch_layers(store, client, ref, layers_desc, diff_ids, rep)
            tag = [str(ref)] if ref.tag is not None else []
            repo_digest = f"{ref.name}@{top.digest}"
            record_image(
                store,
                manifest=manifest.data,
                manifest_media_type=doc.effective_media_type,
                config_digest=config_digest,
                created=config.created,
                os_name=config.os or "linux",
                architecture=config.architecture or "",
                layers=infos,
                tags=tag,
                repo_digests=[repo_digest],
            )
            _note_source(store, [d.digest for d in layers_desc], ref.domain, ref.path)
        _event(store, "pull", ref)
        return PullResult(
            reference=str(ref),
            digest=top.digest,
            image_id=config_digest,
            downloaded=existing is None or (ref.tag is not None and str(ref) not in existing.tags),
        )
    finally:
        client.close()


def _event(store: Store, action: str, ref: Reference) -> None:
    """``pull``/``push`` events, named as Docker names them (``busybox:latest``)."""
    from moorage.engine.events import record_event

    name = ref.familiar()
    record_event(store, "image", action, name, {"name": name})


def _parse(data: bytes, media_type: str) -> ImageManifest | ImageIndex:
    try:
        return parse_manifest(data, media_type or None)
    except MoorageError as e:
        raise InvalidArgument(f"registry sent an invalid manifest: {e}") from None


def _fetch_layers(
    store: Store,
    client: RegistryClient,
    ref: Reference,
    descs: Sequence[object],
    diff_ids: Sequence[Digest],
    rep: Reporter,
) -> list[LayerInfo]:
    from moorage.oci.descriptor import Descriptor

    pairs: list[tuple[Descriptor, Digest]] = []
    for d, diff in zip(descs, diff_ids, strict=True):
        assert isinstance(d, Descriptor)
        pairs.append((d, diff))
    for d, diff in pairs:
        if known_layer(store, diff) is None:
            rep.status(d.digest.short, "Pulling fs layer")
        else:
            rep.status(d.digest.short, "Already exists")
    local = threading.local()
    unique = list({diff: (d, diff) for d, diff in pairs}.values())

    def fetch(pair: tuple[Descriptor, Digest]) -> LayerInfo:
        d, diff = pair
        if not hasattr(local, "store"):
            local.store = Store(store.root, store.runroot)
        s: Store = local.store
        have = known_layer(s, diff)
        if have is not None:
            return have
        key = d.digest.short
        if s.content.exists(d.digest):
            info = ensure_layer(s, d.digest, diff)
        else:
            stream = client.blob_stream(
                ref.path, d.digest, d.size, _counter(rep, key, "Downloading", d.size)
            )
            try:
                info = layer_from_stream(s, stream, expected_blob=d.digest)  # type: ignore[arg-type]
            except (InvalidLayer, DigestMismatch) as e:
                raise DigestMismatch(f"layer {d.digest} from {ref.name}: {e}") from None
            finally:
                stream.close()
            if info.diff_id != diff:
                raise DigestMismatch(
                    f"layer {d.digest} unpacks to {info.diff_id}, but the config says {diff}"
                )
        rep.status(key, "Pull complete")
        return info

    stores: list[Store] = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        try:
            done = {
                diff: info for (_, diff), info in zip(unique, pool.map(fetch, unique), strict=True)
            }
        finally:
            del stores
    return [done[diff] for _, diff in pairs]


# ---- push -----------------------------------------------------------------------------------


@dataclass
class PushedTag:
    tag: str
    digest: Digest
    size: int


@dataclass
class PushResult:
    repository: str
    tags: list[PushedTag] = field(default_factory=list)


@dataclass(frozen=True)
class _Blob:
    digest: Digest
    media_type: str
    size: int


def push(
    images: ImageService,
    name: str,
    *,
    all_tags: bool = False,
    tls_verify: bool | None = None,
    reporter: Reporter | None = None,
    credentials: Credentials | None = None,
    stored_credentials: bool = True,
) -> PushResult:
    rep = reporter or _Quiet()
    ref = parse_reference(name)
    if ref.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference ({name}): push a tag")
    if all_tags:
        if ref.tag is not None:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        prefix = ref.name + ":"
        tags = sorted(t for rec in images.ls() for t in rec.tags if t.startswith(prefix))
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    else:
        if ref.tag is None:
            rep.message("Using default tag: latest")
            ref = ref.with_default_tag()
        tags = [str(ref)]
    for t in tags:
        if images.find(t) is None:
            raise NotFound(
                f"An image does not exist locally with the tag: {parse_reference(t).familiar_name}"
            )
    rep.message(f"The push refers to repository [{ref.name}]")
    client = _client(ref, tls_verify, credentials, stored_credentials)
    result = PushResult(ref.name)
    try:
        for t in tags:
            tref = parse_reference(t)
            rec = images.resolve(t)
            diff_ids = images.layers(rec.id)
            raw_config = images.store.content.read(rec.id)
            blobs = _push_layers(images.store, client, tref, diff_ids, rep)
            config_blob = _Blob(rec.id, mt.OCI_CONFIG, len(raw_config))
            _push_one(images.store, client, tref, config_blob, images.store.content.opener(rec.id),
                      rep, quiet=True)  # fmt: skip
            manifest = compact_json(
                {
                    "schemaVersion": 2,
                    "mediaType": mt.OCI_MANIFEST,
                    "config": {
                        "mediaType": mt.OCI_CONFIG,
                        "digest": str(rec.id),
                        "size": len(raw_config),
                    },
                    "layers": [
                        {"mediaType": b.media_type, "digest": str(b.digest), "size": b.size}
                        for b in blobs
                    ],
                }
            )
            digest = client.put_manifest(tref.path, str(tref.tag), manifest, mt.OCI_MANIFEST)
            rep.message(f"{tref.tag}: digest: {digest} size: {len(manifest)}")
            with images.store.db.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO repo_digests(name, image_id) VALUES (?, ?)",
                    (f"{tref.name}@{digest}", str(rec.id)),
                )
            _note_source(images.store, [b.digest for b in blobs], tref.domain, tref.path)
            result.tags.append(PushedTag(str(tref.tag), digest, len(manifest)))
            _event(images.store, "push", tref)
    finally:
        client.close()
    return result


def _push_layers(
    store: Store,
    client: RegistryClient,
    ref: Reference,
    diff_ids: Sequence[Digest],
    rep: Reporter,
) -> list[_Blob]:
    unique = list(dict.fromkeys(diff_ids))
    for diff in unique:
        rep.status(diff.short, "Preparing")
    local = threading.local()

    def one(diff: Digest) -> _Blob:
        if not hasattr(local, "store"):
            local.store = Store(store.root, store.runroot)
        s: Store = local.store
        blob = _compressed_blob(s, diff, rep)
        _push_one(s, client, ref, blob, s.content.opener(blob.digest), rep, key=diff.short)
        return blob

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        done = dict(zip(unique, pool.map(one, unique), strict=True))
    return [done[d] for d in diff_ids]


def _compressed_blob(store: Store, diff: Digest, rep: Reporter) -> _Blob:
    """The layer's compressed blob, made (gzip, ISA-L) and remembered when it has none."""
    info = known_layer(store, diff)
    if info is None:
        raise NotFound(f"layer {diff} is missing from the store")
    if mt.layer_compression(info.media_type) != "none" and store.content.exists(info.blob_digest):
        return _Blob(info.blob_digest, info.media_type, info.blob_size)
    row = store.db.conn.execute(
        "SELECT blob_digest, media_type, size FROM layer_blobs WHERE diff_id = ?", (str(diff),)
    ).fetchone()
    if row is not None and store.content.exists(Digest.parse(row["blob_digest"])):
        return _Blob(Digest.parse(row["blob_digest"]), row["media_type"], row["size"])
    if not store.content.exists(info.blob_digest):
        raise NotFound(f"layer {diff}: its blob {info.blob_digest} is missing from the store")
    from isal import isal_zlib

    total = store.content.size(info.blob_digest)
    count = _counter(rep, diff.short, "Compressing", total)
    comp = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)
    with store.content.open(info.blob_digest) as src, store.content.writer() as w:
        while chunk := src.read(4 << 20):
            w.write(comp.compress(chunk))
            count(len(chunk))
        w.write(comp.flush())
        digest = w.commit()
        size = w.size
    with store.db.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO layer_blobs(diff_id, blob_digest, media_type, size)"
            " VALUES (?, ?, ?, ?)",
            (str(diff), str(digest), mt.OCI_LAYER_GZIP, size),
        )
    return _Blob(digest, mt.OCI_LAYER_GZIP, size)


def _push_one(
    store: Store,
    client: RegistryClient,
    ref: Reference,
    blob: _Blob,
    opener: Callable[[], IO[bytes]],
    rep: Reporter,
    *,
    key: str | None = None,
    quiet: bool = False,
) -> None:
    k = key or blob.digest.short
    if client.has_blob(ref.path, blob.digest):
        if not quiet:
            rep.status(k, "Layer already exists")
        return
    upload_url: str | None = None
    sources = store.db.conn.execute(
        "SELECT repository FROM blob_sources WHERE digest = ? AND registry = ? AND repository != ?"
        " LIMIT 3",
        (str(blob.digest), ref.domain, ref.path),
    ).fetchall()
    for row in sources:
        with contextlib.suppress(MoorageError):
            upload_url = client.mount_blob(ref.path, blob.digest, row["repository"])
            if upload_url is None:
                if not quiet:
                    rep.status(k, f"Mounted from {row['repository']}")
                return
            break
    client.upload_blob(
        ref.path,
        blob.digest,
        blob.size,
        opener,
        _counter(rep, k, "Pushing", blob.size) if not quiet else (lambda n: None),
        upload_url,
    )
    if not quiet:
        rep.status(k, "Pushed")
