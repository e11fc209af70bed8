"""--user and --group-add against an image's /etc/passwd and /etc/group, as Docker does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from moorage.engine.containers.users import resolve_user
from moorage.errors import InvalidArgument

PASSWD = b"""\
root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
# a comment line
nobody:x:65534:65534:nobody:/:/sbin/nologin

app:x:1000:1000:App User:/home/app:/bin/sh
2000:x:3000:3000::/home/digits:/bin/sh
broken:x:notanumber:1::/x:/bin/sh
short:x:1001
nohome:x:1002:1002:::/bin/sh
+nis:x:0:0:::
dup:x:1000:50::/home/dup:/bin/sh
"""

GROUP = b"""\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
wheel:x:10:root, app
staff:x:50:app
users:x:100:
nogroupnum:x:abc:app
short:x
docker:x:999:app,other
3000:x:4000:
"""


def files(
    passwd: bytes | None = PASSWD, group: bytes | None = GROUP
) -> Callable[[str], bytes | None]:
    content = {"/etc/passwd": passwd, "/etc/group": group}

    def read(path: str) -> bytes | None:
        return content[path]

    return read


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        # root: uid 0 looked up in passwd, with root's memberships (as `docker run alpine id`)
        ("", (0, 0, [0, 1, 2, 10], "/root")),
        ("root", (0, 0, [0, 1, 2, 10], "/root")),
        ("0", (0, 0, [0, 1, 2, 10], "/root")),
        ("app", (1000, 1000, [10, 50, 999], "/home/app")),
        ("1000", (1000, 1000, [10, 50, 999], "/home/app")),
        ("nobody", (65534, 65534, [], "/")),
        # an explicit group: that gid, and no supplementary groups from /etc/group
        ("app:staff", (1000, 50, [], "/home/app")),
        ("app:50", (1000, 50, [], "/home/app")),
        ("1000:1000", (1000, 1000, [], "/home/app")),
        ("app:12345", (1000, 12345, [], "/home/app")),
        # a uid without a passwd entry: gid 0, home /
        ("4242", (4242, 0, [], "/")),
        ("4242:4242", (4242, 4242, [], "/")),
        ("4242:staff", (4242, 50, [], "/")),
        # a number is always a uid, even when a user of that name exists
        ("2000", (2000, 0, [], "/")),
        # ... and a number is always a gid
        ("app:3000", (1000, 3000, [], "/home/app")),
        # missing home -> /
        ("nohome", (1002, 1002, [], "/")),
        # empty group part: as if none
        ("app:", (1000, 1000, [10, 50, 999], "/home/app")),
        # first match wins for a duplicate uid
        ("dup", (1000, 50, [], "/home/dup")),
    ],
)
def test_resolve_user(user: str, expected: tuple[int, int, list[int], str]) -> None:
    assert resolve_user(user, files()) == expected


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nosuchuser", "unable to find user nosuchuser: no matching entries in passwd file"),
        ("broken", "unable to find user broken: no matching entries in passwd file"),
        ("short", "unable to find user short: no matching entries in passwd file"),
        ("+nis", "unable to find user +nis: no matching entries in passwd file"),
        ("app:nosuchgroup", "unable to find group nosuchgroup: no matching entries in group file"),
        ("4242:nogroupnum", "unable to find group nogroupnum: no matching entries in group file"),
        ("-1", "unable to find user -1: no matching entries in passwd file"),
        ("2147483648", "uids and gids must be in range 0-2147483647"),
        ("0:2147483648", "uids and gids must be in range 0-2147483647"),
    ],
)
def test_resolve_user_errors(user: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve_user(user, files())
    assert str(e.value) == message


def test_no_passwd_or_group_files() -> None:
    none = files(None, None)
    assert resolve_user("", none) == (0, 0, [], "/")
    assert resolve_user("1000", none) == (1000, 0, [], "/")
    assert resolve_user("1000:1000", none) == (1000, 1000, [], "/")
    assert resolve_user("0", none, ["44", "10"]) == (0, 0, [44, 10], "/")
    with pytest.raises(InvalidArgument, match="unable to find user app: no matching entries"):
        resolve_user("app", none)
    with pytest.raises(InvalidArgument, match="unable to find group staff: no matching entries"):
        resolve_user("1000:staff", none)
    with pytest.raises(InvalidArgument, match="unable to find group staff: no matching entries"):
        resolve_user("1000", none, ["staff"])


@pytest.mark.parametrize(
    ("user", "group_add", "expected_gids"),
    [
        ("app", ["users"], [10, 50, 999, 100]),
        ("app", ["100"], [10, 50, 999, 100]),
        ("app", ["staff"], [10, 50, 999]),  # already a member: not repeated
        ("app", ["7777"], [10, 50, 999, 7777]),
        ("app:staff", ["users", "wheel"], [100, 10]),
        ("4242", ["docker", "users"], [999, 100]),
        ("4242", ["4000"], [4000]),
        # a group named with digits is matched by name or by gid, as Docker
        ("4242", ["3000"], [4000]),
    ],
)
def test_group_add(user: str, group_add: list[str], expected_gids: list[int]) -> None:
    assert resolve_user(user, files(), group_add)[2] == expected_gids


def test_group_add_errors() -> None:
    with pytest.raises(InvalidArgument) as e:
        resolve_user("app", files(), ["nosuchgroup"])
    assert str(e.value) == "unable to find group nosuchgroup: no matching entries in group file"
    with pytest.raises(InvalidArgument, match="uids and gids must be in range"):
        resolve_user("app", files(), ["99999999999"])


def test_robust_parsing() -> None:
    passwd = b"\n\n   \nbad line without colons\n::0:0::/:\nu:x:5:6\r\nw:x:7:8:g:/w:/sh\n"
    group = b"g:x:6:u\r\nh:x:9:u,w\n:x:11:u\n"
    assert resolve_user("u", files(passwd, group)) == (5, 6, [6, 9], "/")
    assert resolve_user("w", files(passwd, group)) == (7, 8, [9], "/w")


def test_reads_only_what_it_needs() -> None:
    asked: list[str] = []

    def read(path: str) -> bytes | None:
        asked.append(path)
        return None

    resolve_user("1000:1000", read)
    assert asked == ["/etc/passwd", "/etc/group"]
    asked.clear()
    resolve_user("1000", read)
    assert asked == ["/etc/passwd"]
