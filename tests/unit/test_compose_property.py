"""Property tests for the compose parsers: escaping, ports, durations, YAML round trips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from moorage.compose.interpolate import expand
from moorage.compose.ports import parse_short_port
from moorage.compose.render import to_yaml
from moorage.compose.values import Loc, format_duration, parse_duration
from moorage.compose.yamlsrc import load_yaml

LOC = Loc(("p",))
ports = st.integers(min_value=1, max_value=65535)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(st.text())
def test_escaped_text_expands_to_itself(text: str) -> None:
    assert expand(text.replace("$", "$$"), {}) == text


@given(names, st.text(alphabet=st.characters(blacklist_characters="$}"), max_size=20))
def test_default_is_used_exactly_when_unset_or_empty(name: str, default: str) -> None:
    assert expand(f"${{{name}:-{default}}}", {}) == default
    assert expand(f"${{{name}:-{default}}}", {name: ""}) == default
    assert expand(f"${{{name}:-{default}}}", {name: "set"}) == "set"
    assert expand(f"${{{name}-{default}}}", {name: ""}) == ""


@given(ports, ports, st.sampled_from(["tcp", "udp", "sctp"]), st.sampled_from(["", "127.0.0.1"]))
def test_short_ports(host: int, target: int, protocol: str, ip: str) -> None:
    text = f"{ip + ':' if ip else ''}{host}:{target}/{protocol}"
    (port,) = parse_short_port(text, LOC)
    assert port["target"] == target and port["published"] == str(host)
    assert port["protocol"] == protocol and port.get("host_ip", "") == ip


@given(st.integers(min_value=0, max_value=10**15))
def test_duration_round_trip(ns: int) -> None:
    seconds = ns / 1e9
    assert abs(parse_duration(format_duration(seconds)) - seconds) < 1e-6


scalars = st.one_of(
    st.text(max_size=20), st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), scalars))
def test_yaml_output_loads_back(doc: dict[str, object]) -> None:
    # the same scalars come back, so `config` output is a faithful compose file
    assert load_yaml(to_yaml({"x": doc}), "f") == {"x": doc}


def test_strings_that_look_like_other_scalars_stay_strings() -> None:
    for text in ["0o17", "0x1F", "1e3", ".5", "+.inf", "~", "", "null", "True", "12", "80:22"]:
        assert load_yaml(to_yaml({"x": text}), "f") == {"x": text}, text
