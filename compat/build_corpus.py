"""Docker equivalence of ``moor build``: build each case of tests/fixtures/build/ with
Docker's classic builder and with moorage, and compare the image config and the flattened
filesystem (paths, types, modes, owners, content, link targets; not mtimes).

    python compat/build_corpus.py                  # compare (needs Docker and bb:1 in it)
    python compat/build_corpus.py --write-expected # refresh the expected.json files

The expected results (what Docker produced) are kept in each case's expected.json, which
tests/e2e/test_build_corpus.py checks moorage against on every test run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "build"
DOCKER = "/usr/bin/docker"
CONFIG_FIELDS = (
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
    "StopSignal", "Healthcheck", "Shell", "OnBuild",
)  # fmt: skip

Entry = tuple[str, int, int, int, str]  # type, mode, uid, gid, content digest or link target


# what git cannot keep (modes other than 644/755, empty directories), applied to a copy of
# the case before it is built; every other file gets 0644 and every directory 0755
PREPARE: dict[str, list[tuple[str, str, int]]] = {
    "copy_dirs": [("chmod", "dir/sub", 0o750), ("chmod", "f2.txt", 0o600)],
    "copy_links": [("mkdir", "dir/empty", 0o755), ("chmod", "suid", 0o4755)],
    "copy_chown": [("chmod", "d/x", 0o640)],
}


def prepare(case: str, into: Path) -> Path:
    """A copy of the case's context with the same modes on every machine."""
    import shutil

    dest = into / case
    shutil.copytree(CORPUS / case, dest, symlinks=True)
    for dirpath, dirs, files in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
        del dirs
    for op, rel, mode in PREPARE.get(case, []):
        if op == "mkdir":
            os.makedirs(dest / rel, exist_ok=True)
        os.chmod(dest / rel, mode)
    return dest


def expected_path(case: str) -> Path:
    return CORPUS / "expected" / f"{case}.json"


def cases() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())


def build_args(case: str) -> list[str]:
    f = CORPUS / case / "build-args"
    if not f.exists():
        return []
    out: list[str] = []
    for line in f.read_text().splitlines():
        if line.strip():
            out += ["--build-arg", line.strip()]
    return out


def flatten(archive: bytes) -> dict[str, Entry]:
    """The filesystem of the image in a docker-archive: its layers applied in order."""
    outer = tarfile.open(fileobj=io.BytesIO(archive))  # noqa: SIM115 (in memory)
    manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
    fs: dict[str, Entry] = {}
    for layer_name in manifest[0]["Layers"]:
        data = outer.extractfile(layer_name)
        assert data is not None
        with tarfile.open(fileobj=io.BytesIO(data.read()), mode="r:*") as tf:
            for m in tf:
                name = posixpath.normpath(m.name.removeprefix("./").lstrip("/") or ".")
                if name == ".":
                    continue
                head, base = posixpath.split(name)
                if base == ".wh..wh..opq":
                    prefix = head + "/"
                    for k in [k for k in fs if k.startswith(prefix)]:
                        del fs[k]
                    continue
                if base.startswith(".wh."):
                    gone = posixpath.join(head, base[4:])
                    fs.pop(gone, None)
                    for k in [k for k in fs if k.startswith(gone + "/")]:
                        del fs[k]
                    continue
                if m.isdir():
                    kind, extra = "dir", ""
                elif m.issym():
                    kind, extra = "symlink", m.linkname
                elif m.islnk():
                    target = posixpath.normpath(m.linkname.lstrip("/"))
                    kind, extra = fs[target][0], fs[target][4]
                elif m.isreg():
                    f = tf.extractfile(m)
                    kind = "file"
                    extra = hashlib.sha256(f.read() if f else b"").hexdigest()[:16]
                else:
                    kind, extra = "other", f"{m.type!r}"
                if not m.isdir() and name in fs and fs[name][0] == "dir":
                    for k in [k for k in fs if k.startswith(name + "/")]:
                        del fs[k]
                fs[name] = (kind, m.mode & 0o7777, m.uid, m.gid, extra)
    return fs


def config_of(archive: bytes) -> dict[str, Any]:
    outer = tarfile.open(fileobj=io.BytesIO(archive))  # noqa: SIM115 (in memory)
    manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
    cfg = json.load(outer.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    c = cfg.get("config") or {}
    return {k: c.get(k) or None for k in CONFIG_FIELDS}


def diff_fs(base: dict[str, Entry], image: dict[str, Entry]) -> dict[str, Any]:
    """What the build changed: entries added or changed, and paths removed."""
    changed = {k: list(v) for k, v in sorted(image.items()) if base.get(k) != v}
    removed = sorted(k for k in base if k not in image)
    return {"changed": changed, "removed": removed}


def result(tool: list[str], case: str, env: dict[str, str], base_archive: bytes) -> dict[str, Any]:
    tag = f"compat-{case.replace('_', '-')}:1"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [*tool, "build", "-q", "-t", tag, *build_args(case), str(prepare(case, Path(tmp)))],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    archive = subprocess.run([*tool, "save", tag], check=True, env=env, capture_output=True).stdout
    return {"config": config_of(archive), "fs": diff_fs(flatten(base_archive), flatten(archive))}


def docker_result(case: str) -> dict[str, Any]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    base = subprocess.run([DOCKER, "save", "bb:1"], check=True, capture_output=True).stdout
    return result([DOCKER], case, env, base)


def moor_result(moor: str, case: str, env: dict[str, str]) -> dict[str, Any]:
    base = subprocess.run([moor, "save", "bb:1"], check=True, env=env, capture_output=True).stdout
    return result([moor], case, env, base)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences between two results, one line each."""
    out = []
    for k in CONFIG_FIELDS:
        if a["config"].get(k) != b["config"].get(k):
            out.append(f"config.{k}: {a['config'].get(k)!r} != {b['config'].get(k)!r}")
    ca, cb = a["fs"]["changed"], b["fs"]["changed"]
    for path in sorted(set(ca) | set(cb)):
        if ca.get(path) != cb.get(path):
            out.append(f"fs {path}: {ca.get(path)} != {cb.get(path)}")
    ra, rb = set(a["fs"]["removed"]), set(b["fs"]["removed"])
    for path in sorted(ra ^ rb):
        out.append(f"fs {path}: removed in {'docker' if path in ra else 'moorage'} only")
    return out


def main() -> int:
    write = "--write-expected" in sys.argv
    moor = str(Path(sys.executable).parent / "moor")
    inspect = [DOCKER, "image", "inspect", "bb:1"]
    have_docker = (
        Path(DOCKER).exists() and subprocess.run(inspect, capture_output=True).returncode == 0
    )
    if not have_docker:
        print("Docker (with an image bb:1) is not available: nothing to compare against")
        return 0 if not write else 1
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MOORAGE_ROOT": f"{tmp}/root", "MOORAGE_RUNROOT": f"{tmp}/run"}
        rootfs = Path("/tmp/moorage-anchors/bb-rootfs.tar")
        subprocess.run([moor, "import", str(rootfs), "bb:1"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        for case in cases():
            expected = docker_result(case)
            if write:
                expected_path(case).write_text(json.dumps(expected, indent=1) + "\n")
            try:
                got = moor_result(moor, case, env)
            except subprocess.CalledProcessError as e:
                print(f"{case}: moorage failed: {e}")
                failures += 1
                continue
            diffs = compare(expected, got)
            print(f"{case}: {'same' if not diffs else f'{len(diffs)} differences'}")
            for d in diffs:
                print(f"  {d}")
            failures += bool(diffs)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
