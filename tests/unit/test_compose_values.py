"""Compose value readers: YAML scalars, ports, volumes, durations, sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.compose.errors import ComposeError
from moorage.compose.ports import parse_expose, parse_ports
from moorage.compose.values import (
    Loc,
    as_bool,
    as_duration,
    as_int,
    as_size,
    format_duration,
    kv_mapping,
    parse_duration,
)
from moorage.compose.volumes import parse_volumes
from moorage.compose.yamlsrc import load_yaml

LOC = Loc(("services", "web", "x"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: 80:22", "80:22"),  # YAML 1.1 would read base 60
        ("a: yes", "yes"),
        ("a: no", "no"),
        ("a: on", "on"),
        ("a: true", True),
        ("a: False", False),
        ("a: 010", 10),
        ("a: 0o17", 15),
        ("a: 0x1f", 31),
        ("a: 1.5", 1.5),
        ("a: ~", None),
        ("a:", None),
        ("a: null", None),
        ("a: 2001-01-01", "2001-01-01"),
        ("a: '8000'", "8000"),
    ],
)
def test_yaml_scalars_are_yaml_1_2(text: str, value: Any) -> None:
    assert load_yaml(text, "f") == {"a": value}


def test_yaml_merge_keys_and_anchors() -> None:
    doc = load_yaml("base: &b {a: 1, b: 2}\nsvc:\n  <<: *b\n  b: 3\n", "f")
    assert doc["svc"] == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("x: 1\na: b: c\n", "f.yml:2:5", "mapping values are not allowed"),
        ("a: 1\na: 2\n", "f.yml:2:1", "mapping key 'a' already defined"),
        ("a:\n  - b\n c: d\n", "f.yml:3:2", "invalid YAML"),
        ("a: !!binary aGk=\n", "f.yml:1:4", "unsupported YAML tag"),
    ],
)
def test_yaml_errors_name_file_line_column(text: str, where: str, message: str) -> None:
    with pytest.raises(ComposeError) as e:
        load_yaml(text, "f.yml")
    assert str(e.value).startswith(where + ": ")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("1m30s", 90),
        ("1h", 3600),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("2m3s500ms", 123.5),
        ("100us", 0.0001),
        ("0", 0),
        ("1h2m3s", 3723),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert as_duration(text, LOC) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "1x", "s", "1m 30s", "-", "", "m1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_negative_duration_and_wrong_type() -> None:
    with pytest.raises(ComposeError, match="cannot be negative"):
        as_duration("-1s", LOC)
    with pytest.raises(ComposeError, match=r"services\.web\.x: expected a duration"):
        as_duration([1], LOC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (10, "10s"), (0.5, "500ms"), (3600, "1h0m0s"), (0, "0s"), (1.5, "1.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "result"),
    [(True, True), ("yes", True), ("FALSE", False), ("off", False), ("1", True)],
)
def test_bool(value: Any, result: bool) -> None:
    assert as_bool(value, LOC) is result


@pytest.mark.parametrize("value", ["maybe", 2, None, [True]])
def test_bad_bool(value: Any) -> None:
    with pytest.raises(ComposeError, match="expected a boolean"):
        as_bool(value, LOC)


def test_int_and_size() -> None:
    assert as_int("3", LOC) == 3
    assert as_int(4.0, LOC) == 4
    with pytest.raises(ComposeError, match="expected an integer, got a string"):
        as_int("three", LOC)
    with pytest.raises(ComposeError, match="at least 0"):
        as_int(-2, LOC, minimum=0)
    assert as_size("512m", LOC) == 512 << 20
    assert as_size("1.5g", LOC) == 3 << 29
    assert as_size(1024, LOC) == 1024
    with pytest.raises(ComposeError, match="expected a size"):
        as_size("lots", LOC)


def test_kv_mapping_list_and_map() -> None:
    assert kv_mapping(["A=1", "B", "C=x=y", "D="], LOC) == {
        "A": "1",
        "B": None,
        "C": "x=y",
        "D": "",
    }
    assert kv_mapping({"A": 1, "B": True, "C": None, "D": 1.5}, LOC) == {
        "A": "1",
        "B": "true",
        "C": None,
        "D": "1.5",
    }
    assert kv_mapping(["L"], LOC, allow_none=False) == {"L": ""}
    with pytest.raises(ComposeError, match="expected a mapping or a list"):
        kv_mapping("A=1", LOC)
    with pytest.raises(ComposeError, match=r"invalid entry '=1'"):
        kv_mapping(["=1"], LOC)


def _port(target: int, published: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "ingress", "target": target}
    if published is not None:
        out["published"] = published
    if "host_ip" in kw:
        out["host_ip"] = kw["host_ip"]
    out["protocol"] = kw.get("protocol", "tcp")
    return out


@pytest.mark.parametrize(
    ("entry", "ports"),
    [
        ("8000:8000", [_port(8000, "8000")]),
        (80, [_port(80)]),
        ("3000", [_port(3000)]),
        ("3000-3002", [_port(3000), _port(3001), _port(3002)]),
        ("8000-8001:9000-9001", [_port(9000, "8000"), _port(9001, "8001")]),
        ("9090-9091:8080", [_port(8080, "9090-9091")]),
        ("127.0.0.1:8001:8001", [_port(8001, "8001", host_ip="127.0.0.1")]),
        ("127.0.0.1::5000", [_port(5000, host_ip="127.0.0.1")]),
        ("6060:6060/udp", [_port(6060, "6060", protocol="udp")]),
        ("[::1]:6001:6001", [_port(6001, "6001", host_ip="::1")]),
        ("12400-12500:1240/sctp", [_port(1240, "12400-12500", protocol="sctp")]),
    ],
)
def test_short_ports(entry: Any, ports: list[dict[str, Any]]) -> None:
    assert parse_ports([entry], LOC) == ports


def test_long_port() -> None:
    long = {"target": 80, "published": 8080, "host_ip": "0.0.0.0", "protocol": "udp"}
    assert parse_ports([long], LOC) == [
        {"mode": "ingress", "target": 80, "published": "8080", "host_ip": "0.0.0.0",
         "protocol": "udp"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("70000:80", "invalid host port 70000: port numbers are 1-65535"),
        ("80:0", "invalid container port 0"),
        ("abc", "invalid container port 'abc'"),
        ("80:80/icmp", "invalid protocol 'icmp'"),
        ("1:2:3:4", "expected [IP:][HOST:]CONTAINER"),
        ("300.1.1.1:80:80", "invalid host IP '300.1.1.1'"),
        ("8000-8002:9000-9001", "differ in size"),
        ("90-80", "the end is before the start"),
        (True, "expected a port"),
        ({"published": 80}, "needs a target"),
        ({"target": 80, "mode": "x"}, "invalid mode 'x'"),
        ({"target": 80, "size": 1}, "unknown key 'size'"),
    ],
)
def test_bad_ports_name_the_entry(entry: Any, message: str) -> None:
    with pytest.raises(ComposeError) as e:
        parse_ports(["80", entry], Loc(("services", "web", "ports")))
    assert str(e.value).startswith("services.web.ports[1]")
    assert message in str(e.value)


def test_expose() -> None:
    assert parse_expose([3000, "8000-8010", "53/udp", 3000], LOC) == [
        "3000",
        "8000-8010",
        "53/udp",
    ]
    with pytest.raises(ComposeError, match=r"x\[0\]: invalid exposed port"):
        parse_expose(["http"], LOC)


@pytest.mark.parametrize(
    ("entry", "mount"),
    [
        ("/data", {"type": "volume", "target": "/data"}),
        ("db:/var/lib/db", {"type": "volume", "source": "db", "target": "/var/lib/db"}),
        (
            "db:/var/lib/db:ro,nocopy",
            {
                "type": "volume",
                "source": "db",
                "target": "/var/lib/db",
                "read_only": True,
                "volume": {"nocopy": True},
            },
        ),
        (
            "./src:/app",
            {
                "type": "bind",
                "source": "/proj/src",
                "target": "/app",
                "bind": {"create_host_path": True},
            },
        ),
        (
            "/etc/x:/x:ro,z",
            {
                "type": "bind",
                "source": "/etc/x",
                "target": "/x",
                "read_only": True,
                "bind": {"create_host_path": True, "selinux": "z"},
            },
        ),
        ("/cache:ro", {"type": "volume", "target": "/cache", "read_only": True}),
        (
            {"type": "tmpfs", "target": "/run", "tmpfs": {"size": "64m", "mode": 0o1777}},
            {"type": "tmpfs", "target": "/run", "tmpfs": {"size": 64 << 20, "mode": 0o1777}},
        ),
        (
            {
                "type": "bind",
                "source": "../up",
                "target": "/up",
                "read_only": "true",
                "bind": {"propagation": "rshared"},
            },
            {
                "type": "bind",
                "source": "/up",
                "target": "/up",
                "read_only": True,
                "bind": {"propagation": "rshared"},
            },
        ),
    ],
)
def test_volumes(entry: Any, mount: dict[str, Any]) -> None:
    assert parse_volumes([entry], LOC, Path("/proj")) == [mount]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("data:relative", "must be an absolute path"),
        ("a:/b:c:d", "expected [SOURCE:]TARGET[:MODE]"),
        ("data:/x:shared", "invalid mode 'shared'"),
        ({"type": "disk", "target": "/x"}, "invalid volume type 'disk'"),
        ({"type": "bind", "target": "/x"}, "needs a source"),
        ({"type": "volume", "source": "v"}, "needs a target"),
        (5, "expected a volume"),
    ],
)
def test_bad_volumes(entry: Any, message: str) -> None:
    with pytest.raises(ComposeError) as e:
        parse_volumes([entry], Loc(("services", "web", "volumes")), Path("/proj"))
    assert str(e.value).startswith("services.web.volumes[0]")
    assert message in str(e.value)
