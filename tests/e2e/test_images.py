"""The image commands as a user runs them: import, images, tag, inspect, history, rmi, prune."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Moor


def test_version_fast_path_and_subcommand(moor: Moor) -> None:
    assert moor("--version").stdout.startswith("moor version ")
    doc = json.loads(moor("version", "--format", "json").stdout)
    assert doc["Client"]["Version"] == doc["Server"]["Version"]
    assert moor("version", "-f", "{{.Client.ApiVersion}}").stdout.strip() == "1.41"


def test_import_prints_id_and_lists(moor: Moor, bb: str) -> None:
    assert bb.startswith("sha256:") and len(bb) == 71
    out = moor("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:3] == ["bb", "1", bb[7:19]]
    assert moor("images", "-q").stdout.split() == [bb[7:19]]
    assert moor("images", "-q", "--no-trunc").stdout.split() == [bb]
    row = json.loads(moor("images", "--format", "json").stdout)
    assert row["Repository"] == "bb" and row["Tag"] == "1" and row["ID"] == bb[7:19]
    assert moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "bb:1\n"


def test_import_from_stdin_with_changes(moor: Moor, busybox_tar: Path) -> None:
    iid = moor(
        "import",
        "-c",
        "ENV FOO=bar",
        "-c",
        'ENTRYPOINT ["/bin/echo"]',
        "-c",
        "EXPOSE 8080",
        "-c",
        "WORKDIR /srv",
        "-m",
        "hello",
        "-",
        "app:2",
        input=busybox_tar.read_bytes(),
    ).stdout.strip()
    doc = json.loads(moor("image", "inspect", "app:2").stdout)[0]
    assert doc["Id"] == iid
    assert doc["RepoTags"] == ["app:2"]
    assert doc["Config"]["Entrypoint"] == ["/bin/echo"]
    assert "FOO=bar" in doc["Config"]["Env"]
    assert doc["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert doc["Config"]["WorkingDir"] == "/srv"
    assert doc["Comment"] == "hello"
    assert doc["RootFS"]["Type"] == "layers" and len(doc["RootFS"]["Layers"]) == 1
    assert doc["Size"] > 500_000
    assert moor("inspect", "-f", "{{.Config.WorkingDir}}", "app:2").stdout == "/srv\n"


def test_same_rootfs_shares_one_snapshot(moor: Moor, busybox_tar: Path, bb: str) -> None:
    moor("import", "-c", 'CMD ["true"]', str(busybox_tar), "other:1")
    overlay = [p for p in (moor.root / "overlay").iterdir() if not p.name.startswith(".")]
    assert len(overlay) == 1  # both images use the same unpacked layer


def test_tag_and_rmi_untags_before_deleting(moor: Moor, bb: str) -> None:
    moor("tag", "bb:1", "localhost:5000/redis_hagzag")
    moor("tag", bb[7:19], "bb:latest")
    tags = json.loads(moor("image", "inspect", "bb:1").stdout)[0]["RepoTags"]
    assert sorted(tags) == ["bb:1", "bb:latest", "localhost:5000/redis_hagzag:latest"]
    out = moor("rmi", "localhost:5000/redis_hagzag").stdout
    assert out == "Untagged: localhost:5000/redis_hagzag:latest\n"
    # by id with two tags left: Docker refuses without -f
    r = moor("rmi", bb[7:19], check=False)
    assert r.returncode == 1 and "must be forced" in r.stderr
    out = moor("rmi", "-f", bb[7:19]).stdout.splitlines()
    assert out == ["Untagged: bb:1", "Untagged: bb:latest", f"Deleted: {bb}"]
    assert moor("images", "-q").stdout == ""
    # everything the image held is gone from disk
    assert list((moor.root / "blobs" / "sha256").iterdir()) == []
    assert [p for p in (moor.root / "overlay").iterdir() if not p.name.startswith(".")] == []


def test_history(moor: Moor, bb: str) -> None:
    out = moor("history", "bb:1").stdout.splitlines()
    assert out[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert out[1].startswith(bb[7:19])
    assert "Imported from" in out[1]
    assert moor("history", "-q", "bb:1").stdout.split() == [bb[7:19]]


def test_images_filters(moor: Moor, busybox_tar: Path, bb: str) -> None:
    moor("import", "-c", "LABEL tier=web", str(busybox_tar), "web:1")
    dangling = moor("import", "-c", "LABEL x=1", str(busybox_tar)).stdout.strip()
    fmt = "{{.Repository}}:{{.Tag}}"
    assert moor("images", "--filter", "reference=web*", "--format", fmt).stdout == "web:1\n"
    assert moor("images", "bb", "--format", fmt).stdout == "bb:1\n"
    assert moor("images", "-f", "label=tier=web", "--format", fmt).stdout == "web:1\n"
    assert moor("images", "-q", "-f", "dangling=true").stdout.split() == [dangling[7:19]]
    r = moor("images", "-f", "bogus=1", check=False)
    assert r.returncode == 1 and "invalid filter 'bogus'" in r.stderr


def test_image_prune_removes_dangling_only(moor: Moor, busybox_tar: Path, bb: str) -> None:
    dangling = moor("import", "-c", "LABEL x=1", str(busybox_tar)).stdout.strip()
    out = moor("image", "prune", "-f").stdout
    assert f"deleted: {dangling}" in out and "Total reclaimed space:" in out
    assert moor("images", "-q", "--no-trunc").stdout.split() == [bb]
    # without -f, answering no (EOF) keeps everything
    moor("image", "prune", "-a")
    assert moor("images", "-q", "--no-trunc").stdout.split() == [bb]
    out = moor("image", "prune", "-a", "-f").stdout
    assert f"deleted: {bb}" in out
    assert moor("images", "-q").stdout == ""


def test_df_reports_what_prune_gives_back(moor: Moor, busybox_tar: Path, bb: str) -> None:
    moor("import", "-c", "LABEL x=1", str(busybox_tar), "two:1")
    rows = [
        json.loads(line) for line in moor("system", "df", "--format", "json").stdout.splitlines()
    ]
    images = next(r for r in rows if r["Type"] == "Images")
    assert images["TotalCount"] == "2"
    reclaimable = images["Reclaimable"].split()[0]
    out = moor("system", "prune", "-a", "-f").stdout
    assert out.strip().endswith(f"Total reclaimed space: {reclaimable}")
    rows = [
        json.loads(line) for line in moor("system", "df", "--format", "json").stdout.splitlines()
    ]
    assert next(r for r in rows if r["Type"] == "Images")["Size"] == "0B"


def test_df_and_prune_count_containers(moor: Moor, busybox_tar: Path, bb: str) -> None:
    script = "head -c 300000 /bin/busybox > /f; echo hi"
    moor("run", "--name", "stopped", "bb:1", "sh", "-c", script)
    rows = {
        r["Type"]: r
        for r in map(json.loads, moor("system", "df", "--format", "json").stdout.splitlines())
    }
    assert rows["Containers"]["TotalCount"] == "1" and rows["Containers"]["Active"] == "0"
    assert rows["Containers"]["Reclaimable"].startswith("300")
    out = moor("system", "prune", "-f").stdout
    assert out.startswith("Deleted Containers:\n") and moor("ps", "-aq").stdout == ""


def test_info_and_check(moor: Moor, bb: str) -> None:
    assert moor("info", "--format", "{{.Images}} {{.Driver}}").stdout == "1 overlay\n"
    doc = json.loads(moor("info", "--format", "json").stdout)
    assert doc["DockerRootDir"] == str(moor.root)
    assert moor("system", "check").stdout.strip() == "No problems found"


def test_global_root_flag_overrides_env(moor: Moor, tmp_path: Path, busybox_tar: Path) -> None:
    other = tmp_path / "other-root"
    moor("--root", str(other), "import", str(busybox_tar), "x:1")
    assert (other / "moorage.db").exists()
    assert moor("images", "-q").stdout == ""
    assert moor("--root", str(other), "images", "--format", "{{.Repository}}").stdout == "x\n"


def test_check_finds_damage_and_repair_removes_it(moor: Moor, busybox_tar: Path, bb: str) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("only-here")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    other = moor("import", "-", "other:1", input=buf.getvalue()).stdout.strip()
    layer = json.loads(moor("image", "inspect", "other:1").stdout)[0]["RootFS"]["Layers"][0]
    blob = moor.root / "blobs" / "sha256" / layer.split(":")[1]  # an uncompressed layer
    blob.write_bytes(b"corrupt")
    r = moor("system", "check", check=False)
    assert r.returncode == 1 and "is missing or corrupt" in r.stdout and "other:1" in r.stdout
    # a container that uses the damaged image is the user's to remove, not the repair's
    user = moor("create", "other:1", "x").stdout.strip()
    r = moor("system", "check", "--repair", check=False)
    assert r.returncode == 1 and f"used by container(s) {user[:12]}" in r.stderr
    assert moor("ps", "-aq").stdout.strip() == user[:12]
    moor("rm", user)
    out = moor("system", "check", "--repair").stdout
    assert f"repaired: removed damaged image {other}" in out
    assert moor("images", "--format", "{{.Repository}}").stdout == "bb\n"
    assert not blob.exists()
    assert moor("system", "check").stdout.strip() == "No problems found"
    assert moor("run", "--rm", "bb:1", "true").returncode == 0  # the intact image still runs
