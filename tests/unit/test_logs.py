"""Container logs without conmon: k8s-file parsing, Docker's logs options, follow, rotation."""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.engine.containers.logs import (
    MAX_LINE,
    LogConfig,
    LogEntry,
    conmon_log_args,
    follow,
    hold_path,
    keep_rotated,
    log_files,
    parse_log_opts,
    parse_since,
    parse_tail,
    parse_until,
    read_entries,
    render,
    request_reopen,
    rotate,
    select,
)
from moorage.errors import InvalidArgument

T0 = "2024-01-02T03:04:05.123456789+00:00"
T0_UNIX = calendar.timegm((2024, 1, 2, 3, 4, 5, 0, 0, 0)) + 0.123456789


def line(stream: str, tag: str, text: str, ts: str = T0) -> bytes:
    return f"{ts} {stream} {tag} {text}\n".encode()


def ts(sec: int, ns: int = 0) -> str:
    """A conmon-style timestamp ``sec`` seconds after T0's second, in a +01:00 zone."""
    t = time.gmtime(calendar.timegm((2024, 1, 2, 3, 4, 5, 0, 0, 0)) + sec + 3600)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ns:09d}+01:00"


def pairs(entries: list[LogEntry]) -> list[tuple[str, bytes]]:
    return [(e.stream, e.data) for e in entries]


def write(path: Path, *chunks: bytes) -> None:
    with open(path, "ab") as f:
        for c in chunks:
            f.write(c)


@pytest.fixture
def local_tz() -> Iterator[Callable[[str], None]]:
    """Switch the process's local zone for one test."""
    old = os.environ.get("TZ")

    def set_tz(tz: str) -> None:
        os.environ["TZ"] = tz
        time.tzset()

    yield set_tz
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


# --- parsing --------------------------------------------------------------------------------


def test_full_lines_and_timestamp(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "hello"), line("stderr", "F", "oops"), line("stdout", "F", ""))
    entries = list(read_entries([log]))
    assert pairs(entries) == [("stdout", b"hello\n"), ("stderr", b"oops\n"), ("stdout", b"\n")]
    assert entries[0].time_text == T0
    assert entries[0].time == pytest.approx(T0_UNIX, abs=1e-6)


def test_text_keeps_spaces_and_bytes(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, T0.encode() + b" stdout F  two  spaces \xff\r\n")
    assert pairs(list(read_entries([log]))) == [("stdout", b" two  spaces \xff\r\n")]


def test_partial_lines_are_merged(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(
        log,
        line("stdout", "P", "par", ts(0)),
        line("stderr", "F", "err", ts(1)),
        line("stdout", "P", "ti", ts(2)),
        line("stdout", "F", "al", ts(3)),
        line("stdout", "F", "next", ts(4)),
    )
    entries = list(read_entries([log]))
    assert pairs(entries) == [
        ("stderr", b"err\n"),
        ("stdout", b"partial\n"),
        ("stdout", b"next\n"),
    ]
    # the merged line carries its first fragment's time
    assert entries[1].time_text == ts(0)


def test_unfinished_partial_at_end_is_kept_without_newline(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "a", ts(0)), line("stdout", "P", "no newline", ts(1)))
    assert pairs(list(read_entries([log]))) == [("stdout", b"a\n"), ("stdout", b"no newline")]


def test_huge_partial_line_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    chunk = "x" * 8192
    n = MAX_LINE // 8192 + 2
    write(log, *[line("stdout", "P", chunk) for _ in range(n)], line("stdout", "F", "end"))
    entries = list(read_entries([log]))
    assert len(entries) == 2
    assert len(entries[0].data) == MAX_LINE
    assert b"".join(e.data for e in entries) == chunk.encode() * n + b"end\n"


def test_torn_last_line_and_garbage_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(
        log,
        b"garbage\n",
        b"\n",
        line("stdout", "F", "ok"),
        b"2024-13-02T03:04:05.1+00:00 stdout F bad month\n",
        b"2024-01-02T03:04:05.1 stdout F no zone\n",
        line("stdin", "F", "bad stream"),
        line("stdout", "X", "bad tag"),
        b"\x00\xff\xfe binary\n",
        line("stderr", "F", "ok2"),
        line("stdout", "F", "torn")[:-4],
    )
    assert pairs(list(read_entries([log]))) == [("stdout", b"ok\n"), ("stderr", b"ok2\n")]


def test_rotated_files_oldest_first_and_partial_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log.with_name("ctr.log.2"), line("stdout", "F", "one", ts(0)))
    write(log.with_name("ctr.log.1"), line("stdout", "F", "two", ts(1)))
    write(log.with_name("ctr.log.1"), line("stdout", "P", "thr", ts(2)))
    write(log, line("stdout", "F", "ee", ts(3)))
    entries = list(read_entries(log_files(log)))
    assert [e.data for e in entries] == [b"one\n", b"two\n", b"three\n"]


def test_read_entries_skips_missing_and_duplicate_files(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "x"))
    os.link(log, hold_path(log))
    paths = [tmp_path / "nope", hold_path(log), log]
    assert pairs(list(read_entries(paths))) == [("stdout", b"x\n")]
    assert log_files(log) == [log]  # the hold link is hidden while it is the same file


def test_large_file_chunks(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, *[line("stdout", "F", f"line {i}" + "y" * 50) for i in range(5000)])
    entries = list(read_entries([log]))
    assert len(entries) == 5000
    assert entries[-1].data.startswith(b"line 4999")


# --- select / since / until / tail ----------------------------------------------------------


def _mk(times: list[float]) -> list[LogEntry]:
    return [LogEntry(t, str(t), "stdout", f"{t}\n".encode()) for t in times]


def test_select_tail() -> None:
    es = _mk([1, 2, 3, 4, 5])
    assert select(es, since=None, until=None, tail=None) == es
    assert select(es, since=None, until=None, tail=2) == es[3:]
    assert select(es, since=None, until=None, tail=0) == []
    assert select(es, since=None, until=None, tail=10) == es
    assert select(iter(es), since=None, until=None, tail=1) == es[4:]


def test_select_since_until() -> None:
    es = _mk([1, 2, 3, 4, 5])
    assert select(es, since=3, until=None, tail=None) == es[2:]
    assert select(es, since=None, until=3, tail=None) == es[:3]
    assert select(es, since=2, until=4, tail=None) == es[1:4]
    assert select(es, since=9, until=None, tail=None) == []


def test_select_like_docker_with_unordered_times_and_tail_first() -> None:
    es = _mk([1, 5, 2, 6, 3])
    # once an entry at/after since is found, later ones are kept even if older
    assert [e.time for e in select(es, since=4, until=None, tail=None)] == [5, 2, 6, 3]
    # the output stops at the first entry after until
    assert [e.time for e in select(es, since=None, until=5.5, tail=None)] == [1, 5, 2]
    # tail is taken from the end first, then since/until apply
    assert [e.time for e in select(es, since=4, until=None, tail=2)] == [6, 3]


def test_parse_tail() -> None:
    assert parse_tail("all") is None
    assert parse_tail("10") == 10
    assert parse_tail("0") == 0
    assert parse_tail("+3") == 3
    # the Docker daemon treats anything else as "all"
    assert parse_tail("-1") is None
    assert parse_tail("abc") is None
    assert parse_tail("") is None


NOW = 1_700_000_000.75


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05Z", T0_UNIX - 0.123456789),
        ("2024-01-02T03:04:05.123456789Z", T0_UNIX),
        ("2024-01-02T04:04:05.123456789+01:00", T0_UNIX),
        ("2024-01-01T22:04:05.5-05:00", T0_UNIX - 0.123456789 + 0.5),
        ("2024-01-02T03Z", T0_UNIX - 0.123456789 - 245),
        ("2024-01-02T03:04+00:00", T0_UNIX - 0.123456789 - 5),
        ("2024-01-02Z", calendar.timegm((2024, 1, 2, 0, 0, 0, 0, 0, 0))),
        ("2024-01-02+02:00", calendar.timegm((2024, 1, 2, 0, 0, 0, 0, 0, 0)) - 7200),
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("1700000000.000000001", 1_700_000_000.000000001),
        ("0", 0.0),
        ("10m", 1_700_000_000 - 600),
        ("1h30m", 1_700_000_000 - 5400),
        ("42s", 1_700_000_000 - 42),
        ("1.5h", 1_700_000_000 - 5400),
        ("500ms", 1_700_000_000.0),
        ("-1m", 1_700_000_060.0),
        ("+0", 1_700_000_000.0),
    ],
)
def test_parse_since(value: str, expected: float) -> None:
    assert parse_since(value, NOW) == pytest.approx(expected, abs=1e-6)


def test_parse_since_local_time(local_tz: Callable[[str], None]) -> None:
    local_tz("EST+5")
    base = calendar.timegm((2024, 1, 2, 0, 0, 0, 0, 0, 0)) + 5 * 3600
    assert parse_since("2024-01-02", NOW) == base
    assert parse_since("2024-01-02T03:04:05", NOW) == base + 3 * 3600 + 4 * 60 + 5
    assert parse_since("2024-01-02T03:04:05.25", NOW) == base + 3 * 3600 + 4 * 60 + 5.25
    assert parse_since("2024-01-02T03", NOW) == base + 3 * 3600
    local_tz("UTC")
    assert parse_since("2024-01-02T03:04:05", NOW) == T0_UNIX - 0.123456789


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "10x", "1h30", "2024-01-02 03:04:05", "2024-13-01", "2024-01-02T25:00:00Z",
     "-5", "1700000000.", "1.2.3", "2024-01-02T03:04:05+0100", "h"],
)  # fmt: skip
def test_parse_since_invalid(value: str) -> None:
    with pytest.raises(InvalidArgument, match='invalid value for "since"'):
        parse_since(value, NOW)


def test_parse_until() -> None:
    assert parse_until("10m", NOW) == 1_700_000_000 - 600
    with pytest.raises(InvalidArgument, match='invalid value for "until"'):
        parse_until("nope", NOW)


# --- rendering ------------------------------------------------------------------------------


def test_render() -> None:
    e = LogEntry(T0_UNIX, "2024-01-02T04:04:05.123456789+01:00", "stdout", b"hello\n")
    assert render(e, timestamps=False) == b"hello\n"
    assert render(e, timestamps=True) == b"2024-01-02T03:04:05.123456789Z hello\n"
    e2 = LogEntry(T0_UNIX, "2024-01-02T03:04:05.5Z", "stderr", b"x")
    assert render(e2, timestamps=True) == b"2024-01-02T03:04:05.500000000Z x"
    # a synthetic entry whose text is not a timestamp falls back to ``time``
    e3 = LogEntry(1.5, "?", "stdout", b"y\n")
    assert render(e3, timestamps=True) == b"1970-01-01T00:00:01.500000000Z y\n"


# --- log opts -------------------------------------------------------------------------------


def test_parse_log_opts() -> None:
    assert parse_log_opts([]) == LogConfig(None, 1)
    assert parse_log_opts(["max-size=10m", "max-file=3"]) == LogConfig(10_000_000, 3)
    assert parse_log_opts(["max-size=1g"]).max_size == 1_000_000_000
    assert parse_log_opts(["max-size=500k"]).max_size == 500_000
    assert parse_log_opts(["max-size=1.5MB"]).max_size == 1_500_000
    assert parse_log_opts(["max-size=2MiB"]).max_size == 2_000_000
    assert parse_log_opts(["max-size=123"]).max_size == 123
    assert parse_log_opts(["max-size=10 k"]).max_size == 10_000
    assert parse_log_opts(["max-size=7b"]).max_size == 7
    assert parse_log_opts(["max-file=5"]) == LogConfig(None, 5)
    assert parse_log_opts(["max-size=1k", "max-size=2k"]).max_size == 2000


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["x=1"], "unknown log opt 'x' for k8s-file log driver"),
        (["compress=true"], "unknown log opt 'compress' for k8s-file log driver"),
        (["max-size"], "expected key=value"),
        (["max-size=10q"], "invalid size"),
        (["max-size=-1m"], "invalid size"),
        (["max-size=0"], "max-size must be a positive number"),
        (["max-size=10mbb"], "invalid size"),
        (["max-file=0"], "max-file cannot be less than 1"),
        (["max-file=two"], "max-file"),
    ],
)
def test_parse_log_opts_invalid(opts: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_log_opts(opts)


def test_conmon_log_args() -> None:
    assert conmon_log_args(None) == []
    assert conmon_log_args(10_000_000) == ["--log-size-max", "10000000"]
    with pytest.raises(InvalidArgument):
        conmon_log_args(0)


# --- rotation (files only) ------------------------------------------------------------------


def _contents(log: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(log.parent.iterdir()) if p.is_file()}


def test_rotate_shifts_and_keeps_max_file(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    calls: list[int] = []

    def reopen() -> None:
        calls.append(1)
        log.write_bytes(b"")  # what conmon's reopen does: a new empty file

    for gen in (b"a", b"b", b"c", b"d"):
        write(log, gen)
        rotate(log, 3, reopen)
    assert calls == [1, 1, 1, 1]
    assert _contents(log) == {"ctr.log": b"", "ctr.log.1": b"d", "ctr.log.2": b"c"}
    # shrinking max-file drops the extra generations
    write(log, b"e")
    rotate(log, 2, reopen)
    assert _contents(log) == {"ctr.log": b"", "ctr.log.1": b"e"}


def test_rotate_max_file_one_truncates_without_reopen(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, b"old")
    write(log.with_name("ctr.log.1"), b"older")
    rotate(log, 1, lambda: pytest.fail("no reopen for max-file=1"))
    assert _contents(log) == {"ctr.log": b""}
    with pytest.raises(InvalidArgument):
        rotate(log, 0, lambda: None)


def test_rotate_files_a_pending_hold_first(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    cfg = LogConfig(100, 4)
    log.write_bytes(b"g1")
    keep_rotated(log, cfg)
    rotate(log, 4, lambda: log.write_bytes(b""))  # the hold link to ctr.log is just dropped
    assert _contents(log) == {"ctr.log": b"", "ctr.log.1": b"g1"}
    keep_rotated(log, cfg)
    log.write_bytes(b"g2")
    _conmon_replace(log, b"g3")  # g2 is held, not yet filed
    rotate(log, 4, lambda: None)  # e.g. before restarting conmon
    assert _contents(log) == {"ctr.log.1": b"g3", "ctr.log.2": b"g2", "ctr.log.3": b"g1"}
    log.write_bytes(b"g4")
    keep_rotated(log, cfg)
    assert [p.read_bytes() for p in log_files(log)] == [b"g1", b"g2", b"g3", b"g4"]


def test_rotate_without_log_does_nothing(tmp_path: Path) -> None:
    rotate(tmp_path / "ctr.log", 3, lambda: pytest.fail("nothing to reopen"))
    assert list(tmp_path.iterdir()) == []


def _conmon_replace(log: Path, data: bytes) -> None:
    """What conmon 2.1.6 does when --log-size-max is reached: new file renamed over."""
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_bytes(data)
    os.rename(tmp, log)


def test_keep_rotated_keeps_what_conmon_replaces(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    cfg = LogConfig(max_size=100, max_file=3)
    assert keep_rotated(log, cfg) is False  # no log yet
    log.write_bytes(b"g1")
    assert keep_rotated(log, cfg) is False
    assert os.path.samefile(hold_path(log), log)
    assert keep_rotated(log, cfg) is False
    for gen in (b"g2", b"g3", b"g4"):
        _conmon_replace(log, gen)
        assert log_files(log)[-2:] == [hold_path(log), log]  # readable before the catch-up
        assert keep_rotated(log, cfg) is True
        assert os.path.samefile(hold_path(log), log)
    assert log_files(log) == [log.with_name("ctr.log.2"), log.with_name("ctr.log.1"), log]
    assert [p.read_bytes() for p in log_files(log)] == [b"g2", b"g3", b"g4"]


def test_keep_rotated_two_replacements_between_calls(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    cfg = LogConfig(max_size=100, max_file=3)
    log.write_bytes(b"g1")
    keep_rotated(log, cfg)
    _conmon_replace(log, b"g2")
    _conmon_replace(log, b"g3")  # g2 had no second name: it is gone
    keep_rotated(log, cfg)
    assert [p.read_bytes() for p in log_files(log)] == [b"g1", b"g3"]


def test_keep_rotated_without_limit_removes_hold(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    log.write_bytes(b"x")
    os.link(log, hold_path(log))
    assert keep_rotated(log, LogConfig(None, 3)) is False
    assert not hold_path(log).exists()
    os.link(log, hold_path(log))
    assert keep_rotated(log, LogConfig(100, 1)) is False
    assert not hold_path(log).exists()


def test_request_reopen_without_conmon(tmp_path: Path) -> None:
    request_reopen(tmp_path / "ctl")  # no FIFO: nothing to do
    os.mkfifo(tmp_path / "ctl")
    request_reopen(tmp_path / "ctl")  # FIFO without a reader: conmon is gone


def test_request_reopen_message(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    os.mkfifo(ctl)
    r = os.open(ctl, os.O_RDONLY | os.O_NONBLOCK)
    try:
        request_reopen(ctl)
        assert os.read(r, 100) == b"2 0 0\n"
    finally:
        os.close(r)


# --- follow ---------------------------------------------------------------------------------


def run_follow(
    log: Path, actions: list[Callable[[], object]], tail: int | None = None
) -> list[LogEntry]:
    """Follow ``log``; each poll first runs the next action; stops when they are done."""
    it = iter(actions)

    def stop() -> bool:
        action = next(it, None)
        if action is None:
            return True
        action()
        return False

    return list(follow(lambda: log_files(log), stop=stop, poll=0, tail=tail))


def test_follow_existing_then_appended(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "one"), line("stderr", "F", "two"))
    got = run_follow(
        log,
        [
            lambda: write(log, line("stdout", "F", "three")),
            lambda: None,
            lambda: write(log, line("stdout", "F", "four"), line("stdout", "F", "five")),
        ],
    )
    assert [e.data for e in got] == [b"one\n", b"two\n", b"three\n", b"four\n", b"five\n"]


def test_follow_tail(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log.with_name("ctr.log.1"), line("stdout", "F", "zero"))
    write(log, line("stdout", "F", "one"), line("stdout", "F", "two"))
    got = run_follow(log, [lambda: write(log, line("stdout", "F", "three"))], tail=1)
    assert [e.data for e in got] == [b"two\n", b"three\n"]
    got = run_follow(log, [lambda: write(log, line("stdout", "F", "four"))], tail=0)
    assert [e.data for e in got] == [b"four\n"]


def test_follow_line_written_in_two_chunks(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    whole = line("stdout", "F", "split across writes")
    got = run_follow(
        log,
        [
            lambda: write(log, whole[:10]),
            lambda: None,
            lambda: write(log, whole[10:30]),
            lambda: write(log, whole[30:], line("stdout", "P", "part")),
            lambda: write(log, line("stdout", "F", "ial")),
        ],
    )
    assert [e.data for e in got] == [b"split across writes\n", b"partial\n"]


def test_follow_log_created_later_and_unfinished_partial(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    got = run_follow(
        log,
        [lambda: None, lambda: write(log, line("stdout", "F", "a"), line("stdout", "P", "b"))],
    )
    assert [e.data for e in got] == [b"a\n", b"b"]


def test_follow_rename_rotation_with_late_reopen(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    dot1 = log.with_name("ctr.log.1")
    write(log, line("stdout", "F", "1"))

    def last_old_write_then_reopen() -> None:
        write(dot1, line("stdout", "F", "3"))
        write(log, line("stdout", "F", "4"))  # conmon's new file

    got = run_follow(
        log,
        [
            lambda: rotate(log, 3, lambda: None),  # renamed, conmon has not reopened yet
            lambda: write(dot1, line("stdout", "F", "2")),  # still writing to the old fd
            last_old_write_then_reopen,
            lambda: write(log, line("stdout", "F", "5")),
        ],
    )
    assert [e.data for e in got] == [b"1\n", b"2\n", b"3\n", b"4\n", b"5\n"]


def test_follow_conmon_replacement_and_several_rotations_in_one_poll(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "1"))

    def two_rotations() -> None:
        write(log, line("stdout", "F", "2"))
        rotate(log, 5, lambda: None)
        write(log, line("stdout", "F", "3"))
        rotate(log, 5, lambda: None)
        write(log, line("stdout", "F", "4"))

    got = run_follow(
        log,
        [
            lambda: _conmon_replace(log, line("stdout", "F", "a")),
            lambda: write(log, line("stdout", "F", "b")),
            two_rotations,
        ],
    )
    assert [e.data for e in got] == [b"1\n", b"a\n", b"b\n", b"2\n", b"3\n", b"4\n"]


def test_follow_truncated_in_place(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    write(log, line("stdout", "F", "before"))

    def truncate_and_write() -> None:
        os.truncate(log, 0)
        write(log, line("stdout", "F", "after"))

    got = run_follow(log, [truncate_and_write, lambda: write(log, line("stdout", "F", "more"))])
    assert [e.data for e in got] == [b"before\n", b"after\n", b"more\n"]


def test_follow_with_hold_link_and_keep_rotated(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    cfg = LogConfig(100, 3)
    write(log, line("stdout", "F", "1"))
    keep_rotated(log, cfg)

    def replace_then_keep() -> None:
        _conmon_replace(log, line("stdout", "F", "2"))
        keep_rotated(log, cfg)

    def replace_twice() -> None:
        _conmon_replace(log, line("stdout", "F", "3"))
        _conmon_replace(log, line("stdout", "F", "4"))

    got = run_follow(log, [replace_then_keep, replace_twice, lambda: keep_rotated(log, cfg)])
    # "3" was discarded by the second replacement before anyone could see it
    assert [e.data for e in got] == [b"1\n", b"2\n", b"4\n"]
    assert [e.data for e in read_entries(log_files(log))] == [b"1\n", b"2\n", b"4\n"]
