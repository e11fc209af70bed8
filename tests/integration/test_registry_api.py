"""`moor registry serve` against the OCI distribution spec, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def code_of(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


def push_blob(c: httpx.Client, name: str, data: bytes) -> str:
    d = sha(data)
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == d
    return d


def manifest(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha(x), "size": len(x)} for x in layers],
        **extra,
    }
    return json.dumps(doc).encode()


def push_image(c: httpx.Client, name: str, tag: str, seed: bytes = b"1") -> bytes:
    config, layer = b'{"config":' + seed + b"}", b"layer-" + seed
    push_blob(c, name, config)
    push_blob(c, name, layer)
    m = manifest(config, [layer])
    r = c.put(f"/v2/{name}/manifests/{tag}", content=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return m


@pytest.fixture
def c(registry: RegistryServer) -> httpx.Client:
    return httpx.Client(base_url=registry.url, timeout=30)


def blob_files(server: RegistryServer) -> set[str]:
    d = server.root / "blobs" / "sha256"
    return set(os.listdir(d)) if d.exists() else set()


def test_base_endpoint_and_api_header(c: httpx.Client) -> None:
    r = c.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_upload_then_get_head_and_ranges(c: httpx.Client) -> None:
    data = os.urandom(300_000)
    d = push_blob(c, "a/b", data)
    assert c.get(f"/v2/a/b/blobs/{d}").content == data
    h = c.head(f"/v2/a/b/blobs/{d}")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(data))
    r = c.get(f"/v2/a/b/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    r = c.get(f"/v2/a/b/blobs/{d}", headers={"Range": f"bytes={len(data) + 5}-"})
    assert r.status_code == 416
    small = push_blob(c, "a/b", b"tiny")
    r = c.get(f"/v2/a/b/blobs/{small}", headers={"Range": "bytes=1-2"})
    assert r.status_code == 206 and r.content == b"in"
    # a blob is visible only in the repository it was pushed to
    r = c.get(f"/v2/other/blobs/{d}")
    assert r.status_code == 404 and code_of(r) == "BLOB_UNKNOWN"


def test_wrong_digest_is_refused_and_nothing_stored(
    c: httpx.Client, registry: RegistryServer
) -> None:
    before = blob_files(registry)
    r = c.post("/v2/x/blobs/uploads/", params={"digest": sha(b"other")}, content=b"data")
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    r = c.post("/v2/x/blobs/uploads/", params={"digest": "sha256:zz"}, content=b"data")
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"
    assert blob_files(registry) == before
    assert os.listdir(registry.root / "uploads") == []


def test_chunked_upload_status_and_out_of_order_patch(c: httpx.Client) -> None:
    data = os.urandom(100_000)
    r = c.post("/v2/chunky/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    r = c.patch(loc, content=data[:40_000], headers={"Content-Range": "0-39999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-39999"
    # a chunk that does not continue at 40000
    r = c.patch(loc, content=data[50_000:], headers={"Content-Range": "50000-99999"})
    assert r.status_code == 416 and code_of(r) == "RANGE_INVALID"
    r = c.get(loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-39999"
    r = c.patch(r.headers["Location"], content=data[40_000:])
    assert r.status_code == 202 and r.headers["Range"] == "0-99999"
    r = c.put(r.headers["Location"], params={"digest": sha(data)})
    assert r.status_code == 201
    assert c.get(f"/v2/chunky/blobs/{sha(data)}").content == data


def test_cancel_upload(c: httpx.Client) -> None:
    loc = c.post("/v2/cancel/blobs/uploads/").headers["Location"]
    assert c.delete(loc).status_code == 204
    r = c.get(loc)
    assert r.status_code == 404 and code_of(r) == "BLOB_UPLOAD_UNKNOWN"


def test_cross_repository_mount(c: httpx.Client) -> None:
    d = push_blob(c, "src/repo", b"shared layer")
    r = c.post("/v2/dst/repo/blobs/uploads/", params={"mount": d, "from": "src/repo"})
    assert r.status_code == 201 and r.headers["Location"].endswith(d)
    assert c.head(f"/v2/dst/repo/blobs/{d}").status_code == 200
    # unknown in the source: a normal upload starts instead
    r = c.post("/v2/dst/repo/blobs/uploads/", params={"mount": sha(b"nope"), "from": "src/repo"})
    assert r.status_code == 202


def test_concurrent_uploads_of_the_same_blob(c: httpx.Client, registry: RegistryServer) -> None:
    data = os.urandom(2_000_000)
    results: list[int] = []

    def up() -> None:
        with httpx.Client(base_url=registry.url, timeout=30) as cc:
            r = cc.post("/v2/race/blobs/uploads/", params={"digest": sha(data)}, content=data)
            results.append(r.status_code)

    threads = [threading.Thread(target=up) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 6
    assert c.get(f"/v2/race/blobs/{sha(data)}").content == data
    assert os.listdir(registry.root / "uploads") == []


def test_manifest_put_get_by_tag_and_digest(c: httpx.Client) -> None:
    m = push_image(c, "app", "v1")
    d = sha(m)
    for ref in ("v1", d):
        r = c.get(f"/v2/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == m
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == d
    h = c.head("/v2/app/manifests/v1")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(m))
    # a client that accepts only Docker manifest lists does not get an OCI manifest
    r = c.get(
        "/v2/app/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.list.v2+json"},
    )
    assert r.status_code == 404 and code_of(r) == "MANIFEST_UNKNOWN"
    r = c.get("/v2/app/manifests/nope")
    assert r.status_code == 404 and code_of(r) == "MANIFEST_UNKNOWN"
    r = c.get("/v2/never/manifests/v1")
    assert r.status_code == 404 and code_of(r) == "NAME_UNKNOWN"


def test_put_by_digest_must_match(c: httpx.Client) -> None:
    config = b"{}"
    push_blob(c, "dig", config)
    m = manifest(config, [])
    r = c.put(f"/v2/dig/manifests/{sha(m)}", content=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    r = c.put(f"/v2/dig/manifests/{sha(b'x')}", content=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and code_of(r) == "DIGEST_INVALID"


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        # no mediaType at all
        (b'{"schemaVersion":2,"config":{},"layers":[]}', OCI_MANIFEST, "MANIFEST_INVALID"),
        # an index body declared as a manifest (CVE-2021-41190)
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []}).encode(),
            OCI_MANIFEST,
            "MANIFEST_INVALID",
        ),
        # header and body disagree
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
            OCI_MANIFEST,
            "MANIFEST_INVALID",
        ),
        (b"not json", OCI_MANIFEST, "MANIFEST_INVALID"),
    ],
)
def test_bad_manifests_are_refused(
    c: httpx.Client, registry: RegistryServer, body: bytes, content_type: str, code: str
) -> None:
    r = c.put("/v2/bad/manifests/t", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and code_of(r) == code
    assert not (registry.root / "repos" / "bad" / "_tags").exists()


def test_manifest_with_missing_blob_is_refused(c: httpx.Client, registry: RegistryServer) -> None:
    config = b"{}"
    push_blob(c, "miss", config)
    m = manifest(config, [b"never pushed"])
    r = c.put("/v2/miss/manifests/t", content=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 404 and code_of(r) == "MANIFEST_BLOB_UNKNOWN"
    assert sha(b"never pushed") in r.text
    assert c.get("/v2/miss/manifests/t").status_code == 404


def test_manifest_over_4_mib_is_refused(c: httpx.Client) -> None:
    big = json.dumps({"mediaType": OCI_MANIFEST, "pad": "x" * (4 * 2**20)}).encode()
    r = c.put("/v2/big/manifests/t", content=big, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code in (400, 413)
    if r.status_code == 400:
        assert code_of(r) == "MANIFEST_INVALID"


def test_index_needs_its_manifests(c: httpx.Client) -> None:
    m = push_image(c, "multi", "amd")
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }).encode()  # fmt: skip
    r = c.put("/v2/multi/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201
    r = c.put("/v2/other/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 404 and code_of(r) == "MANIFEST_BLOB_UNKNOWN"


def test_tags_pagination(c: httpx.Client) -> None:
    for t in ("a", "b", "c", "d", "e"):
        push_image(c, "pages", t)
    r = c.get("/v2/pages/tags/list", params={"n": 2})
    assert r.json() == {"name": "pages", "tags": ["a", "b"]}
    link = r.headers["Link"]
    assert 'rel="next"' in link
    r = c.get(link.split(">")[0].lstrip("<"))
    assert r.json()["tags"] == ["c", "d"]
    r = c.get("/v2/pages/tags/list", params={"n": 2, "last": "d"})
    assert r.json()["tags"] == ["e"] and "Link" not in r.headers
    # a huge n is bounded, never an allocation of that size
    r = c.get("/v2/pages/tags/list", params={"n": str(10**11)})
    assert r.status_code == 200 and r.json()["tags"] == ["a", "b", "c", "d", "e"]
    for bad in ("-1", "x", "9" * 40):
        r = c.get("/v2/pages/tags/list", params={"n": bad})
        assert r.status_code == 400 and code_of(r) == "PAGINATION_NUMBER_INVALID"
    assert c.get("/v2/unknown/tags/list").status_code == 404


def test_catalog(c: httpx.Client) -> None:
    for name in ("zeta", "alpha/one", "alpha/two"):
        push_image(c, name, "t")
    assert c.get("/v2/_catalog").json() == {"repositories": ["alpha/one", "alpha/two", "zeta"]}
    r = c.get("/v2/_catalog", params={"n": 1, "last": "alpha/one"})
    assert r.json() == {"repositories": ["alpha/two"]} and "Link" in r.headers


def test_referrers(c: httpx.Client) -> None:
    m = push_image(c, "ref", "v1")
    empty = b"{}"
    push_blob(c, "ref", empty)
    sig = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(empty),
                   "size": 2},
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m)},
        "annotations": {"who": "me"},
    }).encode()  # fmt: skip
    r = c.put(f"/v2/ref/manifests/{sha(sig)}", content=sig, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201 and r.headers["OCI-Subject"] == sha(m)
    r = c.get(f"/v2/ref/referrers/{sha(m)}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(OCI_INDEX)
    (entry,) = r.json()["manifests"]
    assert entry["digest"] == sha(sig)
    assert entry["artifactType"] == "application/vnd.example.sig"
    assert entry["annotations"] == {"who": "me"}
    r = c.get(f"/v2/ref/referrers/{sha(m)}", params={"artifactType": "other/type"})
    assert r.json()["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"
    assert c.get(f"/v2/ref/referrers/{sha(b'none')}").json()["manifests"] == []


@pytest.mark.parametrize("name", ["UPPER", "..", "a//b", "-lead", "x" * 300])
def test_invalid_names(c: httpx.Client, name: str) -> None:
    r = c.get(f"/v2/{name}/tags/list")
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert code_of(r) == "NAME_INVALID"
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha(b"x")}, content=b"x")
    assert r.status_code in (400, 404)


@pytest.mark.parametrize(
    "path", ["/v2/a/../../b/blobs/uploads/", "/v2/../x/blobs/uploads/", "/v2/%2e%2e/blobs/uploads/"]
)
def test_path_tricks_store_nothing_outside(registry: RegistryServer, path: str) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=10)
    conn.request("POST", f"{path}?digest={sha(b'x')}", body=b"x")  # sent as is, unnormalised
    resp = conn.getresponse()
    assert resp.status in (400, 404), resp.read()
    conn.close()
    assert not (registry.root.parent / "b").exists()
    assert not (registry.root / "repos").exists() or sorted(
        os.listdir(registry.root / "repos")
    ) in ([], ["a"])


def test_delete_manifest_and_blob(c: httpx.Client) -> None:
    m = push_image(c, "del", "v1")
    assert c.delete(f"/v2/del/manifests/{sha(m)}").status_code == 202
    assert c.get("/v2/del/manifests/v1").status_code == 404
    d = sha(b"layer-1")
    assert c.delete(f"/v2/del/blobs/{d}").status_code == 202
    assert c.head(f"/v2/del/blobs/{d}").status_code == 404


def test_delete_disabled_and_read_only(registry_factory: object, tmp_path: Path) -> None:
    plain = registry_factory()  # type: ignore[operator]
    with httpx.Client(base_url=plain.url) as cc:
        m = push_image(cc, "nodel", "v1")
        r = cc.delete(f"/v2/nodel/manifests/{sha(m)}")
        assert r.status_code == 405 and code_of(r) == "UNSUPPORTED"
    plain.stop()
    ro = registry_factory("--read-only", root=plain.root)  # type: ignore[operator]
    with httpx.Client(base_url=ro.url) as cc:
        assert cc.get("/v2/nodel/manifests/v1").status_code == 200
        r = cc.post("/v2/nodel/blobs/uploads/")
        assert r.status_code == 405 and code_of(r) == "UNSUPPORTED"


def test_kill_during_upload_loses_nothing_committed(registry_factory: object) -> None:
    server = registry_factory()  # type: ignore[operator]
    with httpx.Client(base_url=server.url, timeout=30) as cc:
        m = push_image(cc, "crash", "v1")
        loc = cc.post("/v2/crash/blobs/uploads/").headers["Location"]
        cc.patch(loc, content=b"partial" * 1000)
    server.stop(signal.SIGKILL)
    again = registry_factory(root=server.root, port=server.port)  # type: ignore[operator]
    with httpx.Client(base_url=again.url, timeout=30) as cc:
        r = cc.get("/v2/crash/manifests/v1")
        assert r.status_code == 200 and r.content == m
        assert cc.get(f"/v2/crash/blobs/{sha(b'layer-1')}").content == b"layer-1"
        r = cc.get(loc)  # the upload survives and can go on
        assert r.status_code == 204 and r.headers["Range"] == "0-6999"
