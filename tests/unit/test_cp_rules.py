"""docker cp's path rules: SRC file/dir × DEST exists as file / as dir / missing / ends with '/'."""

from __future__ import annotations

import itertools

import pytest

from moorage.engine.containers.fsops import CopyPlan, plan_copy
from moorage.errors import InvalidArgument, MoorageError, NotFound

INTO_DEST = CopyPlan(into_parent=False, rename=False)  # extract into DEST as it is
AS_DEST = CopyPlan(into_parent=True, rename=True)  # extract into DEST's parent, named DEST

# (src_is_dir, src_ends_with_dot, dest_exists, dest_is_dir, dest_ends_with_slash) -> outcome
TABLE: list[tuple[tuple[bool, bool, bool, bool, bool], CopyPlan | tuple[type[Exception], str]]] = [
    # SRC is a file
    ((False, False, False, False, False), AS_DEST),  # DEST missing: saved as DEST
    ((False, False, False, False, True), (NotFound, "destination directory does not exist")),
    ((False, False, True, False, False), AS_DEST),  # DEST is a file: overwritten
    ((False, False, True, False, True), (InvalidArgument, "destination is not a directory")),
    ((False, False, True, True, False), INTO_DEST),  # DEST is a dir: copied into it
    ((False, False, True, True, True), INTO_DEST),
    # SRC is a directory
    ((True, False, False, False, False), AS_DEST),  # DEST missing: created with SRC's contents
    ((True, False, False, False, True), AS_DEST),
    ((True, False, True, False, False), (InvalidArgument, "cannot copy a directory to a file")),
    ((True, False, True, False, True), (InvalidArgument, "destination is not a directory")),
    ((True, False, True, True, False), INTO_DEST),  # DEST is a dir: SRC copied into it
    ((True, False, True, True, True), INTO_DEST),
    # SRC/. (the directory's contents)
    ((True, True, False, False, False), AS_DEST),
    ((True, True, False, False, True), AS_DEST),
    ((True, True, True, False, False), (InvalidArgument, "cannot copy a directory to a file")),
    ((True, True, True, True, False), INTO_DEST),  # contents copied into DEST
    ((True, True, True, True, True), INTO_DEST),
    # FILE/. is no directory
    ((False, True, False, False, False), (InvalidArgument, "source is not a directory")),
    ((False, True, True, True, False), (InvalidArgument, "source is not a directory")),
]


@pytest.mark.parametrize(("args", "expected"), TABLE, ids=[str(a) for a, _ in TABLE])
def test_rule_table(
    args: tuple[bool, bool, bool, bool, bool],
    expected: CopyPlan | tuple[type[Exception], str],
) -> None:
    if isinstance(expected, CopyPlan):
        assert plan_copy(*args) == expected
    else:
        exc, msg = expected
        with pytest.raises(exc) as info:
            plan_copy(*args)
        assert str(info.value) == msg


def test_plan_fields_are_named() -> None:
    plan = plan_copy(
        src_is_dir=True,
        src_ends_with_dot=False,
        dest_exists=False,
        dest_is_dir=False,
        dest_ends_with_slash=False,
    )
    assert plan.into_parent and plan.rename


@pytest.mark.parametrize("args", list(itertools.product([False, True], repeat=5)))
def test_every_combination_is_decided(args: tuple[bool, bool, bool, bool, bool]) -> None:
    """Each of the 32 inputs gives a plan or one of moorage's errors, never anything else."""
    src_is_dir, src_dot, dest_exists, dest_is_dir, _ = args
    try:
        plan = plan_copy(*args)
    except MoorageError:
        return
    assert not (src_dot and not src_is_dir)
    if dest_exists and dest_is_dir:
        assert plan == INTO_DEST
    else:
        assert plan == AS_DEST
        assert not (dest_exists and src_is_dir)
