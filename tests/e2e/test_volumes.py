"""Volumes end to end through the real `moor`: named, anonymous (from -v and from the
image's VOLUME), binds, --mount, --volumes-from, copy-up, in-use protection, rm -v, bad
names; data outlives its container."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Moor


@pytest.fixture
def bbv(moor: Moor, busybox_tar: Path) -> str:
    """bbv:1: busybox with ``VOLUME /etc/ssl2 /cache``."""
    out = moor("import", "--change", 'CMD ["sh"]', "--change", 'VOLUME ["/etc/ssl2", "/cache"]',
               str(busybox_tar), "bbv:1").stdout  # fmt: skip
    return out.strip()


def _mounts(moor: Moor, ref: str) -> list[dict[str, object]]:
    doc = json.loads(moor("inspect", ref).stdout)[0]
    mounts: list[dict[str, object]] = doc["Mounts"]
    return mounts


def test_named_volume_data_survives_and_copy_up(moor: Moor, bb: str) -> None:
    assert moor("volume", "create", "--label", "app=kv", "data").stdout.strip() == "data"
    doc = json.loads(moor("volume", "inspect", "data").stdout)[0]
    assert doc["Name"] == "data" and doc["Driver"] == "local" and doc["Labels"] == {"app": "kv"}
    assert doc["Scope"] == "local" and doc["Mountpoint"].endswith("/volumes/data/_data")
    # a new volume gets the image's content at its path (copy-up)
    moor("volume", "create", "etc")
    out = moor("run", "--rm", "-v", "etc:/etc", "bb:1", "cat", "/etc/passwd").stdout
    assert out.startswith("root:")
    assert (Path(doc["Mountpoint"]).parent.parent / "etc" / "_data" / "passwd").exists()
    moor("run", "--rm", "-v", "data:/data", "bb:1", "sh", "-c", "echo kept > /data/f")
    out = moor("run", "--rm", "-v", "data:/data:ro", "bb:1", "sh", "-c",
               "cat /data/f; touch /data/g 2>/dev/null || echo read-only").stdout  # fmt: skip
    assert out == "kept\nread-only\n"
    # a volume named by run is made on the fly
    moor("run", "--rm", "-v", "fresh:/x", "bb:1", "true")
    assert "fresh" in moor("volume", "ls", "-q").stdout.split()
    ls = moor("volume", "ls").stdout.splitlines()
    assert ls[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert moor("volume", "ls", "-q", "-f", "label=app=kv").stdout.split() == ["data"]


def test_in_use_rm_v_and_prune(moor: Moor, bb: str, bbv: str) -> None:
    moor("volume", "create", "keep")
    cid = moor("run", "-d", "--name", "user", "-v", "keep:/k", "-v", "/anon", "bbv:1",
               "sleep", "60").stdout.strip()  # fmt: skip
    mounts = _mounts(moor, cid)
    dests = {m["Destination"]: m for m in mounts}
    assert set(dests) == {"/k", "/anon", "/etc/ssl2", "/cache"}
    assert dests["/k"]["Name"] == "keep" and dests["/k"]["Type"] == "volume"
    assert dests["/k"]["RW"] is True and dests["/k"]["Driver"] == "local"
    anonymous = [str(m["Name"]) for d, m in dests.items() if d != "/k"]
    assert all(len(n) == 64 for n in anonymous)
    r = moor("volume", "rm", "keep", check=False)
    assert r.returncode == 1 and "volume is in use" in r.stderr and cid in r.stderr
    # --volumes-from: the same volumes, read-only on request
    out = moor("run", "--rm", "--volumes-from", "user:ro", "bb:1", "sh", "-c",
               "ls -d /k /anon /cache && touch /k/x 2>/dev/null || echo ro").stdout  # fmt: skip
    assert out.splitlines() == ["/anon", "/cache", "/k", "ro"]
    moor("rm", "-f", "-v", "user")
    names = moor("volume", "ls", "-q").stdout.split()
    assert "keep" in names and not set(anonymous) & set(names)
    # without -v anonymous volumes stay until pruned; --rm drops them
    moor("run", "--name", "plain", "bbv:1", "true")
    moor("rm", "plain")
    assert len(moor("volume", "ls", "-q").stdout.split()) == 3  # keep + two anonymous
    moor("run", "--rm", "bbv:1", "true")
    assert len(moor("volume", "ls", "-q").stdout.split()) == 3
    out = moor("volume", "prune", "-f").stdout
    assert out.startswith("Deleted Volumes:") and "keep" in out
    assert moor("volume", "ls", "-q").stdout == ""


def test_binds_mounts_and_tmpfs_volumes(moor: Moor, bb: str, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    out = moor("run", "--rm", "-v", f"{host}:/h", "--mount", f"type=bind,source={host},"
               "target=/ro,readonly", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "bb:1",
               "sh", "-c", "cat /h/in; echo out > /h/out; touch /ro/x 2>/dev/null || echo ro; "
               "df -k /t | tail -1 | awk '{print $2}'").stdout  # fmt: skip
    assert out.splitlines() == ["from host", "ro", "1024"]
    assert (host / "out").read_text() == "out\n"
    cid = moor("create", "-v", f"{host}:/h:ro", "--mount", "type=volume,source=mv,target=/m",
               "bb:1", "true").stdout.strip()  # fmt: skip
    by_dest = {m["Destination"]: m for m in _mounts(moor, cid)}
    assert by_dest["/h"] == {"Type": "bind", "Source": str(host), "Destination": "/h",
                             "Mode": "ro", "RW": False, "Propagation": "rprivate"}  # fmt: skip
    assert by_dest["/m"]["Name"] == "mv"
    moor("rm", cid)
    # volumes backed by a tmpfs and by a host directory (-o)
    moor("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", "tv")
    moor("volume", "create", "-o", "type=none", "-o", f"device={host}", "-o", "o=bind", "bv")
    out = moor("run", "--rm", "-v", "tv:/tv", "-v", "bv:/bv", "bb:1", "sh", "-c",
               "df -k /tv | tail -1 | awk '{print $2}'; cat /bv/in").stdout  # fmt: skip
    assert out.splitlines() == ["2048", "from host"]
    moor("volume", "rm", "tv", "bv")
    assert (host / "in").exists()  # removing a bind-backed volume keeps the directory


def test_bad_volume_input(moor: Moor, bb: str) -> None:
    for name in ("a/b", "../x", "x y"):
        r = moor("volume", "create", name, check=False)
        assert r.returncode == 1 and "invalid characters" in r.stderr
    for args, words in (
        (("-v", "a/b:/x"), "invalid characters"),
        (("-v", "data:relative"), "must be absolute"),
        (("--mount", "type=bind,source=rel,target=/x"), "must be absolute"),
        (("--mount", "type=nfs,target=/x"), "invalid mount type"),
        (("-v", "d1:/x", "-v", "d2:/x"), "Duplicate mount point"),
    ):
        r = moor("run", "--rm", *args, "bb:1", "true", check=False)
        assert r.returncode == 125, (args, r.stderr)
        assert words in r.stderr, (args, r.stderr)
    r = moor("volume", "create", "-o", "type=none", "-o", "device=/nonexistent-dir",
             "-o", "o=bind", "vv", check=False)  # fmt: skip
    assert r.returncode == 1 and "device" in r.stderr
    r = moor("volume", "rm", "nosuch", check=False)
    assert r.returncode == 1 and "no such volume" in r.stderr
    assert moor("volume", "ls", "-q").stdout == ""
    assert moor("ps", "-aq").stdout == ""
    assert not [p for p in os.listdir(moor.root) if p == "volumes"] or not list(
        (moor.root / "volumes").iterdir()
    )


def test_top_level_inspect_finds_volumes_and_networks(moor: Moor, bb: str) -> None:
    net = f"insp{os.getpid() % 100000}"
    moor("volume", "create", "inspvol")
    moor("network", "create", net)
    try:
        out = moor("inspect", "-f", "{{.Name}} {{.Driver}}", "inspvol", net).stdout
        assert out.splitlines() == ["inspvol local", f"{net} bridge"]
        r = moor("inspect", "--type", "volume", net, check=False)
        assert r.returncode == 1 and f"No such volume: {net}" in r.stderr
    finally:
        moor("volume", "rm", "inspvol")
        moor("network", "rm", net)


def test_system_df_counts_volumes(moor: Moor, bb: str) -> None:
    moor("run", "--rm", "--network", "none", "-v", "dfvol:/d", "bb:1",
         "sh", "-c", "head -c 3000000 /dev/zero > /d/f")  # fmt: skip
    rows = moor("system", "df", "--format", "{{json .}}").stdout.splitlines()
    vols = next(json.loads(r) for r in rows if json.loads(r)["Type"] == "Local Volumes")
    assert (vols["TotalCount"], vols["Active"]) == ("1", "0")
    assert vols["Size"] == "3MB" and vols["Reclaimable"].startswith("3MB")
    moor("volume", "rm", "dfvol")


@pytest.mark.parametrize("noun", ["volume", "network"])
def test_label_without_a_key_is_refused(moor: Moor, noun: str) -> None:
    r = moor(noun, "create", "--label", "=x", "nokey", check=False)
    assert r.returncode != 0 and "invalid label '=x': expected KEY=VALUE" in r.stderr
    assert "nokey" not in moor(noun, "ls", "--format", "{{.Name}}").stdout.split()
