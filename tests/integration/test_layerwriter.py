"""An overlay upper dir becomes an OCI layer tar, and unpacks back to the same upper dir."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from moorage.store.layerwriter import write_layer
from moorage.store.unpack import unpack_layer


def _upper(tmp_path: Path) -> Path:
    up = tmp_path / "upper"
    (up / "etc").mkdir(parents=True)
    (up / "etc" / "conf").write_text("x\n")
    os.link(up / "etc" / "conf", up / "etc" / "conf-link")
    (up / "etc" / "sym").symlink_to("/etc/passwd")
    os.mknod(up / "etc" / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    (up / "opaque").mkdir()
    os.setxattr(up / "opaque", "trusted.overlay.opaque", b"y")
    (up / "opaque" / "kept").write_text("k")
    return up


def test_whiteouts_links_and_determinism(tmp_path: Path) -> None:
    up = _upper(tmp_path)
    a, b = io.BytesIO(), io.BytesIO()
    write_layer(up, a, clamp_mtime=0)
    write_layer(up, b, clamp_mtime=0)
    assert a.getvalue() == b.getvalue()  # same tree, same bytes
    with tarfile.open(fileobj=io.BytesIO(a.getvalue())) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert "etc/.wh.gone" in members and "opaque/.wh..wh..opq" in members
    assert members["etc/conf-link"].islnk() and members["etc/conf-link"].linkname == "etc/conf"
    assert members["etc/sym"].issym() and members["etc/sym"].linkname == "/etc/passwd"
    back = tmp_path / "back"
    back.mkdir()
    unpack_layer(io.BytesIO(a.getvalue()), back)
    st = os.lstat(back / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(back / "opaque", "trusted.overlay.opaque") == b"y"
    assert (back / "opaque" / "kept").read_text() == "k"


def test_a_symlinked_dir_is_stored_as_a_link_not_followed(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    up.mkdir()
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("do not copy")
    (up / "data").symlink_to(secret)
    out = io.BytesIO()
    write_layer(up, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        names = tf.getnames()
    assert names == ["data"]
