"""Streams and documents through the raw API: log framing, attach with logs, export, save of
several images, update, system df, events."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import time

from tests.e2e.apiservice import Service


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def _wait_exited(api: Service, cid: str) -> None:
    r = api.request("POST", f"/containers/{cid}/wait")
    assert r.status == 200 and r.json()["Error"] is None


def test_logs_framing_and_options(api: Service, bb: str) -> None:
    cid = api.moor(
        "run",
        "-d",
        "bb:1",
        "sh",
        "-c",
        "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; exit 2",
    ).stdout.strip()
    _wait_exited(api, cid)
    r = api.request("GET", f"/v1.41/containers/{cid}/logs?stdout=1&stderr=1")
    assert r.headers["content-type"] == "application/vnd.docker.raw-stream"
    assert _frames(r.body) == [(1, b"out1\n"), (2, b"err1\n"), (1, b"out2\n")]
    r = api.request("GET", f"/v1.45/containers/{cid}/logs?stdout=1&stderr=1")
    assert r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    r = api.request("GET", f"/containers/{cid}/logs?stderr=1")
    assert _frames(r.body) == [(2, b"err1\n")]
    r = api.request("GET", f"/containers/{cid}/logs?stdout=1&tail=1")
    assert _frames(r.body) == [(1, b"out2\n")]
    r = api.request("GET", f"/containers/{cid}/logs?stdout=1&timestamps=1")
    first = _frames(r.body)[0][1].decode()
    stamp, _, text = first.partition(" ")
    assert text == "out1\n" and stamp.endswith("Z") and len(stamp) == 30
    later = int(time.time()) + 3600
    r = api.request("GET", f"/containers/{cid}/logs?stdout=1&since={later}")
    assert r.body == b""
    # attach with logs=1 to an ended container replays its output
    r = api.request("POST", f"/containers/{cid}/attach?logs=1&stdout=1&stderr=1")
    assert r.status == 200 and _frames(r.body) == [(1, b"out1\n"), (2, b"err1\n"), (1, b"out2\n")]
    # a terminal: raw, not framed
    tid = api.moor("run", "-d", "-t", "bb:1", "echo", "tty").stdout.strip()
    _wait_exited(api, tid)
    r = api.request("GET", f"/containers/{tid}/logs?stdout=1")
    assert r.body == b"tty\r\n"


def test_export_update_df(api: Service, bb: str) -> None:
    cid = api.moor("run", "-d", "--name", "ex", "bb:1", "sleep", "100").stdout.strip()
    r = api.request("GET", "/containers/ex/export")
    assert r.status == 200
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tf:
        names = tf.getnames()
    assert "bin/busybox" in names or "./bin/busybox" in names
    r = api.request("POST", "/containers/ex/update", {"Memory": 64 << 20, "PidsLimit": 50,
                    "RestartPolicy": {"Name": "unless-stopped"}})  # fmt: skip
    assert (r.status, r.json()) == (200, {"Warnings": []})
    doc = api.request("GET", "/containers/ex/json").json()
    assert doc["HostConfig"]["Memory"] == 64 << 20 and doc["HostConfig"]["PidsLimit"] == 50
    assert doc["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    df = api.request("GET", "/system/df").json()
    assert [c["Id"] for c in df["Containers"]] == [cid]
    assert df["Images"][0]["Containers"] == 1 and df["LayersSize"] > 0
    r = api.request("GET", "/containers/json?size=1")
    assert r.json()[0]["SizeRootFs"] >= r.json()[0]["SizeRw"]
    api.moor("rm", "-f", cid)


def test_save_several_and_events_until(api: Service, bb: str) -> None:
    api.moor("tag", "bb:1", "other:2")
    r = api.request("GET", "/images/get?names=bb:1&names=other:2")
    assert r.status == 200 and r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        manifest = json.load(f)
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["bb:1", "other:2"]
    r = api.request("GET", "/images/get?names=nosuch:1")
    assert r.status == 404
    r = api.request("GET", f"/events?until={int(time.time())}")
    assert (r.status, r.body) == (200, b"")
