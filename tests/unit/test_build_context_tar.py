"""extract_tar: a build context from a remote client stays inside its directory, with or
without tarfile's extraction filters (Python 3.11.4+; Debian 12 has 3.11.2)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from moorage.build import context
from moorage.errors import InvalidArgument


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.fixture(params=["as installed", "without filters"])
def filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "without filters":
        monkeypatch.delattr(tarfile, "tar_filter", raising=False)


@pytest.mark.usefixtures("filters")
def test_a_write_through_a_symlink_out_of_the_context_is_refused(tmp_path: Path) -> None:
    dest, outside = tmp_path / "ctx", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    tar = _tar((_symlink("evil", str(outside)), b""), (_file("evil/pwned"), b"gotcha"))
    with pytest.raises(InvalidArgument, match="invalid build context"):
        context.extract_tar(tar, dest, "from the client")
    assert list(outside.iterdir()) == []


@pytest.mark.usefixtures("filters")
def test_files_come_in_with_risky_mode_bits_cleared(tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    dest.mkdir()
    tar = _tar((_file("app/run.sh", 0o6777), b"#!/bin/sh\n"), (_file("/abs.txt"), b"x"))
    context.extract_tar(tar, dest, "from the client")
    mode = (dest / "app" / "run.sh").stat().st_mode
    assert (dest / "app" / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH)
    assert (dest / "abs.txt").read_bytes() == b"x"  # the leading / is dropped
