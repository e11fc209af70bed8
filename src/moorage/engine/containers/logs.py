"""Container logs: conmon's k8s-file format, Docker's ``logs`` options, following, rotation.

The log format
==============

conmon (``-l k8s-file:PATH``) writes one entry per line::

    2024-01-02T03:04:05.123456789+00:00 stdout F hello
    2024-01-02T03:04:05.123456789+00:00 stdout P part of a line without newline

The timestamp is local time with a numeric offset (conmon 2.1.6 ``set_k8s_timestamp``), the
tag is ``F`` for a line that ended with ``\\n`` (the newline itself is not written) and ``P``
for a fragment that did not (conmon writes whatever one ``read()`` of the pipe returned, so a
line written in several ``write()`` calls, or longer than conmon's 8 KiB buffer, becomes
several ``P`` entries followed by one ``F``).

:func:`read_entries` **merges** the ``P`` fragments of a stream with the entry that completes
them into one :class:`LogEntry` — what Docker shows as one line.  The merged entry carries the
time of its *first* fragment (Docker's copier does the same for partial messages) and is
emitted at the position of its final ``F`` line.  Fragments are tracked per stream, so an
interleaved ``stderr`` line does not break a ``stdout`` line.  A merged line is cut at
:data:`MAX_LINE` bytes to bound memory (the pieces are printed back to back, so the output
is the same).  Fragments still open at the very end of the log (the container exited in the
middle of a line) are emitted as they are, without a newline.

Lines that do not parse (garbage) are skipped, and so is an incomplete last line of a file (a
write in progress, or a crash in the middle of one): conmon always ends its entries with
``\\n``.

What conmon 2.1.6 does with ``--log-size-max`` and "reopen"
=========================================================

From ``src/ctr_logging.c`` (``write_k8s_log`` / ``reopen_k8s_file``) and ``src/ctrl.c``, and
checked against the real binary in ``tests/integration/test_logs_conmon.py``:

* conmon counts the bytes it wrote (``bytes_written``, a static counter that starts at 0 when
  conmon starts, whatever the size of the file it appends to).  When the next entry would take
  the counter over ``--log-size-max`` it resets the counter and calls ``reopen_k8s_file()``,
  which opens ``PATH.tmp`` with ``O_TRUNC`` and renames it over ``PATH``.  So the full
  file is **replaced by an empty one and its content is discarded** — no ``PATH.1`` is kept,
  nothing is truncated in place.  Files never exceed the limit, except a file holding a
  single entry larger than the limit (entries are at most conmon's 8 KiB read + 45 bytes).
* The ctl FIFO ``<bundle>/ctl`` (created whenever ``-b`` is given) accepts lines
  ``"<type> <height> <width>\\n"``; type ``2`` (``REOPEN_LOGS_EVENT`` in ``config.h``) calls the
  same ``reopen_k8s_file()``: it fsyncs and closes the current fd and creates a new empty
  ``PATH`` (``PATH.tmp`` + rename).  :func:`request_reopen` writes ``"2 0 0\\n"``.  If ``PATH``
  was renamed away first (:func:`rotate`), the old content survives under its new name.
* The reopen message does **not** reset ``bytes_written``: after ``rotate()`` + reopen, a
  conmon that also has ``--log-size-max`` replaces the new file early and loses its content.
  The two mechanisms must not be combined on one conmon.

How the engine wires ``--log-opt max-size=… --log-opt max-file=…``
==================================================================

Moorage has no daemon, so nothing can rotate at the exact moment a file fills up — except
conmon itself, which can only *discard*.  We combine conmon's hard limit with a hard link that
keeps the discarded file alive until a ``moor`` command files it away:

1. ``moor create/run``: :func:`parse_log_opts` -> :class:`LogConfig`, stored with the
   container.
2. ``moor start``: run conmon with ``-l k8s-file:PATH`` plus
   ``conmon_log_args(config.max_size)`` (``--log-size-max N`` when max-size is set), then
   call :func:`keep_rotated`, which hard-links ``PATH`` to ``PATH.hold`` (conmon opens
   ``PATH`` before it forks, so the file exists when the ``conmon`` command returns).
3. Every ``moor`` command that touches the container (``logs``, ``ps``, ``inspect``, ``stop``,
   ``start``, ``rm``, ``wait``…), while holding the container's lock, and ``moor logs -f`` at
   each poll, calls :func:`keep_rotated`.  When conmon has replaced ``PATH``, ``PATH.hold``
   still holds the previous generation: ``keep_rotated`` shifts ``PATH.1`` -> ``PATH.2`` …
   (dropping the ones beyond ``max-file``), renames ``PATH.hold`` to ``PATH.1`` and links the
   new ``PATH`` again.  With ``max-file=1`` there is no hold link and conmon's replacement is
   exactly Docker's behaviour for one file (the file is emptied when full).
4. Readers use ``read_entries(log_files(PATH))`` / ``follow(lambda: log_files(PATH), …)``;
   :func:`log_files` lists ``PATH.N … PATH.1``, ``PATH.hold`` (only while it is a distinct
   file) and ``PATH``, oldest first.
5. ``moor rm`` deletes the whole container directory (all generations).

The guarantee: no log file grows beyond max-size (one oversize entry excepted; and after a
restart, the first file can hold what it had plus max-size, because conmon's counter starts at
0; ``moor start`` may call ``rotate(PATH, max_file, lambda: None)`` before launching conmon
when ``PATH`` is already over max-size), and at most ``max-file + 1`` files exist (``max-file``
after any ``moor`` command). No log line is lost as long as some ``moor`` command sees the
container at least once per max-size bytes of output; when conmon fills the file more than once
in between, the generations between the held one and the current one are lost (the oldest
unseen one and the newest are kept, in order). ``moor logs -f`` additionally keeps the file it
reads open, so a follower sees every line unless conmon replaces the file twice within one poll
interval.

:func:`rotate` (rename ``PATH`` -> ``PATH.1`` … then ask conmon to reopen) is the other,
loss-free tool — but with no size bound between ``moor`` commands.  Use it only on a log
whose conmon has **no** ``--log-size-max`` (or no conmon at all: pass ``reopen=lambda: None``);
see the counter caveat above.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from moorage.errors import InvalidArgument

Stream = Literal["stdout", "stderr"]

MAX_LINE = 1 << 20
"""Merged ``P`` fragments are emitted once they reach this many bytes."""

REOPEN_LOGS_EVENT = 2
"""conmon's ctl FIFO message type for "reopen the log files" (``config.h``)."""

HOLD_SUFFIX = ".hold"

_READ_CHUNK = 1 << 16


# --- entries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One log line as Docker shows it.

    ``time`` is unix time, ``time_text`` the timestamp exactly as conmon wrote it (of the
    first fragment, for merged lines), ``data`` the bytes including the trailing ``\\n``
    (absent only for a line the container never finished).
    """

    time: float
    time_text: str
    stream: Stream
    data: bytes


_LOG_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})\Z"
)


def _offset_seconds(zone: str) -> int:
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    return sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)


def _epoch_seconds(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
    """Seconds since the epoch of a UTC wall-clock time; ValueError if it does not exist."""
    dt = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    return calendar.timegm(dt.utctimetuple())


def _frac_ns(digits: str | None) -> int:
    return int((digits or "")[:9].ljust(9, "0"))


def _log_time_ns(text: str) -> int | None:
    """An RFC 3339 timestamp with a zone (as conmon writes it) to exact unix nanoseconds."""
    m = _LOG_TIME_RE.match(text)
    if m is None:
        return None
    try:
        secs = _epoch_seconds(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return None
    return (secs - _offset_seconds(m.group(8))) * 1_000_000_000 + _frac_ns(m.group(7))


def _utc_nano(ns: int) -> str:
    """Docker's ``RFC3339NanoFixed`` in UTC: ``2024-01-02T03:04:05.123456789Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class _Decoder:
    """Turns k8s-file lines into entries, merging ``P`` fragments per stream."""

    def __init__(self) -> None:
        # stream -> (first fragment's ns, its time text, fragments, their total size)
        self._pending: dict[Stream, tuple[int, str, list[bytes], int]] = {}

    def feed(self, line: bytes) -> LogEntry | None:
        """One line without its ``\\n``; returns a complete entry or None."""
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            return None
        raw_ts, raw_stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        if tag not in (b"F", b"P"):
            return None
        stream: Stream
        if raw_stream == b"stdout":
            stream = "stdout"
        elif raw_stream == b"stderr":
            stream = "stderr"
        else:
            return None
        ts_text = raw_ts.decode("ascii", errors="replace")
        ns = _log_time_ns(ts_text)
        if ns is None:
            return None
        pending = self._pending.get(stream)
        if tag == b"P":
            if pending is None:
                self._pending[stream] = (ns, ts_text, [text], len(text))
                return None
            first_ns, first_text, frags, size = pending
            frags.append(text)
            size += len(text)
            if size < MAX_LINE:
                self._pending[stream] = (first_ns, first_text, frags, size)
                return None
            del self._pending[stream]
            return LogEntry(first_ns / 1e9, first_text, stream, b"".join(frags))
        if pending is None:
            return LogEntry(ns / 1e9, ts_text, stream, text + b"\n")
        del self._pending[stream]
        first_ns, first_text, frags, _ = pending
        frags.append(text + b"\n")
        return LogEntry(first_ns / 1e9, first_text, stream, b"".join(frags))

    def flush(self) -> list[LogEntry]:
        """The fragments of lines that were never finished, oldest first."""
        out = [
            LogEntry(ns / 1e9, text, stream, b"".join(frags))
            for stream, (ns, text, frags, _) in self._pending.items()
        ]
        self._pending.clear()
        out.sort(key=lambda e: e.time)
        return out


def _feed_lines(dec: _Decoder, buf: bytes) -> tuple[list[LogEntry], bytes]:
    """Decode the complete lines of ``buf``; returns the entries and the incomplete rest."""
    end = buf.rfind(b"\n")
    if end < 0:
        return [], buf
    out = []
    for line in buf[:end].split(b"\n"):
        entry = dec.feed(line)
        if entry is not None:
            out.append(entry)
    return out, buf[end + 1 :]


def _read_whole(f: BinaryIO, dec: _Decoder) -> Iterator[LogEntry]:
    """Every complete line of an open binary file, from its current offset; drops a torn tail."""
    rest = b""
    while True:
        chunk = f.read(_READ_CHUNK)
        if not chunk:
            return
        entries, rest = _feed_lines(dec, rest + chunk)
        yield from entries


def _file_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def read_entries(paths: Sequence[Path]) -> Iterator[LogEntry]:
    """The entries of a log split over rotated files, given oldest first.

    Missing files are skipped, and so is a path naming a file already read (``PATH.hold``
    while it is still a link to ``PATH``).  A line cut by rotation (``P`` at the end of one
    file, ``F`` in the next) is merged across files.
    """
    dec = _Decoder()
    seen: set[tuple[int, int]] = set()
    for path in paths:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, generator-friendly
        except FileNotFoundError:
            continue
        with f:
            key = _file_key(os.fstat(f.fileno()))
            if key in seen:
                continue
            seen.add(key)
            yield from _read_whole(f, dec)
    yield from dec.flush()


# --- Docker's options -----------------------------------------------------------------------


def select(
    entries: Iterable[LogEntry], *, since: float | None, until: float | None, tail: int | None
) -> list[LogEntry]:
    """Apply ``--tail``, ``--since`` and ``--until`` as Docker's json-file reader does.

    ``tail`` keeps the last N entries first (None: all).  Then entries are skipped until the
    first one at or after ``since`` — from there on everything is kept, because timestamps
    need not be monotonic — and the output stops at the first entry after ``until``.
    """
    chosen: Iterable[LogEntry] = entries
    if tail is not None:
        chosen = deque(entries, maxlen=max(tail, 0))
    out: list[LogEntry] = []
    skipping = since is not None
    for e in chosen:
        if skipping:
            if since is not None and e.time < since:
                continue
            skipping = False
        if until is not None and e.time > until:
            break
        out.append(e)
    return out


_GO_DURATION_RE = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART_RE = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?\Z"
)
_UNIX_RE = re.compile(r"\+?(\d+)(?:\.(\d+))?\Z")


def _go_duration(s: str) -> float | None:
    """Go's ``time.ParseDuration`` in seconds (``1h30m``, ``1.5h``, ``-10m``), or None."""
    sign = 1.0
    body = s
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body or _GO_DURATION_RE.fullmatch(body) is None:
        return None
    total = sum(float(num) * _GO_UNITS[unit] for num, unit in _GO_DURATION_PART_RE.findall(body))
    return sign * total


def _parse_timestamp(s: str, now: float, option: str) -> float:
    """Docker's ``GetTimestamp``: a Go duration before ``now``, a date, or unix seconds."""
    value = s.strip()
    if value != "0":
        d = _go_duration(value)
        if d is not None:
            return float(math.floor(now - d))  # Docker keeps whole seconds here
    m = _DATE_RE.match(value)
    if m is not None:
        y, mo, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        hh, mm, ss = (int(g) if g else 0 for g in m.group(4, 5, 6))
        zone = m.group(8)
        try:
            secs = _epoch_seconds(y, mo, day, hh, mm, ss)
        except ValueError as e:
            raise InvalidArgument(f'invalid value for "{option}": {s!r}: {e}') from None
        # no zone: the client's local zone, with the offset it has now (as Docker does)
        offset = _offset_seconds(zone) if zone else time.localtime(now).tm_gmtoff
        return secs - offset + _frac_ns(m.group(7)) / 1e9
    if "-" not in value:
        u = _UNIX_RE.match(value)
        if u is not None:
            return int(u.group(1)) + (float("0." + u.group(2)) if u.group(2) else 0.0)
    raise InvalidArgument(
        f'invalid value for "{option}": failed to parse value as time or duration: "{s}"'
    )


def parse_since(s: str, now: float) -> float:
    """``--since``: RFC 3339(Nano), ``2006-01-02T15:04:05``, ``2006-01-02``, unix seconds
    with a fraction, or a Go duration before ``now`` (``10m``, ``1h30m``, ``1.5h``).

    Dates without a zone are in the local zone.  Raises InvalidArgument.
    """
    return _parse_timestamp(s, now, "since")


def parse_until(s: str, now: float) -> float:
    """``--until``, same formats as :func:`parse_since`."""
    return _parse_timestamp(s, now, "until")


_INT_RE = re.compile(r"[+-]?\d+\Z")


def parse_tail(s: str) -> int | None:
    """``--tail``: ``all`` (or anything that is not a number, or a negative number) is None,
    meaning every line — the Docker daemon does exactly this; ``N`` keeps the last N lines.
    """
    if _INT_RE.match(s) is None:
        return None
    n = int(s)
    return n if n >= 0 else None


def render(entry: LogEntry, *, timestamps: bool) -> bytes:
    """The bytes ``docker logs`` prints for an entry; with ``-t`` prefixed by the UTC
    RFC3339Nano time (nine digits, as Docker's ``RFC3339NanoFixed``) and a space.

    The caller writes stdout entries to stdout and stderr entries to stderr.
    """
    if not timestamps:
        return entry.data
    ns = _log_time_ns(entry.time_text)
    if ns is None:
        ns = round(entry.time * 1e9)
    return _utc_nano(ns).encode() + b" " + entry.data


# --- following ------------------------------------------------------------------------------


class _Tail:
    """An open log file read as it grows."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 - owned by this object, closed in close()
        self.key = _file_key(os.fstat(self.f.fileno()))
        self.rest = b""

    def read(self, dec: _Decoder) -> list[LogEntry]:
        out: list[LogEntry] = []
        while True:
            chunk = self.f.read(_READ_CHUNK)
            if not chunk:
                return out
            entries, self.rest = _feed_lines(dec, self.rest + chunk)
            out.extend(entries)

    def truncated(self) -> bool:
        return os.fstat(self.f.fileno()).st_size < self.f.tell()

    def restart(self) -> None:
        self.f.seek(0)
        self.rest = b""

    def mtime_ns(self) -> int:
        return os.fstat(self.f.fileno()).st_mtime_ns

    def close(self) -> None:
        self.f.close()


def _existing(paths: Sequence[Path]) -> list[tuple[Path, os.stat_result]]:
    """The paths that exist, with their stat, without repeating a file."""
    out: list[tuple[Path, os.stat_result]] = []
    seen: set[tuple[int, int]] = set()
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if _file_key(st) not in seen:
            seen.add(_file_key(st))
            out.append((p, st))
    return out


def _read_path(path: Path, dec: _Decoder) -> list[LogEntry]:
    try:
        with open(path, "rb") as f:
            return list(_read_whole(f, dec))
    except FileNotFoundError:
        return []


def follow(
    paths_fn: Callable[[], Sequence[Path]],
    *,
    stop: Callable[[], bool],
    poll: float = 0.1,
    tail: int | None = None,
) -> Iterator[LogEntry]:
    """Every entry of the log, then new entries as they are written, until ``stop()``.

    ``paths_fn`` gives the log's files oldest first (e.g. ``lambda: log_files(PATH)``); the
    last one is the file being written.  The existing entries come first (only the last
    ``tail`` of them if ``tail`` is not None), then the generator polls every ``poll``
    seconds.  It copes with a line written in several chunks (it waits for the newline), with
    the file being renamed away and a new one created (conmon's reopen after :func:`rotate`,
    or conmon replacing a full file: the old file is read to its end first, then any newer
    files, then the new one) and with truncation in place (reading restarts at 0).
    ``stop()`` is checked before each pass, so everything written before it returned True is
    yielded before the generator ends; lines left unfinished at that point are yielded as
    they are.
    """
    dec = _Decoder()
    cur: _Tail | None = None

    def open_newest(files: list[tuple[Path, os.stat_result]]) -> list[LogEntry]:
        """Read all but the last of ``files`` whole and start tailing the last."""
        nonlocal cur
        out: list[LogEntry] = []
        for p, _ in files[:-1]:
            out.extend(_read_path(p, dec))
        try:
            cur = _Tail(files[-1][0])
        except FileNotFoundError:
            return out
        out.extend(cur.read(dec))
        return out

    def drain() -> list[LogEntry]:
        nonlocal cur
        out: list[LogEntry] = []
        for _ in range(100):  # bounded: each round only repeats when files changed under us
            if cur is not None:
                out.extend(cur.read(dec))
            files = _existing(paths_fn())
            if not files:
                return out
            if cur is None:
                out.extend(open_newest(files))
                continue
            keys = [_file_key(st) for _, st in files]
            if keys[-1] == cur.key:
                if cur.truncated():
                    cur.restart()
                    continue
                return out
            # the file we read is no longer the newest: finish it, then read what came after
            out.extend(cur.read(dec))
            if cur.key in keys:
                newer = files[keys.index(cur.key) + 1 :]
            else:
                mtime = cur.mtime_ns()
                newer = [f for f in files[:-1] if f[1].st_mtime_ns > mtime] + [files[-1]]
            cur.close()
            cur = None
            out.extend(open_newest(newer))
        return out

    try:
        initial = drain()
        yield from (deque(initial, maxlen=max(tail, 0)) if tail is not None else initial)
        while True:
            done = stop()
            yield from drain()
            if done:
                break
            time.sleep(poll)
        yield from dec.flush()
    finally:
        if cur is not None:
            cur.close()


# --- files and rotation ---------------------------------------------------------------------


def hold_path(log_path: Path) -> Path:
    """``ctr.log.hold``: the hard link that keeps a file conmon replaced (see module doc)."""
    return log_path.with_name(log_path.name + HOLD_SUFFIX)


def _rotated(log_path: Path) -> list[tuple[int, Path]]:
    """``(N, PATH.N)`` for every rotated file, N ascending."""
    prefix = log_path.name + "."
    out = []
    try:
        names = os.listdir(log_path.parent)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            n = int(name[len(prefix) :])
            if n >= 1:
                out.append((n, log_path.parent / name))
    out.sort()
    return out


def log_files(log_path: Path) -> list[Path]:
    """The files of a container's log, oldest first: ``PATH.N`` … ``PATH.1``, ``PATH.hold``
    when it is not just another name of ``PATH``, and ``PATH``; only those that exist."""
    out = [p for _, p in reversed(_rotated(log_path))]
    hold = hold_path(log_path)
    try:
        hst = os.stat(hold)
    except FileNotFoundError:
        hst = None
    try:
        cst = os.stat(log_path)
    except FileNotFoundError:
        cst = None
    if hst is not None and (cst is None or _file_key(hst) != _file_key(cst)):
        out.append(hold)
    if cst is not None:
        out.append(log_path)
    return out


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _shift(log_path: Path, max_file: int, newest: Path) -> None:
    """Make ``newest`` ``PATH.1``, moving ``PATH.N`` to ``PATH.N+1``; keep ``max_file - 1``."""
    for n, p in _rotated(log_path):
        if n >= max_file - 1:
            _unlink(p)
    for n in range(max_file - 2, 0, -1):
        src = log_path.with_name(f"{log_path.name}.{n}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(src, log_path.with_name(f"{log_path.name}.{n + 1}"))
    os.rename(newest, log_path.with_name(f"{log_path.name}.1"))


def rotate(log_path: Path, max_file: int, reopen: Callable[[], None]) -> None:
    """Docker-style rotation by renaming, for a conmon **without** ``--log-size-max``.

    ``PATH.N`` -> ``PATH.N+1`` … ``PATH`` -> ``PATH.1``, keeping at most ``max_file`` files
    in all, then ``reopen()`` (normally ``lambda: request_reopen(bundle / "ctl")``; pass a
    no-op when no conmon is running).  Until conmon handles the message it keeps appending to
    the renamed file, so nothing is lost; :func:`follow` copes with that.  With
    ``max_file == 1`` the file is truncated in place instead (conmon appends with
    ``O_APPEND``, so no reopen is needed and ``reopen`` is not called).  A ``PATH.hold``
    link (:func:`keep_rotated`) is dropped, after filing its file if it is a distinct one.
    The caller holds the container's lock so two rotations do not interleave.
    """
    if max_file < 1:
        raise InvalidArgument("max-file cannot be less than 1")
    if max_file == 1:
        for _, p in _rotated(log_path):
            _unlink(p)
        _unlink(hold_path(log_path))
        with contextlib.suppress(FileNotFoundError):
            os.truncate(log_path, 0)
        return
    if not log_path.exists():
        return
    hold = hold_path(log_path)
    try:
        if not os.path.samefile(hold, log_path):
            _shift(log_path, max_file, hold)  # a generation keep_rotated has not filed yet
    except FileNotFoundError:
        pass
    _unlink(hold)
    _shift(log_path, max_file, log_path)
    reopen()


def request_reopen(ctl_path: Path) -> None:
    """Ask conmon to reopen its log file: write ``"2 0 0\\n"`` to ``<bundle>/ctl``.

    conmon's ``process_terminal_ctrl_line`` reads ``"%d %d %d\\n"`` (type, height, width);
    type 2 is ``REOPEN_LOGS_EVENT``.  Does nothing when no conmon is listening (the FIFO is
    gone or has no reader: the container is not running).  The message is handled
    asynchronously by conmon's main loop.
    """
    try:
        fd = os.open(ctl_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return
        raise
    try:
        os.write(fd, f"{REOPEN_LOGS_EVENT} 0 0\n".encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LogConfig:
    """``--log-opt`` for the k8s-file driver: ``max_size`` in bytes (None: unlimited) and
    ``max_file``, the number of files kept (only meaningful with ``max_size``, as Docker)."""

    max_size: int | None = None
    max_file: int = 1


def keep_rotated(log_path: Path, config: LogConfig) -> bool:
    """Keep what conmon's ``--log-size-max`` would discard; True if a file was rotated.

    Maintains the hard link ``PATH.hold`` -> ``PATH``.  When conmon has replaced ``PATH``
    since the last call, the held (previous) file becomes ``PATH.1`` (older ones shift, the
    ones beyond ``max_file`` are removed) and ``PATH.hold`` is linked to the new ``PATH``.
    Call it after conmon has created the log and from every command that touches the
    container, under the container's lock (see the module docstring).  Without a size limit
    or with ``max_file == 1`` it only removes a stale ``PATH.hold``.
    """
    hold = hold_path(log_path)
    if config.max_size is None or config.max_file < 2:
        _unlink(hold)
        return False
    try:
        cst = os.stat(log_path)
    except FileNotFoundError:
        return False
    rotated = False
    try:
        hst = os.stat(hold)
    except FileNotFoundError:
        hst = None
    if hst is not None and _file_key(hst) != _file_key(cst):
        if hst.st_size > 0:
            _shift(log_path, config.max_file, hold)
            rotated = True
        else:
            _unlink(hold)
    if hst is None or _file_key(hst) != _file_key(cst):
        tmp = log_path.with_name(log_path.name + HOLD_SUFFIX + ".tmp")
        _unlink(tmp)
        try:
            os.link(log_path, tmp)
        except FileNotFoundError:
            return rotated
        os.replace(tmp, hold)
    return rotated


def conmon_log_args(max_size: int | None) -> list[str]:
    """conmon's flags for the size limit: ``--log-size-max N`` (conmon then replaces the full
    file with an empty one; :func:`keep_rotated` keeps the old one), or nothing."""
    if max_size is None:
        return []
    if max_size <= 0:
        raise InvalidArgument("max-size must be a positive number")
    return ["--log-size-max", str(max_size)]


_SIZE_RE = re.compile(r"(\d+\.?\d*|\.\d+) ?(?:([kmgtp])(b|ib)?|(b))?\Z", re.IGNORECASE)
_SIZE_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def _parse_size(value: str) -> int:
    """go-units ``FromHumanSize`` (what Docker's json-file uses): decimal units, so
    ``10m`` is 10,000,000 bytes; ``500k``, ``1g``, ``1.5MB``, ``20MiB`` and ``123`` work."""
    m = _SIZE_RE.match(value)
    if m is None:
        raise InvalidArgument(f"invalid value for log opt 'max-size': invalid size: '{value}'")
    mult = _SIZE_UNITS[m.group(2).lower()] if m.group(2) else 1
    return int(float(m.group(1)) * mult)


def parse_log_opts(opts: Sequence[str]) -> LogConfig:
    """``--log-opt key=value`` for the k8s-file driver: ``max-size`` and ``max-file``."""
    values: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid log opt '{opt}': expected key=value")
        if key not in ("max-size", "max-file"):
            raise InvalidArgument(f"unknown log opt '{key}' for k8s-file log driver")
        values[key] = value
    max_size = None
    if values.get("max-size") == "-1":  # Docker's "unlimited"
        pass
    elif "max-size" in values:
        max_size = _parse_size(values["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_file = 1
    if "max-file" in values:
        raw = values["max-file"]
        if _INT_RE.match(raw) is None:
            raise InvalidArgument(f"invalid value for log opt 'max-file': '{raw}'")
        max_file = int(raw)
        if max_file < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    return LogConfig(max_size=max_size, max_file=max_file)
