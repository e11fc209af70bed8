"""Human sizes and durations as Docker prints them, and RFC 3339 parsing."""

from __future__ import annotations

import pytest

from moorage.units import human_duration, human_size, parse_time, rfc3339


@pytest.mark.parametrize(
    ("size", "precision", "text"),
    [
        (0, 4, "0B"),
        (999, 4, "999B"),
        (1000, 4, "1kB"),
        (1234567, 4, "1.235MB"),
        (1234567, 3, "1.23MB"),
        (213_000_000, 3, "213MB"),
        (4_260_000, 3, "4.26MB"),
        (10**12, 4, "1TB"),
    ],
)
def test_human_size(size: int, precision: int, text: str) -> None:
    assert human_size(size, precision) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (3 * 60, "3 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (21 * 86400, "3 weeks"),
        (100 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_parse_time_takes_nanoseconds_and_z() -> None:
    t = parse_time("2024-01-02T03:04:05.123456789Z")
    assert t is not None and abs(t - 1704164645.123456) < 1e-6
    assert parse_time("2024-01-02T03:04:05+02:00") == 1704164645 - 7200
    assert parse_time("garbage") is None
    assert parse_time(None) is None


def test_rfc3339_round_trip() -> None:
    s = rfc3339(1704164645.5)
    assert s == "2024-01-02T03:04:05.500000000Z"
    assert parse_time(s) == 1704164645.5
