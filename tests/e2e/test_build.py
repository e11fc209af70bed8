"""``moor build`` as a user runs it: output, cache, context forms, errors, cleanup."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.conftest import MOOR, Moor

DOCKERFILE = """FROM bb:1
ARG MSG=hello
COPY . /app/
RUN echo "$MSG" > /app/msg && cat /app/msg
CMD ["cat", "/app/msg"]
"""


def _ctx(tmp_path: Path, dockerfile: str = DOCKERFILE, files: int = 3) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for i in range(files):
        (ctx / f"f{i}.txt").write_text(f"file {i}\n")
    return ctx


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


def test_build_output_cache_and_run(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    first = moor("build", "-t", "app:1", "-t", "app:latest", str(ctx))
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Sending build context to Docker daemon")
    assert "Step 1/5 : FROM bb:1" in lines
    assert 'Step 4/5 : RUN echo "$MSG" > /app/msg && cat /app/msg' in lines
    assert "hello" in lines  # the RUN's output, streamed
    assert any(line.startswith(" ---> Running in ") for line in lines)
    assert lines[-3].startswith("Successfully built ")
    assert lines[-2:] == ["Successfully tagged app:1", "Successfully tagged app:latest"]
    assert "Using cache" not in first.stdout
    image_id = lines[-3].split()[-1]
    assert moor("run", "--rm", "app:1").stdout == "hello\n"
    parent = moor("image", "inspect", "-f", "{{.Parent}}", "app:1").stdout.strip()
    assert parent.startswith("sha256:")  # the RUN step's image, as Docker shows it
    assert moor("image", "inspect", "-f", "{{.Parent}}", "bb:1").stdout.strip() == ""
    assert moor("ps", "-aq").stdout == ""  # no intermediate container left

    again = moor("build", "-t", "app:1", str(ctx))
    assert again.stdout.count(" ---> Using cache") == 4
    assert "Running in" not in again.stdout
    assert again.stdout.splitlines()[-2] == f"Successfully built {image_id}"

    (ctx / "f1.txt").write_text("changed\n")
    changed = moor("build", str(ctx)).stdout
    assert changed.count(" ---> Using cache") == 1  # ARG only: the COPY and on run again
    assert "Running in" in changed

    arg = moor("build", "-q", "--build-arg", "MSG=bye", "-t", "bye", str(ctx)).stdout
    assert arg.strip().startswith("sha256:")
    assert moor("run", "--rm", "bye").stdout == "bye\n"
    no_cache = moor("build", "--no-cache", str(ctx)).stdout
    assert "Using cache" not in no_cache

    # intermediate images are hidden from `images` unless -a
    shown = moor("images", "-q").stdout.split()
    everything = moor("images", "-aq").stdout.split()
    assert len(everything) > len(shown)


def test_build_context_tar_on_stdin_and_file_outside(moor: Moor, bb: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM bb:1\nCOPY x /x\n"), ("x", b"from tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = moor("build", "-t", "fromtar", "-", input=buf.getvalue()).stdout
    assert "Successfully tagged fromtar:latest" in out
    assert moor("run", "--rm", "fromtar", "cat", "/x").stdout == "from tar\n"

    ctx = _ctx(tmp_path, files=1)
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM bb:1\nCOPY f0.txt /got\nLABEL where=outside\n")
    moor("build", "-f", str(outside), "-t", "outside", str(ctx))
    labels = moor("image", "inspect", "-f", "{{json .Config.Labels}}", "outside").stdout
    assert json.loads(labels) == {"where": "outside"}

    # a Dockerfile alone on stdin: no context
    moor("build", "-t", "nocontext", "-", input=b"FROM bb:1\nENV X=1\n")
    env = moor("image", "inspect", "-f", "{{json .Config.Env}}", "nocontext").stdout
    assert "X=1" in json.loads(env)


def test_build_iidfile_label_target(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "FROM bb:1 AS first\nRUN echo one > /one\nFROM bb:1 AS second\nRUN exit 9\n",
        files=0,
    )
    iid = tmp_path / "iid"
    res = moor("build", "--target", "first", "--iidfile", str(iid), "--label", "a=b", str(ctx))
    assert "exit 9" not in res.stdout  # only the stages the target needs
    assert iid.read_text().startswith("sha256:")
    labels = moor("image", "inspect", "-f", "{{json .Config.Labels}}", iid.read_text()).stdout
    assert json.loads(labels) == {"a": "b"}
    bad = moor("build", "--target", "nope", str(ctx), check=False)
    assert bad.returncode != 0
    assert "failed to reach build target nope" in bad.stderr


def test_build_errors(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nRUN echo start\nRUN exit 7\n", files=0)
    failed = moor("build", str(ctx), check=False)
    assert failed.returncode == 7
    assert "The command '/bin/sh -c exit 7' returned a non-zero code: 7" in failed.stderr
    assert moor("ps", "-aq").stdout == ""
    assert _mounts_under(moor.root) == []
    # the complete steps before the failure are cached
    again = moor("build", str(ctx), check=False)
    assert again.stdout.count("Using cache") == 1

    cases = {
        "FROM bb:1\nBOGUS x\n": "Dockerfile:2: unknown instruction: BOGUS",
        "FROM bb:1\nCOPY missing /x\n": "Dockerfile:2: COPY failed: file not found in build "
        "context or excluded by .dockerignore: stat missing: file does not exist",
        "FROM bb:1\nCOPY ../x /x\n": "forbidden path outside the build context",
        "FROM nosuchimage:1\n": "Dockerfile:1: pull access denied for nosuchimage:1",
        "FROM bb:1\nCOPY --from=nowhere /a /b\n": "invalid from flag value nowhere",
        "FROM bb:1\nCOPY f0.txt f1.txt /notadir\n": "must be a directory and end with a /",
        'FROM bb:1\nENV A="unterminated\n': "Dockerfile:2: unexpected end of statement",
        "FROM bb:1 AS a\nCOPY --from=a /x /y\n": "refers to current build stage",
        "FROM bb:1\nCOPY f0.txt /etc/passwd/x/\n": "Dockerfile:2: COPY failed: cannot create "
        "directory /etc/passwd: a file is in the way",
    }
    for text, message in cases.items():
        (ctx / "Dockerfile").write_text(text)
        (ctx / "f0.txt").write_text("0")
        (ctx / "f1.txt").write_text("1")
        res = moor("build", str(ctx), check=False)
        assert res.returncode == 1, text
        assert message in res.stderr, (text, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    missing = moor("build", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 1
    assert "unable to prepare context" in missing.stderr


def test_dockerignore_and_copy_rules(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nCOPY . /c/\nRUN find /c | sort\n", files=2)
    (ctx / ".dockerignore").write_text("f1.txt\n")
    out = moor("build", str(ctx)).stdout
    assert "/c/f0.txt" in out
    assert "/c/f1.txt" not in out
    (ctx / ".dockerignore").write_text("f0.txt\n")
    again = moor("build", str(ctx)).stdout  # the COPY's sources changed: no cache
    assert "/c/f1.txt" in again
    assert "Using cache" not in again
    (ctx / "skip" / "deep").mkdir(parents=True)
    (ctx / "skip" / "deep" / "keep.txt").write_text("kept")
    (ctx / "skip" / "drop.txt").write_text("dropped")
    (ctx / ".dockerignore").write_text("skip\n!skip/deep/keep.txt\n")
    third = moor("build", str(ctx)).stdout
    assert "/c/skip/deep/keep.txt" in third
    assert "drop.txt" not in third


def test_reproducible_with_source_date_epoch(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nCOPY . /c/\nRUN echo x > /made\n", files=2)
    env = {**moor.env, "SOURCE_DATE_EPOCH": "1700000000"}

    def build() -> str:
        p = subprocess.run(
            [MOOR, "build", "-q", "--no-cache", str(ctx)], env=env, capture_output=True, check=True
        )
        return p.stdout.decode().strip()

    first = build()
    time.sleep(1.1)
    assert build() == first


def test_interrupted_build_leaves_nothing(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nRUN echo begun && sleep 30\n", files=0)
    for sig in (signal.SIGINT, signal.SIGKILL):
        p = moor.popen("build", str(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None
        deadline = time.monotonic() + 20
        seen = b""
        while b"begun" not in seen and time.monotonic() < deadline:
            seen += p.stdout.readline()
        assert b"begun" in seen
        p.send_signal(sig)
        p.wait(timeout=20)
        assert p.returncode != 0
        if sig == signal.SIGINT:
            assert moor("ps", "-aq").stdout == ""
            assert _mounts_under(moor.root) == []
    # after kill -9, the next build removes what the dead one left
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN true\n")
    moor("build", str(ctx))
    assert moor("ps", "-aq").stdout == ""
    assert [m for m in _mounts_under(moor.root) if "/build/" in m] == []


def test_builder_prune(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nRUN echo x > /x\nENV A=1\n", files=0)
    moor("build", "-t", "p:1", str(ctx))
    out = moor("builder", "prune", "-f").stdout
    assert "Total:" in out
    again = moor("build", "-t", "p:1", str(ctx)).stdout
    assert "Using cache" not in again
    assert moor("run", "--rm", "p:1", "cat", "/x").stdout == "x\n"


def test_run_mounts(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "FROM bb:1 AS other\nRUN mkdir /o && echo fromstage > /o/f\n"
        "FROM bb:1\nARG N=1\n"
        "RUN --mount=type=cache,target=/var/cache/t,id=c1 echo run$N >> /var/cache/t/log"
        " && cat /var/cache/t/log\n"
        "RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/y && ls /scratch\n"
        "RUN --mount=type=bind,target=/ctx cat /ctx/f0.txt && cp /ctx/f0.txt /copied\n"
        "RUN --mount=type=bind,from=other,source=/o,target=/mnt/o cat /mnt/o/f\n",
        files=1,
    )
    first = moor("build", "--build-arg", "N=1", str(ctx)).stdout
    assert "run1" in first
    assert "fromstage" in first
    second = moor("build", "--build-arg", "N=2", "-t", "m", str(ctx)).stdout
    assert "run1\nrun2" in second  # the cache directory persisted across builds
    listing = moor(
        "run", "--rm", "m", "sh", "-c", "ls -d /var/cache/t /scratch /ctx /mnt; cat /copied",
        check=False,
    ).stdout  # fmt: skip
    assert listing == "file 0\n"  # mount points are not part of any layer
    moor("builder", "prune", "-f")  # forgets the cache directories too
    third = moor("build", "--build-arg", "N=3", str(ctx)).stdout
    assert "run3" in third
    assert "run2" not in third
    assert _mounts_under(moor.root) == []
    net = _ctx(tmp_path, "FROM bb:1\nRUN --network=none ip -o link | grep -vc lo; true\n", files=0)
    assert "\n0\n" in moor("build", "--no-cache", str(net)).stdout  # only loopback inside
    bad = _ctx(tmp_path, "FROM bb:1\nRUN --mount=type=secret,target=/s true\n", files=0)
    res = moor("build", str(bad), check=False)
    assert res.returncode == 1
    assert "Dockerfile:2: unsupported mount type 'secret'" in res.stderr


def test_intermediate_images_follow_their_child(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nCOPY f0.txt /f\nRUN cat /f\nENV A=1\n", files=1)
    moor("build", "-t", "app:1", str(ctx))
    base_only = set(moor("images", "-aq").stdout.split())
    assert len(base_only) == 4  # bb:1, two intermediates, the final image
    (ctx / "f0.txt").write_text("changed")
    moor("build", "-t", "app:1", str(ctx))
    # the first build's final image is now dangling; its intermediates stay hidden
    visible = moor("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(visible) == ["<none>:<none>", "app:1", "bb:1"]
    moor("image", "prune", "-f")  # the dangling image and the intermediates only it used
    assert len(moor("images", "-aq").stdout.split()) == 4
    assert "Using cache" in moor("build", "-t", "app:1", str(ctx)).stdout  # cache kept
    out = moor("rmi", "app:1").stdout  # deletes the intermediates with it, as Docker
    assert out.count("Deleted: ") == 3
    assert moor("images", "-aq").stdout.split() == [bb[7:19]]


def test_cache_from_another_store(moor: Moor, bb: str, busybox_tar: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    moor("build", "-t", "cached:1", str(ctx))
    archive = moor("save", "cached:1").stdout_bytes
    other = Moor(tmp_path / "root2", tmp_path / "run2")
    try:
        other("import", "--change", 'CMD ["sh"]', str(busybox_tar), "bb:1")
        other("load", input=archive)
        out = other("build", "--cache-from", "cached:1", str(ctx)).stdout
        assert out.count(" ---> Using cache") == 4
        assert "Running in" not in out
        assert other("run", "--rm", out.split()[-1], "cat", "/app/msg").stdout == "hello\n"
        missing = other("build", "--cache-from", "nope:1", str(ctx), check=False)
        assert missing.returncode == 1
        assert "No such image: nope:1" in missing.stderr
    finally:  # this second store's default network leaves the host with it
        other("network", "teardown-host", check=False)


def test_add_url_chmod_heredocs_and_from_globs(moor: Moor, bb: str, tmp_path: Path) -> None:
    import hashlib
    import http.server
    import threading

    payload = b"served over loopback\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/files/data.txt"
        digest = "sha256:" + hashlib.sha256(payload).hexdigest()
        ctx = _ctx(
            tmp_path,
            "FROM bb:1 AS src\nRUN mkdir /s && echo 1 > /s/a.txt && echo 2 > /s/b.txt"
            " && echo 3 > /s/c.log\n"
            "FROM bb:1\n"
            f"ADD {url} /dl/\n"
            f"ADD --checksum={digest} {url} /checked\n"
            "COPY --chmod=0751 f0.txt /exec\n"
            "COPY --from=src /s/*.txt /globbed/\n"
            "COPY <<EOF /doc.txt\nhello $HOSTNAME_UNSET${X:-x}\nEOF\n"
            "RUN <<EOF\necho from heredoc > /hd\nchmod 600 /hd\nEOF\n"
            "RUN cat <<EOF > /cat\ncat heredoc\nEOF\n",
            files=1,
        )
        moor("build", "-t", "h", str(ctx))
        script = (
            "stat -c '%a %n' /dl/data.txt /checked /exec /hd; ls /globbed; "
            "cat /dl/data.txt /doc.txt /hd /cat"
        )
        out = moor("run", "--rm", "h", "sh", "-c", script).stdout
        assert out.splitlines() == [
            "600 /dl/data.txt",
            "600 /checked",
            "751 /exec",
            "600 /hd",
            "a.txt",
            "b.txt",
            "served over loopback",
            "hello x",
            "from heredoc",
            "cat heredoc",
        ]
        bad = _ctx(tmp_path, f"FROM bb:1\nADD --checksum=sha256:{'0' * 64} {url} /x\n", files=0)
        res = moor("build", str(bad), check=False)
        assert res.returncode == 1
        assert "Dockerfile:2: ADD failed: digest mismatch" in res.stderr
    finally:
        server.shutdown()
        server.server_close()
    plat = _ctx(tmp_path, "FROM --platform=linux/s390x bb:1\n", files=0)
    res = moor("build", str(plat), check=False)
    assert "only the host's platform" in res.stderr
    local = _ctx(tmp_path, "FROM bb:1\nADD --checksum=sha256:00 f0.txt /x\n", files=1)
    res = moor("build", str(local), check=False)
    assert "checksum can't be specified for non-HTTP(S) sources" in res.stderr


def test_rm_false_keeps_the_step_containers(moor: Moor, bb: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM bb:1\nRUN echo kept\n", files=0)
    out = moor("build", "--rm=false", str(ctx)).stdout
    assert "Removing intermediate container" not in out
    kept = moor("ps", "-aq").stdout.split()
    assert len(kept) == 1
    moor("rm", *kept)
    out = moor("build", "--no-cache", "--rm", "--force-rm=true", str(ctx)).stdout
    assert "Removing intermediate container" in out
    assert moor("ps", "-aq").stdout == ""


def test_onbuild_triggers_run_in_the_child(moor: Moor, bb: str, tmp_path: Path) -> None:
    parent = _ctx(
        tmp_path, "FROM bb:1\nONBUILD COPY f0.txt /from-child\nONBUILD RUN echo t > /t\n", files=1
    )
    moor("build", "-t", "parent", str(parent))
    cfg = json.loads(moor("image", "inspect", "-f", "{{json .Config.OnBuild}}", "parent").stdout)
    assert cfg == ["COPY f0.txt /from-child", "RUN echo t > /t"]
    child_dir = tmp_path / "child"
    child_dir.mkdir()
    (child_dir / "Dockerfile").write_text("FROM parent\nLABEL child=1\n")
    (child_dir / "f0.txt").write_text("child's file\n")
    out = moor("build", "-t", "child", str(child_dir)).stdout
    assert "# Executing 2 build triggers" in out
    got = moor("run", "--rm", "child", "cat", "/from-child", "/t").stdout
    assert got == "child's file\nt\n"
    inherited = moor("image", "inspect", "-f", "{{json .Config.OnBuild}}", "child").stdout
    assert json.loads(inherited) in (None, [])


def test_many_layers(moor: Moor, bb: str, tmp_path: Path) -> None:
    steps = "".join(f"COPY f0.txt /layer{i}\n" for i in range(60))
    ctx = _ctx(tmp_path, f"FROM bb:1\n{steps}COPY f0.txt /last\n", files=1)
    moor("build", "-t", "deep", str(ctx))  # each COPY mounts all the layers below it
    layers = moor("image", "inspect", "-f", "{{len .RootFS.Layers}}", "deep").stdout
    assert layers == "62\n"
    assert _mounts_under(moor.root) == []
