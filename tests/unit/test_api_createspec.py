"""Container create bodies to ContainerSpec, query filters, and the stream framing."""

from __future__ import annotations

import struct

import pytest

from moorage.api.createspec import network_mode, spec_from_body
from moorage.api.streams import frame
from moorage.errors import InvalidArgument


def test_config_and_host_config_fields() -> None:
    spec = spec_from_body(
        {
            "Image": "bb:1",
            "Cmd": ["echo", "hi"],
            "Env": ["A=1"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
            "Labels": {"team": "a"},
            "Tty": True,
            "OpenStdin": True,
            "StopSignal": "SIGINT",
            "StopTimeout": 3,
            "Hostname": "h1",
            "Unknown": {"ignored": True},
            "HostConfig": {
                "AutoRemove": True,
                "Privileged": False,
                "CapAdd": ["NET_ADMIN"],
                "CapDrop": ["MKNOD"],
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": True,
                "Tmpfs": {"/run": "size=1m"},
                "Init": True,
                "Memory": 64 << 20,
                "MemorySwap": -1,
                "NanoCpus": 500000000,
                "CpuShares": 512,
                "PidsLimit": 50,
                "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
                "ShmSize": 0,
                "Sysctls": {"net.ipv4.ip_forward": "1"},
                "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
                "NetworkMode": "default",
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
                "Runtime": "",
            },
        },
        "web",
    )
    assert (spec.image, spec.name, spec.args, spec.entrypoint) == (
        "bb:1",
        "web",
        ("echo", "hi"),
        None,
    )
    assert spec.env == ("A=1",) and spec.workdir == "/srv" and spec.user == "1000:1000"
    assert spec.labels == {"team": "a"} and spec.tty and spec.open_stdin
    assert (spec.stop_signal, spec.stop_timeout, spec.hostname) == ("SIGINT", 3, "h1")
    assert spec.auto_remove and spec.read_only and spec.init
    assert spec.cap_add == ("NET_ADMIN",) and spec.cap_drop == ("MKNOD",)
    assert spec.tmpfs == {"/run": "size=1m"}
    assert spec.resources.memory == 64 << 20 and spec.resources.memory_swap == -1
    assert spec.resources.nano_cpus == 500000000 and spec.resources.pids_limit == 50
    assert spec.ulimits == (("RLIMIT_NOFILE", 100, 200),)
    assert spec.shm_size == 64 << 20 and spec.restart == "no" and spec.network_mode == "bridge"
    assert spec.log_opts == ("max-size=1m",) and spec.runtime == "runc"
    spec.validate()


def test_entrypoint_and_restart_forms() -> None:
    s = spec_from_body({"Image": "i", "Entrypoint": ["sh", "-c"], "Cmd": "echo x"}, "")
    assert (s.entrypoint, s.args) == ("sh", ("-c", "echo x"))
    assert spec_from_body({"Image": "i", "Entrypoint": [""]}, "").entrypoint == ""
    assert spec_from_body({"Image": "i", "Entrypoint": []}, "").entrypoint == ""
    s = spec_from_body(
        {"Image": "i", "HostConfig": {"RestartPolicy": {"Name": "on-failure",
                                                        "MaximumRetryCount": 3}}}, ""
    )  # fmt: skip
    assert s.restart == "on-failure:3"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Image": "i", "Env": "A=1"}, "ContainerConfigWrapper.Env of type []string"),
        ({"Image": "i", "Tty": 1}, "cannot unmarshal number into Go struct field "
                                   "ContainerConfigWrapper.Tty of type bool"),
        ({"Image": "i", "Labels": {"a": 1}}, "of type string"),
        ({"Image": "i", "HostConfig": []}, "HostConfig of type container.HostConfig"),
        ({"Image": "i", "HostConfig": {"Memory": True}}, "HostConfig.Memory of type int64"),
        ({"Image": "i", "HostConfig": {"Ulimits": [{"Name": "bogus"}]}}, "invalid ulimit type"),
        ({"Image": "i", "HostConfig": {"LogConfig": {"Type": "syslog"}}}, "unsupported log"),
        ({"Cmd": ["x"]}, "no image given"),
    ],
)  # fmt: skip
def test_wrong_types_are_go_style_errors(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=None) as exc:
        spec_from_body(body, "")
    assert message in str(exc.value)


def test_network_modes() -> None:
    default = spec_from_body({"Image": "i"}, "").network_mode
    assert [network_mode(m) for m in ("", "default", "none", "host")] == [
        default, default, "none", "host",
    ]  # fmt: skip
    with pytest.raises(InvalidArgument):  # the spec refuses what the engine cannot do
        spec_from_body({"Image": "i", "HostConfig": {"NetworkMode": "container:"}}, "").validate()


def test_multiplexed_frame() -> None:
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00" + struct.pack(">I", 3) + b"hi\n"
    assert frame(2, b"")[:4] == b"\x02\x00\x00\x00"
