"""Docker's detach keys: parsing ``--detach-keys`` and spotting the sequence in typed input."""

from __future__ import annotations

import pytest

from moorage.engine.containers.attach import _scan_detach, parse_detach_keys


def test_parse_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a, x ,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    assert parse_detach_keys("") == b""
    for bad in ("ctrl-pp", "ctrl-1", "abc"):
        with pytest.raises(ValueError, match="invalid detach keys"):
            parse_detach_keys(bad)


@pytest.mark.parametrize(
    ("typed", "send", "held", "hit"),
    [
        (b"abc", b"abc", b"", False),
        (b"ab\x10\x11cd", b"ab", b"", True),
        (b"ab\x10", b"ab", b"\x10", False),  # maybe the start of the sequence: wait
        (b"\x10x", b"\x10x", b"", False),  # broken by the next byte: sent as typed
        (b"\x10\x10\x11", b"\x10", b"", True),
    ],
)
def test_scan_detach(typed: bytes, send: bytes, held: bytes, hit: bool) -> None:
    assert _scan_detach(typed, b"\x10\x11") == (send, held, hit)
