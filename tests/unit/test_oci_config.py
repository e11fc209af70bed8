"""Image configs (Docker and OCI) and --change instructions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.errors import InvalidArgument
from moorage.oci import mediatypes as mt
from moorage.oci.config import (
    ContainerConfig,
    HealthConfig,
    HistoryEntry,
    ImageConfig,
    RootFS,
    apply_changes,
)
from moorage.oci.digest import Digest
from moorage.oci.platform import Platform


def dg(name: str) -> str:
    return str(Digest.of(name.encode()))


# A config shaped like the ones `docker build` (classic builder) writes, keys in Docker's order.
DOCKER_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "config": {
        "Hostname": "",
        "Domainname": "",
        "User": "nginx",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX=1.25"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f localhost"],
            "Interval": 30000000000,
            "Retries": 3,
        },
        "ArgsEscaped": True,
        "Image": dg("parent-image"),
        "Volumes": {"/var/cache/nginx": {}},
        "WorkingDir": "/srv",
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Labels": {"maintainer": "NGINX Docker Maintainers"},
        "StopSignal": "SIGQUIT",
        "Shell": ["/bin/bash", "-c"],
    },
    "container": "3e1a1ab4c5d1f2",
    "container_config": {
        "Hostname": "3e1a1ab4c5d1",
        "Cmd": ["/bin/sh", "-c", "#(nop) ", 'CMD ["nginx"]'],
    },
    "created": "2024-04-16T18:06:29.862314129Z",
    "docker_version": "20.10.23",
    "history": [
        {"created": "2024-04-10T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {
            "created": "2024-04-10T00:00:01Z",
            "created_by": '/bin/sh -c #(nop)  CMD ["bash"]',
            "empty_layer": True,
        },
        {
            "created": "2024-04-16T18:06:29Z",
            "created_by": "RUN /bin/sh -c apt-get update # buildkit",
            "comment": "buildkit.dockerfile.v0",
            "author": "someone",
        },
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [dg("d1"), dg("d2")]},
}

# A config shaped like BuildKit's OCI output.
OCI_CONFIG: dict[str, Any] = {
    "created": "2024-05-01T10:00:00Z",
    "author": "ci@example.com",
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "config": {
        "Env": ["PATH=/usr/bin"],
        "Entrypoint": ["/app"],
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.source": "https://example.com"},
        "ArgsEscaped": True,
    },
    "rootfs": {"type": "layers", "diff_ids": [dg("x")]},
    "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "COPY app /app # buildkit"}],
}

WINDOWS_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "windows",
    "os.version": "10.0.17763.5576",
    "os.features": ["win32k"],
    "config": {"Cmd": ["c:\\windows\\system32\\cmd.exe"]},
    "rootfs": {"type": "layers", "diff_ids": [dg("w")]},
}


@pytest.mark.parametrize("doc", [DOCKER_CONFIG, OCI_CONFIG, WINDOWS_CONFIG])
def test_round_trip_preserves_everything(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc, indent=2).encode()
    cfg = ImageConfig.from_json(raw)
    assert cfg.raw == raw
    assert cfg.digest == Digest.of(raw)  # the image id comes from the original bytes
    out = cfg.to_json()
    assert out == doc
    assert json.loads(cfg.to_bytes()) == doc
    assert ImageConfig.from_json(cfg.to_bytes()) == cfg
    assert ImageConfig.from_json(doc) == cfg
    assert ImageConfig.from_json(doc).raw is None


def test_canonical_bytes_are_compact_and_stable() -> None:
    cfg = ImageConfig.from_json(OCI_CONFIG)
    assert cfg.to_bytes() == json.dumps(cfg.to_json(), separators=(",", ":")).encode()
    assert ImageConfig.from_json(cfg.to_bytes()).to_bytes() == cfg.to_bytes()
    assert cfg.content == cfg.to_bytes()


def test_docker_fields_parsed() -> None:
    cfg = ImageConfig.from_json(DOCKER_CONFIG)
    cc = cfg.config
    assert cc.user == "nginx"
    assert cc.exposed_ports == ("80/tcp", "443/tcp")
    assert cc.env is not None and cc.env[1] == "NGINX=1.25"
    assert cc.env_dict()["NGINX"] == "1.25"
    assert cc.cmd == ("nginx", "-g", "daemon off;")
    assert cc.entrypoint == ("/docker-entrypoint.sh",)
    assert cc.volumes == ("/var/cache/nginx",)
    assert cc.working_dir == "/srv"
    assert cc.labels == {"maintainer": "NGINX Docker Maintainers"}
    assert cc.stop_signal == "SIGQUIT"
    assert cc.args_escaped is True
    assert cc.on_build is None
    assert cc.shell == ("/bin/bash", "-c")
    assert cc.healthcheck == HealthConfig(
        test=("CMD-SHELL", "curl -f localhost"), interval=30 * 10**9, retries=3
    )
    assert cc.extra["Hostname"] == "" and cc.extra["Image"] == dg("parent-image")
    assert cfg.extra["docker_version"] == "20.10.23"
    assert cfg.extra["container_config"]["Cmd"][0] == "/bin/sh"
    assert cfg.rootfs == RootFS("layers", (Digest.parse(dg("d1")), Digest.parse(dg("d2"))))
    assert cfg.history[1] == HistoryEntry(
        created="2024-04-10T00:00:01Z",
        created_by='/bin/sh -c #(nop)  CMD ["bash"]',
        empty_layer=True,
    )
    assert cfg.history[2].comment == "buildkit.dockerfile.v0"
    assert sum(not h.empty_layer for h in cfg.history) == len(cfg.rootfs.diff_ids)
    assert cfg.created == "2024-04-16T18:06:29.862314129Z"


def test_oci_fields_and_platform() -> None:
    cfg = ImageConfig.from_json(OCI_CONFIG)
    assert cfg.author == "ci@example.com"
    assert cfg.platform == Platform("linux", "arm64", "v8")
    win = ImageConfig.from_json(WINDOWS_CONFIG)
    assert win.platform == Platform("windows", "amd64", None, "10.0.17763.5576", ("win32k",))


def test_config_is_hashable_and_frozen() -> None:
    a = ImageConfig.from_json(DOCKER_CONFIG)
    b = ImageConfig.from_json(json.dumps(DOCKER_CONFIG).encode())
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.extra["docker_version"] = "x"  # type: ignore[index]


def test_descriptor_for_config() -> None:
    raw = json.dumps(OCI_CONFIG).encode()
    d = ImageConfig.from_json(raw).descriptor(mt.DOCKER_CONFIG)
    assert (d.media_type, d.digest, d.size) == (mt.DOCKER_CONFIG, Digest.of(raw), len(raw))


def test_minimal_and_null_fields() -> None:
    cfg = ImageConfig.from_json(
        b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    )
    assert cfg.config == ContainerConfig()
    assert cfg.history == ()
    nulls = ImageConfig.from_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": None, "Env": None, "Labels": None},
        }
    )
    assert nulls.config.entrypoint is None and nulls.config.labels is None
    # null and absent are the same thing: nulls of known keys are not written back
    assert nulls.to_json()["config"] == {}
    empty = ImageConfig.from_json(
        {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": []}}
    )
    assert empty.config.entrypoint == ()
    assert empty.to_json()["config"] == {"Entrypoint": []}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(OCI_CONFIG))
    node = doc
    keys = path.split("/")
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[int(key)]
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("config/Env", "PATH=/bin", "config.Env"),
        ("config/Env", ["A=1", 2], "config.Env"),
        ("config/Cmd", "sh", "config.Cmd"),
        ("config/Entrypoint", {"a": 1}, "config.Entrypoint"),
        ("config/User", 0, "config.User"),
        ("config/WorkingDir", ["/"], "config.WorkingDir"),
        ("config/Labels", {"a": 1}, "config.Labels"),
        ("config/Labels", ["a=b"], "config.Labels"),
        ("config/ExposedPorts", ["80/tcp"], "config.ExposedPorts"),
        ("config/ExposedPorts", {"80/tcp": 1}, "config.ExposedPorts"),
        ("config/Volumes", ["/data"], "config.Volumes"),
        ("config/StopSignal", 15, "config.StopSignal"),
        ("config/ArgsEscaped", "true", "config.ArgsEscaped"),
        ("config/Healthcheck", ["CMD"], "config.Healthcheck"),
        ("config/Healthcheck", {"Test": "curl"}, "config.Healthcheck.Test"),
        ("config/Healthcheck", {"Interval": "30s"}, "config.Healthcheck.Interval"),
        ("config/Healthcheck", {"Retries": True}, "config.Healthcheck.Retries"),
        ("config/OnBuild", "RUN x", "config.OnBuild"),
        ("config/Shell", "/bin/sh", "config.Shell"),
        ("config", [], "config"),
        ("created", 1714557600, "image config.created"),
        ("author", ["x"], "image config.author"),
        ("architecture", 64, "image config.architecture"),
        ("os", None, None),
        ("os.features", "x", "image config.os.features"),
        ("rootfs", "layers", "rootfs"),
        ("rootfs/type", None, "rootfs.type"),
        ("rootfs/diff_ids", "sha256:x", "rootfs.diff_ids"),
        ("rootfs/diff_ids", ["sha256:abc"], "rootfs.diff_ids[0]"),
        ("rootfs/diff_ids", [1], "rootfs.diff_ids[0]"),
        ("history", {}, "image config.history"),
        ("history", ["x"], "history[0]"),
        ("history", [{"empty_layer": "yes"}], "history[0].empty_layer"),
        ("history", [{"created_by": 5}], "history[0].created_by"),
    ],
)
def test_strict_types(path: str, value: Any, field: str | None) -> None:
    doc = _with(path, value)
    if field is None:  # tolerated
        ImageConfig.from_json(doc)
        return
    with pytest.raises(InvalidArgument) as exc:
        ImageConfig.from_json(doc)
    assert f"invalid {field}" in str(exc.value)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'"config"', b'{"os":"linux","os":"windows"}'])
def test_malformed_bytes(data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="image config"):
        ImageConfig.from_json(data)


def test_evolve_drops_raw() -> None:
    cfg = ImageConfig.from_json(json.dumps(OCI_CONFIG).encode())
    new = cfg.evolve(author="me")
    assert new.raw is None and new.author == "me"
    assert new.digest == Digest.of(new.to_bytes())


# --- apply_changes ----------------------------------------------------------------------------

BASE = ImageConfig(
    architecture="amd64",
    os="linux",
    config=ContainerConfig(
        env=("PATH=/usr/bin:/bin", "HOME=/root"),
        cmd=("bash",),
        working_dir="/srv",
        labels={"base": "yes"},
        exposed_ports=("22/tcp",),
    ),
)


def changed(*changes: str, base: ImageConfig = BASE) -> ContainerConfig:
    return apply_changes(base, list(changes)).config


@pytest.mark.parametrize(
    ("changes", "attr", "expected"),
    [
        # CMD / ENTRYPOINT: exec (JSON) and shell forms
        (['CMD ["nginx", "-g", "daemon off;"]'], "cmd", ("nginx", "-g", "daemon off;")),
        (["CMD echo hello world"], "cmd", ("/bin/sh", "-c", "echo hello world")),
        (["cmd echo $HOME"], "cmd", ("/bin/sh", "-c", "echo $HOME")),
        (["CMD []"], "cmd", ()),
        (['CMD ["broken"'], "cmd", ("/bin/sh", "-c", '["broken"')),
        (['CMD ["a", 1]'], "cmd", ("/bin/sh", "-c", '["a", 1]')),
        (['ENTRYPOINT ["/init"]'], "entrypoint", ("/init",)),
        (["ENTRYPOINT exec /init --flag"], "entrypoint", ("/bin/sh", "-c", "exec /init --flag")),
        # ENTRYPOINT resets an inherited CMD, but not one set by an earlier change
        (['ENTRYPOINT ["/init"]'], "cmd", None),
        (['CMD ["x"]', 'ENTRYPOINT ["/init"]'], "cmd", ("x",)),
        (['ENTRYPOINT ["/init"]', 'CMD ["x"]'], "cmd", ("x",)),
        # ENV: key=value (quotes, several pairs), legacy, replacement, substitution
        (["ENV A=1"], "env", ("PATH=/usr/bin:/bin", "HOME=/root", "A=1")),
        (
            ["ENV A=1 B=\"two words\" C='$HOME'"],
            "env",
            ("PATH=/usr/bin:/bin", "HOME=/root", "A=1", "B=two words", "C=$HOME"),
        ),
        (
            ["ENV MY_VAR some value here"],
            "env",
            ("PATH=/usr/bin:/bin", "HOME=/root", "MY_VAR=some value here"),
        ),
        (["ENV HOME=/home/app"], "env", ("PATH=/usr/bin:/bin", "HOME=/home/app")),
        (["ENV PATH=$PATH:/opt/bin"], "env", ("PATH=/usr/bin:/bin:/opt/bin", "HOME=/root")),
        (["ENV PATH=${PATH}:/x"], "env", ("PATH=/usr/bin:/bin:/x", "HOME=/root")),
        (
            ["ENV A=${NOPE:-dflt} B=${HOME:+set}"],
            "env",
            ("PATH=/usr/bin:/bin", "HOME=/root", "A=dflt", "B=set"),
        ),
        (["ENV A=1", "ENV B=$A"], "env", ("PATH=/usr/bin:/bin", "HOME=/root", "A=1", "B=1")),
        (["ENV A=1 B=$A"], "env", ("PATH=/usr/bin:/bin", "HOME=/root", "A=1", "B=")),
        (["ENV A=\\$HOME"], "env", ("PATH=/usr/bin:/bin", "HOME=/root", "A=$HOME")),
        (['ENV A="x\\"y"'], "env", ("PATH=/usr/bin:/bin", "HOME=/root", 'A=x"y')),
        (["ENV EMPTY="], "env", ("PATH=/usr/bin:/bin", "HOME=/root", "EMPTY=")),
        # EXPOSE
        (["EXPOSE 80"], "exposed_ports", ("22/tcp", "80/tcp")),
        (
            ["EXPOSE 80/tcp 53/udp 9000/SCTP"],
            "exposed_ports",
            ("22/tcp", "80/tcp", "53/udp", "9000/sctp"),
        ),
        (["EXPOSE 22"], "exposed_ports", ("22/tcp",)),
        (["EXPOSE 8000-8002"], "exposed_ports", ("22/tcp", "8000/tcp", "8001/tcp", "8002/tcp")),
        (["ENV P=8080", "EXPOSE $P"], "exposed_ports", ("22/tcp", "8080/tcp")),
        # LABEL
        (["LABEL a=b"], "labels", {"base": "yes", "a": "b"}),
        (
            ['LABEL "com.example.vendor"="ACME Inc" version=1.0'],
            "labels",
            {"base": "yes", "com.example.vendor": "ACME Inc", "version": "1.0"},
        ),
        (["LABEL base=no"], "labels", {"base": "no"}),
        (
            ["LABEL description this is legacy"],
            "labels",
            {"base": "yes", "description": "this is legacy"},
        ),
        # USER / WORKDIR / VOLUME / STOPSIGNAL / ONBUILD
        (["USER nobody"], "user", "nobody"),
        (["USER 1000:1000"], "user", "1000:1000"),
        (["ENV U=app", "USER $U"], "user", "app"),
        (["WORKDIR /app"], "working_dir", "/app"),
        (["WORKDIR sub"], "working_dir", "/srv/sub"),
        (["WORKDIR /a", "WORKDIR b", "WORKDIR ../c"], "working_dir", "/a/c"),
        (["WORKDIR $HOME/x"], "working_dir", "/root/x"),
        (["VOLUME /data"], "volumes", ("/data",)),
        (["VOLUME /data /logs"], "volumes", ("/data", "/logs")),
        (['VOLUME ["/data", "/with space"]'], "volumes", ("/data", "/with space")),
        (["VOLUME /a", "VOLUME /b /a"], "volumes", ("/a", "/b")),
        (["STOPSIGNAL SIGTERM"], "stop_signal", "SIGTERM"),
        (["STOPSIGNAL 9"], "stop_signal", "9"),
        (["STOPSIGNAL SIGRTMIN+3"], "stop_signal", "SIGRTMIN+3"),
        (["stopsignal quit"], "stop_signal", "quit"),
        (["ONBUILD RUN make"], "on_build", ("RUN make",)),
        (
            ["ONBUILD COPY . /src", "ONBUILD run echo hi"],
            "on_build",
            ("COPY . /src", "run echo hi"),
        ),
        # HEALTHCHECK
        (["HEALTHCHECK NONE"], "healthcheck", HealthConfig(test=("NONE",))),
        (
            ["HEALTHCHECK CMD curl -f http://localhost/"],
            "healthcheck",
            HealthConfig(test=("CMD-SHELL", "curl -f http://localhost/")),
        ),
        (
            [
                "HEALTHCHECK --interval=5s --timeout=1m30s --start-period=500ms"
                ' --retries=4 CMD ["/hc"]'
            ],
            "healthcheck",
            HealthConfig(
                test=("CMD", "/hc"),
                interval=5 * 10**9,
                timeout=90 * 10**9,
                start_period=500 * 10**6,
                retries=4,
            ),
        ),
        # blank changes and comments are ignored
        (["", "   ", "# comment"], "cmd", ("bash",)),
    ],
)
def test_apply_changes(changes: list[str], attr: str, expected: Any) -> None:
    assert getattr(changed(*changes), attr) == expected


def test_apply_changes_leaves_the_rest_alone() -> None:
    cfg = apply_changes(ImageConfig.from_json(json.dumps(DOCKER_CONFIG).encode()), ["USER root"])
    assert cfg.raw is None
    assert cfg.config.user == "root"
    assert cfg.config.extra["Image"] == dg("parent-image")
    assert cfg.extra == ImageConfig.from_json(DOCKER_CONFIG).extra
    assert cfg.history == ImageConfig.from_json(DOCKER_CONFIG).history
    assert apply_changes(BASE, []) == BASE


def test_shell_form_uses_image_shell() -> None:
    base = ImageConfig(
        architecture="amd64", os="linux", config=ContainerConfig(shell=("/bin/bash", "-lc"))
    )
    assert changed("CMD make test", base=base).cmd == ("/bin/bash", "-lc", "make test")
    win = ImageConfig(architecture="amd64", os="windows")
    assert changed("CMD dir", base=win).cmd == ("cmd", "/S", "/C", "dir")


def test_changes_from_empty_config() -> None:
    cc = changed(
        "ENV A=1", "LABEL x=y", "EXPOSE 80", base=ImageConfig(architecture="amd64", os="linux")
    )
    assert cc.env == ("A=1",)
    assert cc.labels == {"x": "y"}
    assert cc.exposed_ports == ("80/tcp",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("FOO bar", "invalid --change: unknown instruction FOO"),
        ("foo bar", "invalid --change: unknown instruction foo"),
        ("RUN make", "RUN is not a valid change command"),
        ("FROM scratch", "FROM is not a valid change command"),
        ("COPY a b", "COPY is not a valid change command"),
        ("CMD", "CMD"),
        ("ENTRYPOINT", "ENTRYPOINT"),
        ("ENV", "ENV"),
        ("ENV ONLYKEY", "ENV"),
        ("ENV A=1 B", "ENV"),
        ("ENV =x", "ENV"),
        ('ENV A="unterminated', "ENV"),
        ("ENV A=${B", "ENV"),
        ("LABEL", "LABEL"),
        ("LABEL k", "LABEL"),
        ("EXPOSE", "EXPOSE"),
        ("EXPOSE http", "EXPOSE"),
        ("EXPOSE 80/quic", "EXPOSE"),
        ("EXPOSE 70000", "EXPOSE"),
        ("EXPOSE 0", "EXPOSE"),
        ("EXPOSE 90-80", "EXPOSE"),
        ("USER", "USER"),
        ("USER a b", "USER"),
        ("WORKDIR", "WORKDIR"),
        ("VOLUME", "VOLUME"),
        ('VOLUME [""]', "VOLUME"),
        ("STOPSIGNAL", "STOPSIGNAL"),
        ("STOPSIGNAL SIG TERM", "STOPSIGNAL"),
        ("STOPSIGNAL -9", "STOPSIGNAL"),
        ("ONBUILD", "ONBUILD"),
        ("ONBUILD ONBUILD RUN x", "ONBUILD"),
        ("ONBUILD FROM x", "ONBUILD"),
        ("ONBUILD FOO x", "ONBUILD"),
        ("HEALTHCHECK", "HEALTHCHECK"),
        ("HEALTHCHECK NONE extra", "HEALTHCHECK"),
        ("HEALTHCHECK --interval=abc CMD x", "HEALTHCHECK"),
        ("HEALTHCHECK --bogus=1 CMD x", "HEALTHCHECK"),
        ("HEALTHCHECK --retries=-1 CMD x", "HEALTHCHECK"),
        ("HEALTHCHECK RUN x", "HEALTHCHECK"),
        ("HEALTHCHECK CMD", "HEALTHCHECK"),
    ],
)
def test_apply_changes_invalid(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        apply_changes(BASE, [change])
    assert message in str(exc.value)
    assert str(exc.value).startswith("invalid --change: ")
