"""moorage.later: work kept until the command has answered (in the warm child), else run now."""

from __future__ import annotations

import pytest

from moorage import later


def test_without_hold_work_runs_at_once() -> None:
    done: list[int] = []
    later.after_reply(lambda: done.append(1))
    assert done == [1]


def test_hold_does_nothing_unless_someone_runs_held_work() -> None:
    done: list[int] = []
    later.hold()  # a cold command: nobody would run it later
    later.after_reply(lambda: done.append(1))
    assert done == [1]


def test_held_work_runs_in_order_after_a_failure_too(monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[str] = []

    def boom() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(later, "_enabled", False)
    later.enable()
    later.hold()
    try:
        later.after_reply(lambda: done.append("a"))
        later.after_reply(boom)
        later.after_reply(lambda: done.append("b"))
        assert done == []
    finally:
        later.run_held()
    assert done == ["a", "b"]
    later.after_reply(lambda: done.append("now"))  # no longer held
    assert done == ["a", "b", "now"]
