"""Health probes that enter the container directly (``moorage.runtime.enter``): the same
confinement as ``moor exec`` (runc exec) gives, checked on real containers; the runtime as
the fallback; a hung probe's whole process group killed at its timeout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from moorage.engine import health
from tests.conftest import MOOR, Moor
from tests.e2e.test_health import _health, _until, hmoor  # noqa: F401

# what a process's confinement looks like from inside: ids, capabilities, no_new_privs,
# seccomp, ignored and blocked signals, limits, umask, cwd, environment, cgroups,
# namespaces, pid namespace, root
PROBE = (
    "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp.*|Sig(Ign|Blk)):' "
    "/proc/self/status; umask; pwd; env | grep -v -e ^PWD= -e ^SHLVL= | sort; "
    "cat /proc/self/cgroup; for n in ipc mnt net pid uts cgroup; do "
    "readlink /proc/self/ns/$n; done; cat /proc/1/cmdline; echo; ls /; "
    "test -e /work && echo HOST-VISIBLE; true"
)


def _probe_output(moor: Moor, name: str, **env: str) -> str:
    p = subprocess.run([MOOR, "healthcheck", "run", name], env={**moor.env, **env},
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    log = _health(moor, name)["Log"]
    assert isinstance(log, list)
    return str(log[-1]["Output"])


def _method(moor: Moor, name: str) -> str:
    cid = moor("inspect", "-f", "{{.Id}}", name).stdout.strip()
    pid = int(moor("inspect", "-f", "{{.State.Pid}}", name).stdout)
    cfg = health.HealthConfig(test=("CMD", "true"))
    plan, method = health.probe_method(moor.root / "containers" / cid, cfg, pid)
    assert (plan is not None) == (method == "direct")
    return method


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["-u", "1000:1000", "--group-add", "50", "-w", "/tmp", "-e", "FOO=bar",
         "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN",
         "--security-opt", "no-new-privileges", "--ulimit", "nofile=512:1024"],
        ["--privileged", "--network", "host"],
    ],
    ids=["default", "user-caps-nnp-ulimit", "privileged-hostnet"],
)  # fmt: skip
def test_direct_probe_has_the_confinement_of_exec(
    hmoor: Moor,  # noqa: F811
    bb: str,
    options: list[str],
) -> None:
    moor = hmoor
    moor("run", "-d", "--name", "cf", *options, "--health-cmd", PROBE,
         "--health-interval", "1h", "bb:1", "sleep", "1000")  # fmt: skip
    assert _method(moor, "cf") == "direct"
    direct = _probe_output(moor, "cf")
    through_runc = _probe_output(moor, "cf", MOORAGE_HEALTH_EXEC="runtime")
    by_exec = moor("exec", "cf", "sh", "-c", PROBE).stdout
    assert direct == by_exec == through_runc
    assert "HOST-VISIBLE" not in direct
    assert "sleep\x001000" in direct  # pid 1 of its pid namespace is the container's
    if not options:
        assert "Seccomp:\t2" in direct and "CapEff:\t00000000a80425fb" in direct
    if "-u" in options:
        assert "Uid:\t1000\t1000\t1000\t1000" in direct and "NoNewPrivs:\t1" in direct
        assert "FOO=bar" in direct and "\n/tmp\n" in direct
        # rlimits are set before exec (runc 1.1's exec sets them racily: not compared)
        moor("run", "-d", "--name", "ul", *options, "--health-cmd", "ulimit -n; ulimit -Hn",
             "--health-interval", "1h", "bb:1", "sleep", "1000")  # fmt: skip
        assert _probe_output(moor, "ul") == "512\n1024\n"


def test_direct_probe_loads_the_seccomp_profile(hmoor: Moor, bb: str, tmp_path: Path) -> None:  # noqa: F811
    moor = hmoor
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}],
    }  # fmt: skip
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    moor("run", "-d", "--name", "sc", "--security-opt", f"seccomp={path}",
         "--health-cmd", "mkdir /tmp/d 2>&1; touch /tmp/f && echo touched",
         "--health-interval", "1h", "bb:1", "sleep", "1000")  # fmt: skip
    assert _method(moor, "sc") == "direct"
    out = _probe_output(moor, "sc")
    assert "Permission denied" in out and "touched" in out  # EACCES (13) from the filter
    assert out == _probe_output(moor, "sc", MOORAGE_HEALTH_EXEC="runtime")


def test_direct_probe_errors_and_timeout(
    hmoor: Moor,  # noqa: F811
    bb: str,
    busybox_tar: Path,
) -> None:
    moor = hmoor
    check = 'HEALTHCHECK --interval=1h --retries=1 CMD ["no-such-cmd"]'
    moor("import", "-c", 'CMD ["sleep", "1000"]', "-c", check, str(busybox_tar), "nf:1")
    moor("run", "-d", "--name", "nf", "nf:1")
    assert _method(moor, "nf") == "direct"
    r = moor("healthcheck", "run", "nf", check=False)
    assert r.returncode == 1 and r.stdout.strip() == "unhealthy"
    entry = _health(moor, "nf")["Log"][-1]  # type: ignore[index]
    assert entry["ExitCode"] == 127
    assert 'exec: "no-such-cmd": executable file not found in $PATH' in entry["Output"]
    # a hung check and what it started in the background go at the timeout, together
    moor("run", "-d", "--name", "hang", "--health-cmd", "sleep 4343.5 & sleep 4343.5",
         "--health-interval", "1s", "--health-timeout", "300ms", "--health-retries", "1",
         "bb:1", "sleep", "1000")  # fmt: skip
    assert _method(moor, "hang") == "direct"
    _until(lambda: _health(moor, "hang")["Status"] == "unhealthy")
    assert _health(moor, "hang")["Log"][0]["Output"] == (  # type: ignore[index]
        "Health check exceeded timeout (300ms)"
    )
    moor("rm", "-f", "hang")

    def leftovers() -> list[str]:
        left = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if b"4343.5" in (p / "cmdline").read_bytes():
                        left.append(p.name)
                except OSError:
                    pass
        return left

    _until(lambda: not leftovers(), timeout=5)


def test_fallback_is_explicit(hmoor: Moor, bb: str) -> None:  # noqa: F811
    moor = hmoor
    moor("run", "-d", "--name", "fb", "--health-cmd", "echo via-runc", "--health-interval",
         "1h", "bb:1", "sleep", "1000")  # fmt: skip
    cid = moor("inspect", "-f", "{{.Id}}", "fb").stdout.strip()
    pid = int(moor("inspect", "-f", "{{.State.Pid}}", "fb").stdout)
    cfg = health.HealthConfig(test=("CMD", "true"))
    bundle = moor.root / "containers" / cid
    config = json.loads((bundle / "config.json").read_text())
    # an I/O priority: the direct path does not set one, so the runtime runs the probe
    # (runc 1.1 itself ignores the key)
    config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 4}
    (bundle / "config.json").write_text(json.dumps(config))
    plan, method = health.probe_method(bundle, cfg, pid)
    assert plan is None and "process.ioPriority" in method
    assert _probe_output(moor, "fb") == "via-runc\n"


def _procs(marker: bytes) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker in (p / "cmdline").read_bytes():
                    found.append(p.name)
            except OSError:
                pass
    return found


def test_pausing_a_container_mid_probe_does_not_stall_the_others(hmoor: Moor, bb: str) -> None:  # noqa: F811
    """A probe frozen with its container (pause) cannot be killed until thawed: the
    supervisor gives up on it and goes on probing the others."""
    moor = hmoor
    moor("run", "-d", "--name", "frozen", "--health-cmd", "sleep 4646.5", "--health-interval",
         "1s", "--health-timeout", "2s", "bb:1", "sleep", "1000")  # fmt: skip
    moor("run", "-d", "--name", "fine", "--health-cmd", "true", "--health-interval", "1s",
         "bb:1", "sleep", "1000")  # fmt: skip
    _until(lambda: bool(_procs(b"4646.5")))
    moor("pause", "frozen")

    def starts() -> set[str]:
        log = _health(moor, "fine")["Log"]
        assert isinstance(log, list)
        return {e["Start"] for e in log}

    seen = starts()
    _until(lambda: len(starts() - seen) >= 3, timeout=15)
    moor("unpause", "frozen")
    moor("rm", "-f", "frozen")
    _until(lambda: not _procs(b"4646.5"), timeout=10)
