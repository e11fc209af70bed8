"""Warm start's pure parts: the run root a command uses, the request format, staleness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.cli import warm, warmclient


@pytest.mark.parametrize(
    "args,env,expected",
    [
        (["ps"], {}, "/run/moorage"),
        (["ps"], {"MOORAGE_RUNROOT": "/tmp/r"}, "/tmp/r"),
        (["--runroot", "/x", "ps"], {"MOORAGE_RUNROOT": "/tmp/r"}, "/x"),
        (["--runroot=/y", "ps"], {}, "/y"),
        (["--root", "/s", "--runroot", "/z", "run", "--runroot", "/no"], {}, "/z"),
        (["-l", "debug", "--runroot", "/d", "ps"], {}, "/d"),
        # a flag of the subcommand is not the global one
        (["run", "--runroot", "/no", "img"], {}, "/run/moorage"),
    ],
)
def test_runroot_follows_the_global_flag_then_the_env(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    assert warmclient.runroot(args, env) == expected


@pytest.mark.parametrize(
    "args,expected",
    [(["login", "x"], "login"), (["--root", "/r", "-l", "info", "ps"], "ps"), (["--help"], "")],
)
def test_command_name_skips_the_global_flags(args: list[str], expected: str) -> None:
    assert warmclient.command_name(args) == expected


def test_socket_path_depends_on_the_code_identity() -> None:
    a = warmclient.socket_path("/r", "python\n/site/moorage")
    b = warmclient.socket_path("/r", "python\n/other/moorage")
    assert a.startswith("/r/warm/") and a.endswith(".sock")
    assert a != b
    assert len(a) < 100  # within AF_UNIX's limit for any sane run root


def test_request_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOOR_TEST_VALUE", "a=b c")
    args = ["run", "--rm", "img", "sh", "-c", "echo 'x y'", "", "é"]
    data = warmclient.encode_request(args, "py\n/pkg")
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    req = warm.decode_request(data[4:])
    assert req.identity == "py\n/pkg"
    assert req.args == args
    assert req.cwd == os.fsencode(tmp_path)
    assert req.env[b"MOOR_TEST_VALUE"] == b"a=b c"
    old = os.umask(0o22)
    os.umask(old)
    assert req.umask == old


def test_decode_refuses_what_is_not_a_request() -> None:
    with pytest.raises(ValueError, match="not a warm-start request"):
        warm.decode_request(b"GET / HTTP/1.1\r\n")


def test_source_signature_sees_an_edit(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 1\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    before = warm.source_signature(tmp_path)
    assert len(before) == 2
    assert warm.source_signature(tmp_path) == before
    (tmp_path / "notes.txt").write_text("still ignored\n")
    assert warm.source_signature(tmp_path) == before
    (tmp_path / "sub" / "b.py").write_text("y = 22\n")
    assert warm.source_signature(tmp_path) != before


def test_source_watch_sees_a_change_to_python_files_only(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    watch = warm.SourceWatch(tmp_path)
    try:
        assert watch.inotify is not None
        assert not watch.check()
        (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
        (tmp_path / "notes.txt").write_text("not code\n")
        assert not watch.check()
        (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
        assert watch.check()
        assert watch.check()  # stays changed
    finally:
        watch.close()


def test_source_watch_sees_a_new_module_in_a_new_directory(tmp_path: Path) -> None:
    watch = warm.SourceWatch(tmp_path)
    try:
        (tmp_path / "sub").mkdir()
        assert not watch.check()
        (tmp_path / "sub" / "m.py").write_text("")
        assert watch.check()
    finally:
        watch.close()


@pytest.mark.parametrize("value,expected", [(None, 300.0), ("5", 5.0), ("0", 0.1), ("soon", 300.0)])
def test_idle_timeout(value: str | None, expected: float) -> None:
    env = {} if value is None else {"MOORAGE_WARM_IDLE": value}
    assert warm.idle_timeout(env) == expected


def test_the_client_path_imports_neither_os_nor_typing() -> None:
    """What `moor` imports before handing a command over: every module costs its start."""
    import subprocess
    import sys

    src = str(Path(warmclient.__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {src!r}); import moorage.cli.main, "
        "moorage.cli.warmclient; print(sorted({'os', 'typing', '__future__', 'signal', "
        "'socket'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, check=True)
    assert out.stdout.decode().strip() == "[]"


def test_getenv_follows_os_environ_once_os_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_RUNROOT", "/changed/since/start")
    assert warmclient.getenv("MOORAGE_RUNROOT") == "/changed/since/start"
    assert warmclient.runroot(["ps"]) == "/changed/since/start"


def _in_child(fn) -> str:  # type: ignore[no-untyped-def]
    """Run ``fn`` in a forked child; its string result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, str(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    out = os.read(r, 4096).decode()
    os.close(r)
    return out


def test_a_forked_childs_written_pages_are_found_and_can_be_faulted_in_ahead() -> None:
    import ctypes
    import resource

    size = 64 * warm._PAGE
    buf = bytearray(size)
    for i in range(0, size, warm._PAGE):
        buf[i] = 1  # present in the parent: a child's write copies the page
    addr = ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    pages = list(range(-(-addr // warm._PAGE), (addr + size) // warm._PAGE))

    def written() -> int:
        before = set(warm.written_pages())
        for i in range(0, size, warm._PAGE):
            buf[i] = 2
        return len(set(pages) & (set(warm.written_pages()) - before))

    assert int(_in_child(written)) >= len(pages) - 1

    def faults(populate: bool) -> str:
        runs = warm.populate_pages(pages) if populate else 0
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(0, size, warm._PAGE):
            buf[i] = 3
        return f"{runs} {resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start}"

    _, plain = map(int, _in_child(lambda: faults(False)).split())
    runs, ahead = map(int, _in_child(lambda: faults(True)).split())
    if runs == 0:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    assert plain >= len(pages) - 1
    assert ahead < plain // 4  # taken ahead, not on the writes


def test_populate_pages_stops_when_asked() -> None:
    import ctypes

    size = 400 * warm._PAGE
    buf = bytearray(size)
    addr = ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    first = -(-addr // warm._PAGE)
    pages = [first + 2 * i for i in range(190)]  # no two consecutive: one madvise each
    done = warm.populate_pages(pages, lambda: True)
    if done == 0:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    assert done == 64  # asked after 64 runs, and stopped
    assert warm.populate_pages(pages) == 190
