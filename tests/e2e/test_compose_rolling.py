"""Rolling replacement (``deploy.replicas > 1`` or ``up --rolling``): a client container on
the project network asks the service by name the whole time and never fails; the default
(one replica) path still stops the old container before it creates the new one."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import Moor
from tests.e2e.test_compose_up import compose, containers

WEB = """
services:
  web:
    image: bb:1
    command: sh -c 'mkdir -p /www && echo "$$V-$$HOSTNAME" > /www/index.html &&
      exec httpd -f -p 80 -h /www'
    environment: {V: "${V:-one}"}
    stop_signal: KILL
    healthcheck: {test: ['CMD', 'wget', '-qO-', 'http://127.0.0.1/'], interval: 200ms, retries: 50}
    deploy: {replicas: 2}
  client:
    image: bb:1
    stop_signal: KILL
    depends_on: {web: {condition: service_healthy}}
    command:
      - sh
      - -c
      # busybox-static's wget cannot use DNS (glibc's NSS in a static binary) nor -T:
      # its nslookup asks aardvark (answers are "Address: IP"; the server's has a tab),
      # and one of the addresses it gives, at random, is used. aardvark-dns 1.4 rebinds
      # its socket on every reload (any container start or stop on the network), so a
      # lookup is tried again for up to 2 s, as a resolver's timeout and attempts would
      # (glibc: 5 s, twice); a request is never retried.
      - 'while true; do
           for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
             ip=$$(nslookup web 2>/dev/null | sed -n "s/^Address: //p" | shuf | head -1);
             [ -n "$$ip" ] && break; sleep 0.1;
           done;
           if [ -z "$$ip" ]; then echo "FAIL no address";
           else timeout 3 wget -qO- "http://$$ip/" || echo "FAIL $$ip"; fi;
           sleep 0.05;
         done'
"""


def client_lines(moor: Moor, d: Path) -> list[str]:
    out = compose(moor, d, "logs", "--no-log-prefix", "client").stdout
    return [line for line in out.splitlines() if line.strip()]


def wait_for(moor: Moor, d: Path, what: str, after: int = 0) -> list[str]:
    deadline = time.time() + 30
    while time.time() < deadline:
        lines = client_lines(moor, d)
        if any(line.startswith(what) for line in lines[after:]):
            return lines
        time.sleep(0.2)
    dns = moor.runroot / "network" / "aardvark"
    state = {p.name: p.read_text() for p in dns.glob("*")} if dns.exists() else {}
    pid = state.get("aardvark.pid", "0").strip() or "0"
    alive = Path(f"/proc/{pid}").exists()
    raise AssertionError(
        f"the client never saw {what!r}: {client_lines(moor, d)[-20:]}; DNS: {state}, "
        f"running: {alive}"
    )


def events_since(moor: Moor, since: float) -> list[tuple[str, str, str]]:
    """(action, container name, id) of container events from ``since`` until now."""
    out = moor("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
               "--format", "json").stdout  # fmt: skip
    docs = [json.loads(line) for line in out.splitlines()]
    return [
        (d["Action"], d["Actor"]["Attributes"]["name"], d["Actor"]["ID"])
        for d in docs
        if d["Type"] == "container"
    ]


def test_rolling_update_keeps_the_service_answering(moor: Moor, bb: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(WEB)
    r = compose(moor, tmp_path, "up", "--wait")  # returns once every container is ready
    assert "demo-web-2  Waited" in r.stderr and "demo-client-1  Waited" in r.stderr
    docs = containers(moor)
    assert docs["demo-web-1"]["State"]["Health"]["Status"] == "healthy"  # type: ignore[index]
    before = {n: d["Id"] for n, d in docs.items() if n.startswith("demo-web")}
    assert sorted(before) == ["demo-web-1", "demo-web-2"]
    start = len(wait_for(moor, tmp_path, "one-"))

    since = time.time()
    r = compose(moor, tmp_path, "up", "-d", V="two")
    assert r.stderr.count("Recreate (rolling)") == 2, r.stderr
    assert r.stderr.count("Healthy") == 2, r.stderr
    # up has returned: the old ones are gone. The client keeps answering, from the new ones
    # only (its first line after this may be a request that was already under way)
    done = len(client_lines(moor, tmp_path))
    deadline = time.time() + 30
    while len(client_lines(moor, tmp_path)) < done + 4 and time.time() < deadline:
        time.sleep(0.2)
    lines = client_lines(moor, tmp_path)[start:]
    bad = [i for i, line in enumerate(lines) if "FAIL" in line or "wget" in line]
    assert not bad, [lines[max(i - 3, 0) : i + 3] for i in bad]
    served = [line.split("-")[0] for line in lines]
    assert served[0] == "one" and set(served) == {"one", "two"}
    assert len(served) >= done - start + 4 and set(served[done - start + 1 :]) == {"two"}, served

    after = {n: d["Id"] for n, d in containers(moor).items() if n.startswith("demo-web")}
    assert sorted(after) == ["demo-web-1", "demo-web-2"]
    assert not set(after.values()) & set(before.values())
    # each new container was started before its old one died
    events = events_since(moor, since)
    for name in ("demo-web-1", "demo-web-2"):
        started = events.index(("start", name, after[name]))
        died = next(i for i, e in enumerate(events) if e[0] == "die" and e[2] == before[name])
        assert started < died, events
    compose(moor, tmp_path, "down", "-t", "0")
    assert containers(moor) == {}


def test_a_new_container_that_fails_leaves_the_old_one_serving(
    moor: Moor, bb: str, tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(WEB)
    compose(moor, tmp_path, "up", "-d")
    before = {n: d["Id"] for n, d in containers(moor).items() if n.startswith("demo-web")}
    start = len(wait_for(moor, tmp_path, "one-"))
    # the new version exits at once: the first replacement fails, nothing is lost
    (tmp_path / "compose.yaml").write_text(WEB.replace("exec httpd", "exit 3; exec httpd"))
    r = compose(moor, tmp_path, "up", "-d", check=False)
    assert r.returncode == 1 and "exited (3): the old container keeps running" in r.stderr, r.stderr
    now = {n: d["Id"] for n, d in containers(moor).items() if n.startswith("demo-web")}
    assert now == before
    time.sleep(1)
    lines = client_lines(moor, tmp_path)[start:]
    assert lines and not any("FAIL" in line for line in lines), lines
    # the fixed file rolls through on the next up
    (tmp_path / "compose.yaml").write_text(WEB)
    compose(moor, tmp_path, "up", "-d", V="three")
    wait_for(moor, tmp_path, "three-", after=start)
    compose(moor, tmp_path, "down", "-t", "0")
    assert containers(moor) == {}


def test_one_replica_is_recreated_as_before(moor: Moor, bb: str, tmp_path: Path) -> None:
    one = "services:\n  web: {image: bb:1, network_mode: none, command: sleep 1000," \
          " stop_signal: KILL, environment: {V: '${V:-one}'}}\n"  # fmt: skip
    (tmp_path / "compose.yaml").write_text(one)
    compose(moor, tmp_path, "up", "-d")
    old = containers(moor)["demo-web-1"]["Id"]
    since = time.time()
    r = compose(moor, tmp_path, "up", "-d", V="two")
    assert "Recreate\n" in r.stderr and "rolling" not in r.stderr, r.stderr
    new = containers(moor)["demo-web-1"]["Id"]
    assert new != old
    events = events_since(moor, since)
    # stopped and removed first, then the new one made: no rename, no overlap
    assert [e[0] for e in events if e[0] != "kill"] == [
        "die", "stop", "destroy", "create", "start"
    ], events  # fmt: skip
    assert not any(e[0] == "rename" for e in events)
    # --rolling asks for the rolling path with one replica too
    r = compose(moor, tmp_path, "up", "-d", "--rolling", V="three")
    assert "Recreate (rolling)" in r.stderr
    events = events_since(moor, since)
    assert ("rename", f"{new[:12]}_demo-web-1", new) in events
    compose(moor, tmp_path, "down", "-t", "0")
    assert containers(moor) == {}
