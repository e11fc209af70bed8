"""docker run flag values: sizes, CPUs, ulimits, sysctls, env, labels, tmpfs, restart, signals…"""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.engine.containers.parse import (
    CPU_PERIOD,
    RLIM_INFINITY,
    clamp_rlimits,
    command_line,
    cpu_quota,
    default_rlimits,
    merge_env,
    parse_bytes,
    parse_cpus,
    parse_env,
    parse_labels,
    parse_memory_swap,
    parse_restart,
    parse_stop_signal,
    parse_sysctl,
    parse_tmpfs,
    parse_ulimit,
    parse_user,
    process_hard_limits,
)
from moorage.errors import InvalidArgument

# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("512", 512),
        ("512b", 512),
        ("512B", 512),
        ("64k", 64 * 1024),
        ("64K", 64 * 1024),
        ("64kb", 64 * 1024),
        ("64KB", 64 * 1024),
        ("64KiB", 64 * 1024),
        ("64 k", 64 * 1024),
        ("32m", 32 << 20),
        ("1.5g", 3 << 29),
        ("2GiB", 2 << 30),
        ("2gb", 2 << 30),
        ("1t", 1 << 40),
        ("1p", 1 << 50),
        ("0.5k", 512),
        ("1.0001k", 1024),  # truncated to whole bytes
        (".5m", 1 << 19),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text, "memory") == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-1", "-5m", "1x", "1kk", "1kbb", "1ki", "1ib", "1.2.3", "k", "1 2", " 1", "1  k"],
)
def test_parse_bytes_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_bytes(text, "memory")
    assert str(e.value) == f"invalid size: '{text}'"


def test_parse_bytes_too_large() -> None:
    with pytest.raises(InvalidArgument, match="invalid memory: '9000000p' is too large"):
        parse_bytes("9000000p", "memory")


def test_parse_memory_swap() -> None:
    assert parse_memory_swap("-1") == -1
    assert parse_memory_swap("1g") == 1 << 30
    with pytest.raises(InvalidArgument, match="invalid size: '-2'"):
        parse_memory_swap("-2")


# --- CPUs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nano"),
    [
        ("1", 1_000_000_000),
        ("1.5", 1_500_000_000),
        ("0.01", 10_000_000),
        ("0.000000001", 1),
        ("3/2", 1_500_000_000),
        ("2e0", 2_000_000_000),
        ("0", 0),
        (".5", 500_000_000),
    ],
)
def test_parse_cpus(text: str, nano: int) -> None:
    assert parse_cpus(text) == nano


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "failed to parse abc as a rational number"),
        ("", "failed to parse  as a rational number"),
        ("1/0", "failed to parse 1/0 as a rational number"),
        (" 1", "failed to parse  1 as a rational number"),
        ("0.0000000001", "value is too precise"),
        ("-1", "invalid value -1 for --cpus: it cannot be negative"),
    ],
)
def test_parse_cpus_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_cpus(text)
    assert str(e.value) == message


def test_cpu_quota() -> None:
    assert CPU_PERIOD == 100_000
    assert cpu_quota(1_500_000_000) == (150_000, 100_000)
    assert cpu_quota(10_000_000) == (1_000, 100_000)
    assert cpu_quota(parse_cpus("0.5")) == (50_000, 100_000)


# --- ulimits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nofile=1024:2048", ("RLIMIT_NOFILE", 1024, 2048)),
        ("nofile=1024", ("RLIMIT_NOFILE", 1024, 1024)),
        ("nproc=512", ("RLIMIT_NPROC", 512, 512)),
        ("core=-1", ("RLIMIT_CORE", RLIM_INFINITY, RLIM_INFINITY)),
        ("memlock=1024:-1", ("RLIMIT_MEMLOCK", 1024, RLIM_INFINITY)),
        ("rtprio=0", ("RLIMIT_RTPRIO", 0, 0)),
        ("stack=8388608", ("RLIMIT_STACK", 8388608, 8388608)),
        ("sigpending=10:20", ("RLIMIT_SIGPENDING", 10, 20)),
        ("msgqueue=1", ("RLIMIT_MSGQUEUE", 1, 1)),
        ("rttime=1", ("RLIMIT_RTTIME", 1, 1)),
    ],
)
def test_parse_ulimit(text: str, expected: tuple[str, int, int]) -> None:
    assert parse_ulimit(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nofile", "invalid ulimit argument: nofile"),
        ("as=1", "invalid ulimit type: as"),
        ("NOFILE=1", "invalid ulimit type: NOFILE"),
        ("bogus=1", "invalid ulimit type: bogus"),
        (
            "nofile=1:2:3",
            "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`",
        ),
        (
            "nofile=2048:1024",
            "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024",
        ),
        ("nofile=-1:1024", "ulimit soft limit must be less than or equal to hard limit: -1 > 1024"),
        ("nofile=abc", 'invalid ulimit argument: nofile=abc: "abc" is not a number'),
        ("nofile=", 'invalid ulimit argument: nofile=: "" is not a number'),
        ("nofile=-2", 'invalid ulimit argument: nofile=-2: "-2" is not a number'),
    ],
)
def test_parse_ulimit_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_ulimit(text)
    assert str(e.value) == message


def test_clamp_rlimits_allows_within_hard_limit() -> None:
    hard = {"RLIMIT_NOFILE": 20000, "RLIMIT_CORE": RLIM_INFINITY}
    got = clamp_rlimits(
        [parse_ulimit("nofile=1024:2048"), parse_ulimit("core=-1")], hard, can_raise=False
    )
    assert got == [
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_CORE", "hard": RLIM_INFINITY, "soft": RLIM_INFINITY},
    ]
    # a later value for the same limit wins
    got = clamp_rlimits(
        [parse_ulimit("nofile=10"), parse_ulimit("nofile=20")], hard, can_raise=False
    )
    assert got == [{"type": "RLIMIT_NOFILE", "hard": 20, "soft": 20}]
    # python's resource module says -1 for unlimited
    assert clamp_rlimits([parse_ulimit("core=-1")], {"RLIMIT_CORE": -1}, can_raise=False)


def test_clamp_rlimits_refuses_raising_without_cap_sys_resource() -> None:
    hard = {"RLIMIT_NOFILE": 20000}
    with pytest.raises(InvalidArgument) as e:
        clamp_rlimits([parse_ulimit("nofile=1048576")], hard, can_raise=False)
    msg = str(e.value)
    assert msg.startswith("ulimit nofile: the hard limit 1048576 is above moorage's own hard")
    assert "(20000)" in msg and "CAP_SYS_RESOURCE" in msg
    with pytest.raises(InvalidArgument, match="hard limit unlimited"):
        clamp_rlimits([parse_ulimit("nofile=1:-1")], hard, can_raise=False)
    # with the capability it is runc's business
    assert clamp_rlimits([parse_ulimit("nofile=1048576")], hard, can_raise=True) == [
        {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}
    ]
    # unknown current limit: nothing to compare with
    assert clamp_rlimits([parse_ulimit("nproc=5")], hard, can_raise=False)


def test_clamp_rlimits_detects_capability() -> None:
    hard = process_hard_limits()
    assert hard["RLIMIT_NOFILE"] > 0
    names = "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime"
    names += " sigpending stack"
    assert set(hard) <= {f"RLIMIT_{n.upper()}" for n in names.split(" ")}
    # asking for exactly the current hard limit always works
    current = hard["RLIMIT_NOFILE"]
    text = f"nofile=1:{'-1' if current == RLIM_INFINITY else current}"
    assert clamp_rlimits([parse_ulimit(text)], hard)[0]["hard"] == current


def test_default_rlimits_inherit() -> None:
    assert default_rlimits() == []


# --- sysctls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kernel.msgmax=65536", ("kernel.msgmax", "65536")),
        ("kernel.shm_rmid_forced=1", ("kernel.shm_rmid_forced", "1")),
        ("kernel.sem=250 32000 100 128", ("kernel.sem", "250 32000 100 128")),
        ("fs.mqueue.msg_max=20", ("fs.mqueue.msg_max", "20")),
        ("net.ipv4.ip_forward=1", ("net.ipv4.ip_forward", "1")),
        ("net.core.somaxconn=1024", ("net.core.somaxconn", "1024")),
        ("net.ipv4.ping_group_range=0 2147483647", ("net.ipv4.ping_group_range", "0 2147483647")),
        ("net.a=", ("net.a", "")),
    ],
)
def test_parse_sysctl(text: str, expected: tuple[str, str]) -> None:
    assert parse_sysctl(text) == expected


@pytest.mark.parametrize(
    ("text", "network_host", "message"),
    [
        ("vm.swappiness=1", False, "sysctl 'vm.swappiness=1' is not allowed"),
        ("kernel.hostname=x", False, "sysctl 'kernel.hostname=x' is not allowed"),
        ("kernel.msgmax", False, "sysctl 'kernel.msgmax' is not allowed"),
        ("=1", False, "sysctl '=1' is not allowed"),
        ("fs.file-max=1", False, "sysctl 'fs.file-max=1' is not allowed"),
        ("netx.a=1", False, "sysctl 'netx.a=1' is not allowed"),
        (
            "net.ipv4.ip_forward=1",
            True,
            "sysctl 'net.ipv4.ip_forward=1' is not allowed in host network namespace",
        ),
    ],
)
def test_parse_sysctl_invalid(text: str, network_host: bool, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_sysctl(text, network_host=network_host)
    assert str(e.value) == message


def test_parse_sysctl_host_ipc() -> None:
    assert parse_sysctl("kernel.shmmax=1", network_host=True) == ("kernel.shmmax", "1")
    with pytest.raises(InvalidArgument, match="host IPC namespace"):
        parse_sysctl("kernel.shmmax=1", ipc_host=True)


# --- environment ----------------------------------------------------------------------------

ENVIRON = {"HOME": "/home/me", "EMPTY": "", "LANG": "C.UTF-8"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["A=1"], ["A=1"]),
        (["A="], ["A="]),
        (["A=b=c"], ["A=b=c"]),
        (["HOME"], ["HOME=/home/me"]),
        (["EMPTY"], ["EMPTY="]),
        (["UNSET_VAR"], []),
        (["A=1", "A=2"], ["A=1", "A=2"]),
        (["A= spaced "], ["A= spaced "]),
    ],
)
def test_parse_env_values(values: list[str], expected: list[str]) -> None:
    assert parse_env(values, [], ENVIRON) == expected


def test_parse_env_invalid() -> None:
    with pytest.raises(InvalidArgument, match="invalid environment variable: =x"):
        parse_env(["=x"], [], ENVIRON)


def test_parse_env_file(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_bytes(
        b"\xef\xbb\xbf# a comment\n"
        b"A=1\n"
        b"\n"
        b"   # indented comment\n"
        b'QUOTED="kept as is"\n'
        b"  LEADING=spaces are trimmed before the name\n"
        b"TRAIL=value with trailing space \n"
        b"HOME\n"
        b"UNSET_VAR\n"
        b"CRLF=x\r\n"
        b"EMPTY=\n"
    )
    assert parse_env(["A=override"], [f], ENVIRON) == [
        "A=1",
        'QUOTED="kept as is"',
        "LEADING=spaces are trimmed before the name",
        "TRAIL=value with trailing space ",
        "HOME=/home/me",
        "CRLF=x",
        "EMPTY=",
        "A=override",
    ]


def test_parse_env_files_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("X=1\n")
    b.write_text("Y=2\n")
    assert parse_env([], [a, b], {}) == ["X=1", "Y=2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"OK=1\nBAD NAME=1\n", "line 2: variable 'BAD NAME' contains whitespaces"),
        (b"NAME =1\n", "line 1: variable 'NAME ' contains whitespaces"),
        (b"NAME\tX\n", "line 1: variable 'NAME\tX' contains whitespaces"),
        (b"=value\n", "line 1: no variable name on line '=value'"),
        (b"A=1\n\xff\xfe=2\n", "contains invalid utf8 bytes at line 2"),
    ],
)
def test_parse_env_file_errors(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "env"
    f.write_bytes(content)
    with pytest.raises(InvalidArgument) as e:
        parse_env([], [f], ENVIRON)
    assert str(f) in str(e.value)
    assert message in str(e.value)


def test_parse_env_file_missing(tmp_path: Path) -> None:
    f = tmp_path / "nope"
    with pytest.raises(InvalidArgument) as e:
        parse_env([], [f], ENVIRON)
    assert str(e.value) == f"open {f}: no such file or directory"


@pytest.mark.parametrize(
    ("image", "user", "expected"),
    [
        ([], [], []),
        (["PATH=/bin"], [], ["PATH=/bin"]),
        ([], ["A=1"], ["A=1"]),
        # Docker's order: the user's variables, then the image's not overridden
        (["PATH=/bin", "A=img", "B=img"], ["A=user"], ["A=user", "PATH=/bin", "B=img"]),
        (["PATH=/bin"], ["C=3", "PATH=/usr/bin"], ["C=3", "PATH=/usr/bin"]),
        # a repeated user key: first position, last value
        ([], ["A=1", "B=2", "A=3"], ["A=3", "B=2"]),
        # a bare key (from the API) unsets the image's value
        (["PATH=/bin", "DEBUG=1"], ["DEBUG"], ["PATH=/bin"]),
        # a value with '=' in it
        (["X=a=b"], [], ["X=a=b"]),
        (["X=1", "X=2"], [], ["X=1"]),
    ],
)
def test_merge_env(image: list[str], user: list[str], expected: list[str]) -> None:
    assert merge_env(image, user) == expected


# --- labels ---------------------------------------------------------------------------------


def test_parse_labels(tmp_path: Path) -> None:
    f = tmp_path / "labels"
    f.write_text("# labels\ncom.example.a=1\nbare\ncom.example.b=from file\n")
    assert parse_labels(["com.example.b=flag", "x", "y=", "z=a=b"], [f]) == {
        "com.example.a": "1",
        "bare": "",
        "com.example.b": "flag",
        "x": "",
        "y": "",
        "z": "a=b",
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("=x", "invalid label '=x': empty name"),
        ("", "invalid label '': empty name"),
        ("a b=c", "label 'a b' contains whitespaces"),
    ],
)
def test_parse_labels_invalid(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_labels([value], [])
    assert str(e.value) == message


def test_parse_labels_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "labels"
    f.write_text("ok=1\nnot ok=2\n")
    with pytest.raises(InvalidArgument, match=r"label file .* line 2: variable 'not ok'"):
        parse_labels([], [f])


# --- tmpfs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/run", ("/run", "")),
        ("/run:rw,size=64m,mode=1777", ("/run", "rw,size=64m,mode=1777")),
        ("/tmp:noexec,nosuid,size=65536k", ("/tmp", "noexec,nosuid,size=65536k")),
        ("/data:size=50%,uid=1000,gid=1000", ("/data", "size=50%,uid=1000,gid=1000")),
        ("/x:nr_inodes=1k,ro", ("/x", "nr_inodes=1k,ro")),
        ("/x:mode=700", ("/x", "mode=700")),
    ],
)
def test_parse_tmpfs(text: str, expected: tuple[str, str]) -> None:
    assert parse_tmpfs(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run", "invalid mount path: 'run' mount path must be absolute"),
        ("", "invalid mount path: '' mount path must be absolute"),
        ("/", "invalid specification: destination can't be '/'"),
        ("//", "invalid specification: destination can't be '/'"),
        ("/run:bogus", 'invalid tmpfs option "bogus" in "/run:bogus"'),
        ("/run:size=", 'invalid tmpfs option "size="'),
        ("/run:size=lots", 'invalid tmpfs option "size=lots"'),
        ("/run:mode=999", 'invalid tmpfs option "mode=999"'),
        ("/run:uid=me", 'invalid tmpfs option "uid=me"'),
        ("/run:rw=1", 'invalid tmpfs option "rw=1"'),
    ],
)
def test_parse_tmpfs_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_tmpfs(text)
    assert str(e.value).startswith(message)


# --- restart policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("no", 0)),
        ("no", ("no", 0)),
        ("always", ("always", 0)),
        ("unless-stopped", ("unless-stopped", 0)),
        ("on-failure", ("on-failure", 0)),
        ("on-failure:5", ("on-failure", 5)),
        ("on-failure:0", ("on-failure", 0)),
        ("always:0", ("always", 0)),
        ("on-failure:", ("on-failure", 0)),
    ],
)
def test_parse_restart(text: str, expected: tuple[str, int]) -> None:
    assert parse_restart(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":3", "invalid restart policy format: no policy provided before colon"),
        ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
        (
            "always:3",
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        (
            "no:-1",
            "invalid restart policy: maximum retry count can only be used with 'on-failure' "
            "and cannot be negative",
        ),
        ("on-failure:-1", "invalid restart policy: maximum retry count cannot be negative"),
        (
            "sometimes",
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'",
        ),
        (
            "Always",
            "invalid restart policy: unknown policy 'Always'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'",
        ),
    ],
)
def test_parse_restart_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_restart(text)
    assert str(e.value) == message


# --- stop signal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGTERM", 15),
        ("TERM", 15),
        ("term", 15),
        ("sigkill", 9),
        ("15", 15),
        ("9", 9),
        ("SIGQUIT", 3),
        ("SIGUSR1", 10),
        ("SIGWINCH", 28),
        ("SIGCHLD", 17),
        ("SIGRTMIN", 34),
        ("SIGRTMIN+3", 37),
        ("RTMIN+15", 49),
        ("SIGRTMAX-1", 63),
        ("SIGRTMAX", 64),
        ("64", 64),
    ],
)
def test_parse_stop_signal(text: str, number: int) -> None:
    assert parse_stop_signal(text) == number


@pytest.mark.parametrize("text", ["", "0", "65", "SIGFOO", "SIG", "-1", "SIGRTMIN+16", "1.5"])
def test_parse_stop_signal_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_stop_signal(text)
    assert str(e.value) == f"invalid signal: {text}"


# --- user -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", None)),
        ("root", ("root", None)),
        ("1000", ("1000", None)),
        ("app:staff", ("app", "staff")),
        ("1000:1000", ("1000", "1000")),
        ("1000:", ("1000", None)),
        (":100", ("", "100")),
    ],
)
def test_parse_user(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_user(text) == expected


# --- command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "flag", "args", "expected"),
    [
        # image CMD only
        (None, ["sh"], None, [], ["sh"]),
        (None, ["sh"], None, ["ls", "-l"], ["ls", "-l"]),
        # image ENTRYPOINT and CMD: args replace CMD only
        (["/ep"], ["--default"], None, [], ["/ep", "--default"]),
        (["/ep"], ["--default"], None, ["--flag"], ["/ep", "--flag"]),
        (["/ep", "-x"], None, None, [], ["/ep", "-x"]),
        # --entrypoint replaces the entrypoint and drops the image CMD
        (["/ep"], ["--default"], "/bin/sh", [], ["/bin/sh"]),
        (["/ep"], ["--default"], "/bin/sh", ["-c", "id"], ["/bin/sh", "-c", "id"]),
        (None, ["sh"], "env", [], ["env"]),
        # --entrypoint is one word, never split
        (None, None, "/bin/sh -c", [], ["/bin/sh -c"]),
        # --entrypoint "" resets both
        (["/ep"], ["--default"], "", ["ls"], ["ls"]),
        ([], [], None, ["true"], ["true"]),
    ],
)
def test_command_line(
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    flag: str | None,
    args: list[str],
    expected: list[str],
) -> None:
    assert command_line(entrypoint, cmd, flag, args) == expected


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "flag"),
    [
        (None, None, None),
        ([], [], None),
        (["/ep"], ["--default"], ""),
        (None, ["sh"], ""),
    ],
)
def test_command_line_empty(
    entrypoint: list[str] | None, cmd: list[str] | None, flag: str | None
) -> None:
    with pytest.raises(InvalidArgument, match=r"^no command specified$"):
        command_line(entrypoint, cmd, flag, [])
