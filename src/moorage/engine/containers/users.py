"""Resolving ``--user`` and ``--group-add`` against the image's ``/etc/passwd`` and ``/etc/group``.

Docker's rules (those of runc's ``GetExecUser`` plus the daemon's ``--group-add``): a numeric
user is always a uid and a numeric group always a gid, even when a name of those digits
exists; a uid without a passwd entry is allowed (gid 0, home ``/``); a named user or group
that is not found is an error. Supplementary groups are the user's memberships in
``/etc/group`` — only when no group was given explicitly — then the ``--group-add`` ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from moorage.errors import InvalidArgument

__all__ = ["resolve_user"]

_MAX_ID = 2**31 - 1
_NUMERIC = re.compile(r"\d+")


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(data: bytes | None) -> Iterator[list[str]]:
    """The ``:``-separated fields of each entry, skipping blanks, comments and NIS lines."""
    if not data:
        return
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line[0] in "+-":
            continue
        yield line.split(":")


def _id(text: str) -> int | None:
    text = text.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    n = int(text)
    return n if n <= _MAX_ID else None


def _parse_passwd(data: bytes | None) -> list[_Passwd]:
    out: list[_Passwd] = []
    for f in _lines(data):
        if len(f) < 4 or not f[0]:
            continue
        uid, gid = _id(f[2]), _id(f[3])
        if uid is None or gid is None:
            continue
        home = f[5] if len(f) > 5 and f[5] else "/"
        out.append(_Passwd(f[0], uid, gid, home))
    return out


def _parse_group(data: bytes | None) -> list[_Group]:
    out: list[_Group] = []
    for f in _lines(data):
        if len(f) < 3 or not f[0]:
            continue
        gid = _id(f[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
        out.append(_Group(f[0], gid, members))
    return out


def _numeric_id(text: str) -> int | None:
    """``text`` as a uid/gid if it is a number; out-of-range numbers are an error."""
    if not _NUMERIC.fullmatch(text):
        return None
    n = int(text)
    if n > _MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
    return n


def resolve_user(
    user: str,
    read_file: Callable[[str], bytes | None],
    group_add: Sequence[str] = (),
) -> tuple[int, int, list[int], str]:
    """(uid, gid, additional gids, home) of ``--user`` in an image, as Docker resolves it.

    ``user`` is ``""`` (root: uid 0 looked up in passwd), ``NAME``, ``UID``, ``NAME:GROUP``,
    ``UID:GID``, ``UID:GROUP``…; ``read_file("/etc/passwd")``/``read_file("/etc/group")``
    give the image's files (``None`` when absent). ``group_add`` are ``--group-add`` names or
    numbers. Errors use Docker's messages, e.g. ``unable to find user app: no matching
    entries in passwd file``.
    """
    user_arg, _, group_arg = user.partition(":")
    if user_arg == "":
        user_arg = "0"
    passwd = _parse_passwd(read_file("/etc/passwd"))
    uid_arg = _numeric_id(user_arg)

    uid, gid, home = 0, 0, "/"
    matched_name: str | None = None
    if uid_arg is not None:  # a number is always a uid
        entry = next((p for p in passwd if p.uid == uid_arg), None)
    else:
        entry = next((p for p in passwd if p.name == user_arg), None)
    if entry is not None:
        matched_name, uid, gid, home = entry.name, entry.uid, entry.gid, entry.home
    elif uid_arg is not None:
        uid = uid_arg
    else:
        raise InvalidArgument(f"unable to find user {user_arg}: no matching entries in passwd file")

    groups: list[_Group] | None = None
    sgids: list[int] = []
    if group_arg or matched_name is not None:
        groups = _parse_group(read_file("/etc/group"))
    if group_arg:
        assert groups is not None
        gid_arg = _numeric_id(group_arg)
        if gid_arg is not None:  # a number is always a gid
            found = next((g for g in groups if g.gid == gid_arg), None)
        else:
            found = next((g for g in groups if g.name == group_arg), None)
        if found is not None:
            gid = found.gid
        elif gid_arg is not None:
            gid = gid_arg
        else:
            raise InvalidArgument(
                f"unable to find group {group_arg}: no matching entries in group file"
            )
    elif matched_name is not None:
        assert groups is not None
        sgids = [g.gid for g in groups if matched_name in g.members]

    if group_add:
        if groups is None:
            groups = _parse_group(read_file("/etc/group"))
        for name in group_add:
            found = next((g for g in groups if g.name == name or str(g.gid) == name), None)
            if found is not None:
                sgids.append(found.gid)
                continue
            number = _numeric_id(name)
            if number is None:
                raise InvalidArgument(
                    f"unable to find group {name}: no matching entries in group file"
                )
            sgids.append(number)
    return uid, gid, list(dict.fromkeys(sgids)), home
