"""The compose applications in ``examples/`` run as their comments say (busybox, offline):
``three-service`` with its named volumes, healthcheck-gated ``depends_on`` and ``.env``."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import MOOR, REPO, Moor


def test_three_service_example(moor: Moor, busybox_tar: Path, tmp_path: Path) -> None:
    """``up -d`` starts ``db`` first and ``web``/``worker`` only once its health check passes;
    values come from ``.env`` (BASE_IMAGE, GREETING) unless the environment overrides them
    (WEB_PORT); ``worker`` writes the greeting into the shared named volume that ``web``
    serves; ``down -v`` removes containers, network and both volumes."""
    moor("import", "--change", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
    app = tmp_path / "three-service"
    shutil.copytree(REPO / "examples" / "three-service", app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**moor.env, "WEB_PORT": str(port)}

    def compose(*args: str) -> str:
        p = subprocess.run(
            [MOOR, "compose", *args], cwd=app, capture_output=True, text=True, env=env,
            timeout=120, check=False,
        )  # fmt: skip
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout + p.stderr

    out = compose("up", "-d")
    assert "Volume threeservice_dbdata  Created" in out
    assert "Volume threeservice_shared  Created" in out
    ids = moor("ps", "-q", "--no-trunc").stdout.split()
    docs = {d["Name"].lstrip("/"): d for d in json.loads(moor("inspect", *ids).stdout)}
    assert sorted(docs) == ["threeservice-db-1", "threeservice-web-1", "threeservice-worker-1"]
    db = docs["threeservice-db-1"]["State"]
    assert db["Health"]["Status"] == "healthy"
    for name in ("threeservice-web-1", "threeservice-worker-1"):
        assert docs[name]["State"]["StartedAt"] > db["StartedAt"], name
        assert docs[name]["Config"]["Image"] == "busybox:latest"  # BASE_IMAGE from .env
    shared = json.loads(moor("volume", "inspect", "threeservice_shared").stdout)[0]
    assert shared["Labels"]["example"] == "three-service"

    body = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and body != "hello from moorage\n":
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            time.sleep(0.2)
    assert body == "hello from moorage\n"  # GREETING from .env, through the shared volume

    compose("down", "-v", "-t", "1")
    assert moor("ps", "-aq").stdout == ""
    assert not {"threeservice_dbdata", "threeservice_shared"} & set(
        moor("volume", "ls", "-q").stdout.split()
    )
    assert "threeservice_default" not in moor("network", "ls", "--format", "{{.Name}}").stdout
