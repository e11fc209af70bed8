"""Docker equivalence: each case of tests/fixtures/build/ built by moorage gives the image
config and filesystem that Docker's classic builder gave (kept in expected/<case>.json,
made by compat/build_corpus.py --write-expected)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from compat.build_corpus import (
    CORPUS,
    cases,
    compare,
    config_of,
    diff_fs,
    expected_path,
    flatten,
    prepare,
)

from tests.conftest import Moor


@pytest.fixture
def plain_bb(moor: Moor, busybox_tar: Path) -> str:
    """bb:1 imported without changes, as Docker's bb:1 (``docker import``)."""
    return moor("import", str(busybox_tar), "bb:1").stdout.strip()


@pytest.mark.parametrize("case", cases())
def test_build_matches_docker(moor: Moor, plain_bb: str, case: str, tmp_path: Path) -> None:
    expected = json.loads(expected_path(case).read_text())
    args: list[str] = []
    extra = CORPUS / case / "build-args"
    if extra.exists():
        for line in extra.read_text().split():
            args += ["--build-arg", line]
    moor("build", "-q", "-t", "t:1", *args, str(prepare(case, tmp_path)))
    base = moor("save", "bb:1").stdout_bytes
    archive = moor("save", "t:1").stdout_bytes
    got = {"config": config_of(archive), "fs": diff_fs(flatten(base), flatten(archive))}
    assert compare(expected, got) == []


def test_corpus_is_complete() -> None:
    assert len(cases()) >= 10
    for case in cases():
        assert expected_path(case).exists(), case
