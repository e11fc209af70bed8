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


def test_ports_mounts_networks_and_more() -> None:
    from moorage.api.createspec import Endpoint, parse_create

    spec, extra = parse_create(
        {
            "Image": "bb:1",
            "ExposedPorts": {"9000/tcp": {}, "53/udp": {}},
            "Volumes": {"/data": {}, "/anon/": {}},
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000,
                            "Retries": 3},
            "HostConfig": {
                "PortBindings": {
                    "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"},
                               {"HostIp": "::", "HostPort": "8080"}],
                    "81": [{"HostIp": "", "HostPort": ""}],
                    "82/udp": [{"HostPort": "9000-9005"}],
                    "83/tcp": None,
                },
                "PublishAllPorts": True,
                "Binds": ["/srv:/srv:ro,rprivate", "data:/data:rw", "cache:/cache"],
                "Mounts": [
                    {"Type": "tmpfs", "Target": "/scratch",
                     "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1777}},
                    {"Type": "volume", "Source": "v2", "Target": "/v2", "ReadOnly": True},
                ],
                "VolumesFrom": ["other:ro"],
                "NetworkMode": "backend",
                "Links": ["db:database"],
                "Dns": ["10.0.0.2"],
                "DnsSearch": ["example.org"],
                "DnsOptions": ["ndots:2"],
                "ExtraHosts": ["h:10.0.0.3"],
                "LogConfig": {"Type": "none"},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
            },
            "NetworkingConfig": {
                "EndpointsConfig": {
                    "backend": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.9.0.5"},
                                "Links": ["cache"]},
                    "front": {"Aliases": ["w2"]},
                }
            },
        },
        "web",
    )  # fmt: skip
    assert spec.publish == ("127.0.0.1:8080:80/tcp", "81/tcp", "9000-9005:82/udp")
    assert spec.publish_all is True
    assert spec.expose == ("9000/tcp", "53/udp", "83/tcp")
    assert spec.volumes == ("/srv:/srv:ro", "data:/data:rw", "cache:/cache", "/anon")
    assert spec.mounts == (
        "type=tmpfs,target=/scratch,tmpfs-size=1048576,tmpfs-mode=1777",
        "type=volume,target=/v2,source=v2,readonly",
    )
    assert spec.volumes_from == ("other:ro",)
    assert (spec.network_mode, spec.network_aliases, spec.ip) == ("backend", ("web",), "10.9.0.5")
    assert spec.links == ("db:database", "cache")
    assert extra == [Endpoint("front", ("w2",), "")]
    assert (spec.dns, spec.dns_search, spec.dns_options) == (
        ("10.0.0.2",), ("example.org",), ("ndots:2",))  # fmt: skip
    assert spec.extra_hosts == ("h:10.0.0.3",)
    assert spec.log_driver == "none" and spec.restart == "on-failure:2"
    assert spec.healthcheck == {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000,
                                "Retries": 3}  # fmt: skip
    spec.validate()


def test_networking_config_without_mode_picks_its_network() -> None:
    from moorage.api.createspec import parse_create

    spec, extra = parse_create(
        {"Image": "i", "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["a"]}}}}, ""
    )
    assert (spec.network_mode, spec.network_aliases, extra) == ("n1", ("a",), [])
    spec, extra = parse_create(
        {"Image": "i", "HostConfig": {"NetworkMode": "default"},
         "NetworkingConfig": {"EndpointsConfig": {"bridge": {}}}}, ""
    )  # fmt: skip
    assert spec.network_mode == network_mode("") and extra == []


@pytest.mark.parametrize(
    ("hc", "message"),
    [
        ({"PortBindings": {"eighty/tcp": []}}, 'invalid port specification: "eighty/tcp"'),
        ({"PortBindings": {"80/tcp": "8080"}}, "cannot unmarshal string"),
        ({"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}, 'invalid port specification: "x"'),
        ({"Binds": ["/a:/b:rx"]}, "invalid mode: rx"),
        ({"Binds": ["justone"]}, "invalid volume specification: 'justone'"),
        ({"Binds": "/a:/b"}, "cannot unmarshal string"),
        ({"Mounts": [{"Type": "npipe", "Target": "/x"}]}, "mount type unknown"),
        ({"Mounts": [{"Type": "bind", "Target": "/x"}]}, "field Source must not be empty"),
        ({"Mounts": [{"Type": "volume"}]}, "field Target must not be empty"),
        ({"LogConfig": {"Type": "nosuch"}}, "logger: no log driver named 'nosuch'"),
        ({"RestartPolicy": {"Name": "sometimes"}}, "unknown policy 'sometimes'"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, "only be used with"),
        ({"Dns": "8.8.8.8"}, "cannot unmarshal string"),
        ({"Devices": [{"PathOnHost": "/dev/fuse"}]}, "devices are not supported"),
        ({"NetworkMode": "host"}, "cannot be connected to network endpoints: host, n1"),
    ],
)  # fmt: skip
def test_bad_host_config_values(hc: dict[str, object], message: str) -> None:
    from moorage.api.createspec import parse_create

    body: dict[str, object] = {"Image": "i", "HostConfig": hc}
    if hc.get("NetworkMode") == "host":
        body["NetworkingConfig"] = {"EndpointsConfig": {"host": {}, "n1": {}}}
    with pytest.raises(InvalidArgument) as exc:
        parse_create(body, "")
    assert message in str(exc.value)


def test_bad_healthcheck() -> None:
    from moorage.api.createspec import parse_create

    with pytest.raises(InvalidArgument, match="Interval in Healthcheck cannot be less than 1ms"):
        parse_create({"Image": "i", "Healthcheck": {"Test": ["CMD", "x"], "Interval": 5}}, "")
    with pytest.raises(InvalidArgument, match="unknown healthcheck type"):
        parse_create({"Image": "i", "Healthcheck": {"Test": ["RUN", "x"]}}, "")
