"""Containers through the real moor, conmon, runc and overlayfs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import Moor


def _entries(d: Path) -> list[Path]:
    """What is in ``d`` (nothing when a killed command never made it)."""
    return list(d.iterdir()) if d.exists() else []


def _mounts(root: Path) -> int:
    """Overlay mounts under this test's own store (other stores may be busy meanwhile)."""
    with open("/proc/mounts") as f:
        return sum(1 for line in f if " overlay " in line and line.split()[1].startswith(str(root)))


def test_run_foreground_output_and_exit_code(moor: Moor, bb: str) -> None:
    r = moor("run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert moor("ps", "-aq").stdout == ""


def test_run_detached_ps_inspect_logs_stop_rm(moor: Moor, bb: str) -> None:
    before = _mounts(moor.root)
    cid = moor(
        "run", "-d", "--name", "web", "bb:1", "sh", "-c", "echo hi; exec sleep 60"
    ).stdout.strip()
    assert len(cid) == 64
    out = moor("ps").stdout.splitlines()
    assert out[0].split()[:2] == ["CONTAINER", "ID"] and out[1].startswith(cid[:12])
    assert out[1].rstrip().endswith("web") and "Up " in out[1]
    doc = json.loads(moor("inspect", "web").stdout)[0]
    assert doc["Id"] == cid and doc["Name"] == "/web" and doc["State"]["Running"] is True
    assert doc["State"]["Pid"] > 0 and doc["Path"] == "sh"
    assert doc["Config"]["Image"] == "bb:1" and doc["Image"] == bb
    deadline = time.time() + 5
    while "hi" not in moor("logs", "web").stdout and time.time() < deadline:
        time.sleep(0.05)
    assert moor("logs", "web").stdout == "hi\n"
    assert moor("logs", "-t", "web").stdout.split(" ", 1)[1] == "hi\n"
    assert _mounts(moor.root) == before + 1
    r = moor("rm", "web", check=False)
    assert r.returncode == 1 and "cannot remove a running container" in r.stderr
    assert moor("stop", "-t", "1", "web").stdout == "web\n"
    assert (
        moor("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web").stdout
        == "exited 137\n"
    )
    assert moor("ps", "-q").stdout == ""
    assert moor("ps", "-aq").stdout.strip() == cid[:12]
    assert _mounts(moor.root) == before
    moor("rm", "web")
    assert moor("ps", "-aq").stdout == ""
    assert not (moor.root / "overlay" / cid).exists()
    assert not (moor.root / "containers" / cid).exists()


def test_exit_codes_125_126_127(moor: Moor, bb: str) -> None:
    r = moor("run", "--rm", "bb:1", "nope", check=False)
    assert r.returncode == 127 and 'exec: "nope": executable file not found' in r.stderr
    r = moor("run", "--rm", "bb:1", "/etc/passwd", check=False)
    assert r.returncode == 126 and "permission denied" in r.stderr
    r = moor("run", "--rm", "nosuch:1", "true", check=False)
    assert r.returncode == 125 and "No such image: nosuch:1" in r.stderr
    r = moor("run", "--rm", "--memory", "1x", "bb:1", "true", check=False)
    assert r.returncode == 125 and "invalid size: '1x'" in r.stderr
    r = moor("run", "--rm", "--cap-add", "BOGUS", "bb:1", "true", check=False)
    assert r.returncode == 125 and "unknown capability" in r.stderr
    assert moor("ps", "-aq").stdout == ""


def test_name_conflict_names_the_holder(moor: Moor, bb: str) -> None:
    cid = moor("create", "--name", "dup", "bb:1", "true").stdout.strip()
    r = moor("run", "--name", "dup", "bb:1", "true", check=False)
    assert r.returncode == 125
    assert f'The container name "/dup" is already in use by container "{cid}"' in r.stderr
    moor("rm", "dup")


def test_stdin_and_create_start_attach(moor: Moor, bb: str) -> None:
    r = moor("run", "--rm", "-i", "bb:1", "sh", "-c", "tr a-z A-Z", input=b"piped input\n")
    assert r.stdout == "PIPED INPUT\n"
    moor("create", "--name", "c1", "bb:1", "sh", "-c", "echo started; exit 4")
    assert moor("ps", "-a", "--format", "{{.Status}}").stdout == "Created\n"
    r = moor("start", "-a", "c1", check=False)
    assert (r.returncode, r.stdout) == (4, "started\n")
    assert moor("wait", "c1").stdout == "4\n"
    moor("rm", "c1")


def test_env_user_workdir_hostname(moor: Moor, bb: str) -> None:
    out = moor(
        "run", "--rm", "-e", "A=1", "-u", "app", "-w", "/tmp/work", "-h", "box",
        "bb:1", "sh", "-c", "echo $A $(id -u):$(id -g) $(pwd) $(hostname)",
    ).stdout  # fmt: skip
    assert out == "1 1000:1000 /tmp/work box\n"
    out = moor("run", "--rm", "--entrypoint", "echo", "bb:1", "a", "b").stdout
    assert out == "a b\n"
    r = moor("run", "--rm", "-u", "ghost", "bb:1", "true", check=False)
    assert r.returncode == 125 and "unable to find user ghost" in r.stderr


def test_hardening(moor: Moor, bb: str) -> None:
    script = (
        "mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; "
        "unshare -U true 2>/dev/null && echo UNSHARED; "
        "echo x > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE; "
        "cat /proc/keys 2>/dev/null | wc -c; "
        "ls /proc | grep -c '^[0-9]'; "
        "grep CapEff /proc/self/status"
    )
    out = moor("run", "--rm", "bb:1", "sh", "-c", script).stdout.split("\n")
    assert "MOUNTED" not in out and "UNSHARED" not in out and "WROTE" not in out
    assert out[0] == "0"  # /proc/keys masked
    assert int(out[1]) <= 3  # only the container's own processes
    assert out[2].split()[1] == "00000000a80425fb"  # Docker's default capability set
    out = moor(
        "run", "--rm", "--privileged", "bb:1", "sh", "-c", "mount -t tmpfs none /tmp && echo ok"
    ).stdout
    assert out == "ok\n"


def test_no_fd_leaks_into_the_container(moor: Moor, bb: str) -> None:
    out = moor("run", "--rm", "bb:1", "ls", "/proc/self/fd").stdout.split()
    assert sorted(out, key=int) == ["0", "1", "2", "3"]  # 3 is ls's own directory fd


def test_read_only_tmpfs_and_limits(moor: Moor, bb: str) -> None:
    script = "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmp"
    r = moor("run", "--rm", "--read-only", "--tmpfs", "/scratch", "bb:1", "sh", "-c", script)
    assert r.stdout == "ro\ntmp\n"
    out = moor("run", "--rm", "-m", "64m", "--pids-limit", "50", "bb:1", "sh", "-c",
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
               "|| cat /sys/fs/cgroup/memory.max").stdout  # fmt: skip
    assert out.strip() == str(64 << 20)


def test_kill_signal_and_restart_policy(moor: Moor, bb: str) -> None:
    moor(
        "run",
        "-d",
        "--name",
        "kk",
        "bb:1",
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do sleep 0.1; done",
    )
    time.sleep(0.3)
    assert moor("kill", "-s", "USR1", "kk").stdout == "kk\n"
    assert moor("wait", "kk").stdout == "7\n"
    moor("rm", "kk")
    moor("run", "-d", "--name", "rr", "--restart", "on-failure:2", "bb:1", "sh", "-c", "exit 1")
    deadline = time.time() + 15
    while time.time() < deadline:
        doc = json.loads(moor("inspect", "rr").stdout)[0]
        if doc["RestartCount"] == 2 and doc["State"]["Status"] == "exited":
            break
        time.sleep(0.2)
    assert doc["RestartCount"] == 2 and doc["State"]["ExitCode"] == 1
    moor("rm", "-f", "rr")


def test_ps_filters_and_formats(moor: Moor, bb: str) -> None:
    moor("run", "--name", "aa", "-l", "tier=web", "bb:1", "true")
    moor("run", "--name", "bb", "bb:1", "sh", "-c", "exit 2", check=False)
    fmt = "{{.Names}}"
    assert moor("ps", "-a", "-f", "label=tier=web", "--format", fmt).stdout == "aa\n"
    assert moor("ps", "-a", "-f", "exited=2", "--format", fmt).stdout == "bb\n"
    assert moor("ps", "-a", "-f", "name=^aa$", "--format", fmt).stdout == "aa\n"
    assert moor("ps", "-a", "-f", "ancestor=bb:1", "-q").stdout.count("\n") == 2
    assert moor("ps", "-l", "--format", fmt).stdout == "bb\n"
    assert moor("container", "prune", "-f").stdout.startswith("Deleted Containers:")
    assert moor("ps", "-aq").stdout == ""


def test_rmi_refuses_while_a_container_uses_it(moor: Moor, bb: str) -> None:
    moor("create", "--name", "user", "bb:1", "true")
    r = moor("rmi", "bb:1", check=False)
    assert r.returncode == 1 and "is using its referenced image" in r.stderr
    moor("rm", "user")
    moor("rmi", "bb:1")


def test_kill_9_of_conmon_then_rm_f_cleans_up(moor: Moor, bb: str) -> None:
    before = _mounts(moor.root)
    cid = moor("run", "-d", "bb:1", "sleep", "60").stdout.strip()
    conmon_pid = int((moor.runroot / "containers" / cid / "conmon.pid").read_text())
    os.kill(conmon_pid, signal.SIGKILL)
    time.sleep(0.2)
    assert moor("inspect", "-f", "{{.State.Status}}", cid).stdout == "running\n"
    moor("rm", "-f", cid)
    assert moor("ps", "-aq").stdout == ""
    assert _mounts(moor.root) == before
    assert subprocess.run(["pgrep", "-f", "--", f"-c {cid}"], capture_output=True).returncode == 1


def test_twenty_parallel_detached_runs(moor: Moor, bb: str) -> None:
    procs = [moor.popen("run", "-d", "bb:1", "sleep", "30", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE) for _ in range(20)]  # fmt: skip
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        ids.append(out.decode().strip())
    names = moor("ps", "--format", "{{.Names}}").stdout.split()
    assert len(set(ids)) == 20 and len(set(names)) == 20
    moor("rm", "-f", *ids)
    assert moor("ps", "-aq").stdout == ""


def test_workdir_stays_inside_the_root(moor: Moor, bb: str, tmp_path: Path) -> None:
    # resolved inside the container's root (as Docker), never on the host
    assert moor("run", "--rm", "-w", "/../../../etc", "bb:1", "pwd").stdout == "/etc\n"
    marker = tmp_path / "outside"
    r = moor("run", "--rm", "-w", f"/../../..{marker}", "bb:1", "pwd", check=False)
    assert r.returncode == 125 and "must not contain '..'" in r.stderr
    assert not marker.exists()


def test_single_character_names_are_refused_as_docker_does(moor: Moor, bb: str) -> None:
    r = moor("create", "--name", "a", "bb:1", check=False)
    assert r.returncode == 125 and "Invalid container name (a)" in r.stderr


def test_exec_cp_diff_export(moor: Moor, bb: str, tmp_path: Path) -> None:
    before = _mounts(moor.root)
    moor("run", "-d", "--name", "box", "bb:1", "sleep", "60")
    assert moor("exec", "box", "sh", "-c", "echo $(id -u) $(pwd)").stdout == "0 /\n"
    out = moor(
        "exec", "-u", "app", "-w", "/tmp", "-e", "X=5", "box", "sh", "-c", "echo $X $(id -u) $(pwd)"
    )
    assert out.stdout == "5 1000 /tmp\n"
    r = moor("exec", "box", "nope", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr
    assert moor("exec", "box", "sh", "-c", "exit 9", check=False).returncode == 9
    assert moor("exec", "-i", "box", "cat", input=b"through\n").stdout == "through\n"
    moor("exec", "-d", "box", "sh", "-c", "echo bg > /tmp/bg")
    (tmp_path / "hostfile").write_text("hi\n")
    moor("cp", str(tmp_path / "hostfile"), "box:/tmp/")
    assert moor("exec", "box", "cat", "/tmp/hostfile").stdout == "hi\n"
    moor("cp", "box:/etc/passwd", str(tmp_path / "pw"))
    assert (tmp_path / "pw").read_text().startswith("root:x:0:0")
    moor("exec", "box", "rm", "/bin/vi")
    assert moor("diff", "box").stdout.splitlines() == [
        "C /bin", "D /bin/vi", "C /tmp", "A /tmp/bg", "A /tmp/hostfile",
    ]  # fmt: skip
    moor("stop", "-t", "0", "box")
    # a stopped container's files are reachable too (mounted for the copy, then unmounted)
    moor("cp", "box:/tmp/hostfile", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "hi\n"
    names = (
        subprocess.run(
            ["tar", "-t"], input=moor("export", "box").stdout_bytes, capture_output=True, check=True
        )
        .stdout.decode()
        .split()
    )
    assert "bin/busybox" in names and "tmp/hostfile" in names and "bin/vi" not in names
    moor("rm", "box")
    assert _mounts(moor.root) == before


def test_commit_and_update(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "cm", "bb:1", "sleep", "60")
    moor("exec", "cm", "sh", "-c", "echo committed > /data.txt; rm /bin/vi")
    iid = moor("commit", "-m", "add data", "-c", 'CMD ["cat","/data.txt"]', "cm", "snap:1").stdout
    assert iid.startswith("sha256:")
    assert moor("run", "--rm", "snap:1").stdout == "committed\n"
    r = moor("run", "--rm", "snap:1", "ls", "/bin/vi", check=False)
    assert r.returncode == 1  # the deletion was committed as a whiteout
    env = moor("image", "inspect", "-f", "{{json .Config.Env}}", "snap:1").stdout
    assert "HOSTNAME" not in env  # the runtime's per-container variables are not committed
    hist = moor("history", "--format", "{{.Comment}}", "snap:1").stdout.splitlines()
    assert hist[0] == "add data"
    assert moor("inspect", "-f", "{{.State.Status}}", "cm").stdout == "running\n"  # unpaused
    moor("update", "-m", "128m", "--pids-limit", "30", "cm")
    out = moor("exec", "cm", "cat", "/sys/fs/cgroup/pids/pids.max").stdout
    assert out == "30\n"
    assert moor("inspect", "-f", "{{.HostConfig.Memory}}", "cm").stdout == f"{128 << 20}\n"
    moor("rm", "-f", "cm")


def test_escape_attempts_fail(moor: Moor, bb: str) -> None:
    script = (
        # overwrite the runtime binary through /proc/self/exe (CVE-2019-5736 style)
        "echo pwned > /proc/self/exe 2>/dev/null && echo EXE; "
        "insmod /nonexistent.ko 2>/dev/null; "
        "grep -q init_module /proc/kallsyms 2>/dev/null; "
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; "
        "echo 1 > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ; "
        "mknod /tmp/sda b 8 0 2>/dev/null && head -c1 /tmp/sda >/dev/null 2>&1 && echo DISK; "
        "true"
    )
    lines = moor("run", "--rm", "bb:1", "sh", "-c", script).stdout.splitlines()
    assert lines[0].startswith("sh -c")  # pid 1 is the container's own shell
    assert not {"EXE", "SYSRQ", "DISK"} & set(lines[1:])
    # the host's processes are invisible
    r = moor("run", "--rm", "bb:1", "sh", "-c", "ls /proc | grep -c '^[0-9]'").stdout
    assert int(r) <= 3


def test_kill_9_of_moor_mid_start_and_of_runc(moor: Moor, bb: str) -> None:
    before = _mounts(moor.root)
    for delay in (0.05, 0.1, 0.2):
        p = moor.popen("run", "-d", "--name", f"mid{int(delay * 100)}", "bb:1", "sleep", "60",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        p.kill()
        p.wait()
    # whatever state each was left in, ps tells it and rm -f cleans it all
    for line in moor("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines():
        assert line.split()[1] in ("created", "running", "exited")
    ids = moor("ps", "-aq").stdout.split()
    if ids:
        moor("rm", "-f", *ids)
    assert moor("ps", "-aq").stdout == ""
    assert _mounts(moor.root) == before
    assert not _entries(moor.root / "containers")
    assert not list((moor.runroot / "netns").glob("*"))


def test_rm_sweeps_what_a_killed_create_left(moor: Moor, bb: str) -> None:
    """Directories of a container whose create was killed before it recorded it: the next
    rm removes them; a create in progress (holding its lock) is left alone."""
    import fcntl

    orphan, busy = "a" * 64, "b" * 64
    for cid in (orphan, busy):
        (moor.root / "containers" / cid).mkdir(parents=True)
        (moor.runroot / "containers" / cid).mkdir(parents=True)
    fd = os.open(moor.runroot / "containers" / busy / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cid = moor("create", "bb:1", "true").stdout.strip()
        moor("rm", cid)
        assert not (moor.root / "containers" / orphan).exists()
        assert (moor.root / "containers" / busy).exists()
    finally:
        os.close(fd)
    moor("rm", moor("create", "bb:1", "true").stdout.strip())
    assert _entries(moor.root / "containers") == []


def test_rm_of_several_reports_each_in_order_and_fails_for_the_bad_ones(
    moor: Moor, bb: str
) -> None:
    """Several containers are removed together (as the docker CLI does); the output still
    names them in the order given, with one error per one that could not be removed."""
    running = [moor("run", "-d", "--network", "none", "bb:1", "sleep", "60").stdout.strip()
               for _ in range(3)]  # fmt: skip
    stopped = moor("create", "--network", "none", "--name", "stopped-one", "bb:1", "true")
    args = [running[0][:12], "no-such-container", running[1], "stopped-one", running[2]]
    r = moor("rm", *args, check=False)  # without -f: the running ones are refused
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["stopped-one"]
    assert r.stderr.count("Error") == 4 and "no-such-container" in r.stderr
    assert stopped.returncode == 0
    r = moor("rm", "-f", *args, check=False)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [running[0][:12], running[1], running[2]]
    assert r.stderr.count("Error") == 2  # the missing one and the one removed before
    assert moor("ps", "-aq").stdout == ""
    assert not _entries(moor.root / "containers")


def test_more_create_flags(moor: Moor, bb: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    script = (
        "echo $FROM_FILE; ps -o comm | sed -n 2p; ulimit -n; cat /proc/sys/kernel/shmmax; "
        "grep NoNewPrivs /proc/self/status | tr -d '\t'; "
        "df -k /dev/shm | tail -1 | awk '{print $2}'; id -G"
    )
    out = moor(
        "run", "--rm", "--init", "--env-file", str(env_file), "--ulimit", "nofile=512:512",
        "--sysctl", "kernel.shmmax=1048576", "--security-opt", "no-new-privileges",
        "--shm-size", "8m", "--group-add", "1000", "bb:1", "sh", "-c", script,
    ).stdout.split("\n")  # fmt: skip
    assert out[0] == "yes"
    assert out[1] == "moorage-init"  # --init: pid 1 is catatonit, the command its child
    assert out[2] == "512"
    assert out[3] == "1048576"
    assert out[4] == "NoNewPrivs:1"
    assert out[5] == "8192"
    assert out[6].split() == ["0", "1000"]
    out = moor("run", "--rm", "--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN",
               "bb:1", "sh", "-c", "unshare -m true && echo ok").stdout  # fmt: skip
    assert out == "ok\n"


def test_bad_seccomp_file_and_runtime(moor: Moor, bb: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = moor("run", "--rm", "--security-opt", f"seccomp={bad}", "bb:1", "true", check=False)
    assert r.returncode == 125 and "seccomp" in r.stderr and str(bad) in r.stderr
    r = moor("run", "--rm", "--runtime", "kata", "bb:1", "true", check=False)
    assert r.returncode == 125 and "unknown or invalid runtime name: kata" in r.stderr
    assert moor("ps", "-aq").stdout == ""


def test_pause_unpause(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "pz", "bb:1", "sleep", "60")
    moor("pause", "pz")
    assert moor("ps", "--format", "{{.Status}}").stdout.endswith("(Paused)\n")
    r = moor("exec", "pz", "true", check=False)
    assert r.returncode == 125 and "paused" in r.stderr
    moor("unpause", "pz")
    assert moor("exec", "pz", "echo", "back").stdout == "back\n"
    moor("rm", "-f", "pz")


def test_log_rotation(moor: Moor, bb: str) -> None:
    moor("run", "--name", "lr", "--log-opt", "max-size=300", "--log-opt", "max-file=3", "bb:1",
         "sh", "-c", "for i in $(seq 1 40); do echo line-$i; sleep 0.01; done")  # fmt: skip
    moor("ps", "-a")  # any command that looks at the container keeps the rotation
    logs = sorted(p.name for p in (moor.root / "containers").glob("*/ctr.log*"))
    assert logs[0] == "ctr.log" and len(logs) <= 4
    out = moor("logs", "lr").stdout.split()
    assert out[-1] == "line-40" and len(out) < 40
    moor("rm", "lr")


def test_foreground_run_forwards_signals(moor: Moor, bb: str) -> None:
    p = moor.popen(
        "run", "--rm", "--name", "sig", "bb:1", "sh", "-c",
        "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    assert out == b"got-term\n" and p.returncode == 5
    assert moor("ps", "-aq").stdout == ""


def test_logs_options_top_and_ps_size(moor: Moor, bb: str) -> None:
    moor("run", "-d", "--name", "lg", "bb:1", "sh", "-c",
         "for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 60")  # fmt: skip
    deadline = time.time() + 5
    while moor("logs", "lg").stdout.count("\n") < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert moor("logs", "--tail", "2", "lg").stdout == "line-4\nline-5\n"
    assert moor("logs", "--since", "1h", "lg").stdout.count("\n") == 5
    assert moor("logs", "--until", "2000-01-01T00:00:00Z", "lg").stdout == ""
    r = moor("logs", "--since", "yesterday-ish", "lg", check=False)
    assert r.returncode == 1 and "since" in r.stderr
    top = moor("top", "lg").stdout.splitlines()
    assert "PID" in top[0] and any("sleep 60" in line for line in top[1:])
    size = moor("ps", "-s", "--format", "{{.Size}}").stdout
    assert "(virtual " in size
    moor("rm", "-f", "lg")


def test_review_regressions(moor: Moor, bb: str, tmp_path: Path, busybox_tar: Path) -> None:
    import io
    import tarfile

    # a conmon that is slow to record the exit: nothing records a made-up code meanwhile
    cid = moor("run", "-d", "bb:1", "sh", "-c", "sleep 0.3; exit 7").stdout.strip()
    conmon_pid = int((moor.runroot / "containers" / cid / "conmon.pid").read_text())
    os.kill(conmon_pid, signal.SIGSTOP)
    try:
        time.sleep(0.8)
        assert moor("ps", "-a", "--format", "{{.State}}").stdout == "running\n"
    finally:
        os.kill(conmon_pid, signal.SIGCONT)
    assert moor("wait", cid).stdout == "7\n"
    moor("rm", cid)

    # stop during a restart back-off ends the restarts
    moor("run", "-d", "--name", "loop", "--restart", "always", "bb:1", "sh", "-c", "exit 1")
    time.sleep(1.0)
    moor("stop", "loop")
    count = json.loads(moor("inspect", "loop").stdout)[0]["RestartCount"]
    time.sleep(2.0)
    assert json.loads(moor("inspect", "loop").stdout)[0]["RestartCount"] <= count + 1
    moor("rm", "-f", "loop")

    # an attached run hands its restart policy over when it returns
    r = moor("run", "--name", "att", "--restart", "on-failure:2", "bb:1", "sh", "-c", "exit 3",
             check=False)  # fmt: skip
    assert r.returncode == 3
    deadline = time.time() + 10
    while json.loads(moor("inspect", "att").stdout)[0]["RestartCount"] < 2:
        assert time.time() < deadline
        time.sleep(0.2)
    moor("rm", "-f", "att")

    # start -a of a running container attaches to it
    moor("run", "-d", "--name", "live", "bb:1", "sh", "-c", "sleep 0.5; echo late")
    r = moor("start", "-a", "live", check=False)
    assert "Traceback" not in r.stderr and r.returncode == 0 and "late" in r.stdout
    moor("rm", "-f", "live")

    # an image whose /etc/passwd is a FIFO cannot hang start
    buf = io.BytesIO()
    with tarfile.open(busybox_tar) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src.getmembers():
            if m.name.lstrip("./") == "etc/passwd":
                m = tarfile.TarInfo(m.name)
                m.type = tarfile.FIFOTYPE
                dst.addfile(m)
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    moor("import", "-", "fifo:1", input=buf.getvalue())
    r = moor("run", "--rm", "-u", "nobody", "fifo:1", "id", check=False, timeout=30)
    assert r.returncode == 125 and "unable to find user nobody" in r.stderr


def test_foreground_rm_run_is_seen_and_reached_from_other_shells(moor: Moor, bb: str) -> None:
    """A foreground ``--rm`` run goes without conmon: other commands still see its state and
    pid, can stop it, and it leaves nothing behind."""
    before = _mounts(moor.root)
    p = moor.popen(
        "run", "--rm", "--name", "fg", "bb:1", "sh", "-c",
        "trap 'echo bye; exit 9' TERM; echo ready; while true; do sleep 0.05; done",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    doc = json.loads(moor("inspect", "fg").stdout)[0]
    assert doc["State"]["Running"] is True and doc["State"]["Pid"] > 0
    assert moor("ps", "--format", "{{.Names}} {{.State}}").stdout == "fg running\n"
    assert moor("top", "fg").returncode == 0
    assert moor("stop", "-t", "5", "fg").stdout == "fg\n"
    out, _ = p.communicate(timeout=30)
    assert out == b"bye\n" and p.returncode == 9
    assert moor("ps", "-aq").stdout == ""
    assert _mounts(moor.root) == before
    assert not _entries(moor.root / "containers")
    assert not _entries(moor.runroot / "containers")


def test_kill_9_of_a_foreground_rm_run(moor: Moor, bb: str) -> None:
    """The container outlives the killed ``moor``; once it ends, the next look removes it."""
    before = _mounts(moor.root)
    p = moor.popen(
        "run", "--rm", "--name", "orphan", "bb:1", "sh", "-c", "echo up; sleep 1",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.stdout is not None and p.stdout.readline() == b"up\n"
    p.kill()
    p.wait()
    assert moor("ps", "--format", "{{.Names}} {{.State}}").stdout == "orphan running\n"
    deadline = time.time() + 15
    while moor("ps", "-aq").stdout and time.time() < deadline:
        time.sleep(0.2)
    assert moor("ps", "-aq").stdout == ""
    assert _mounts(moor.root) == before
    assert not _entries(moor.root / "containers")


def test_inspect_env_is_the_configured_one(moor: Moor, bb: str) -> None:
    """Config.Env is what was configured (image + -e), as Docker: HOSTNAME and TERM are
    added only to the running process."""
    plain = moor("create", "-t", "bb:1", "true").stdout.strip()
    assert moor("inspect", "-f", "{{json .Config.Env}}", plain).stdout == "null\n"
    cid = moor("create", "-e", "A=1", "bb:1", "env").stdout.strip()
    assert moor("inspect", "-f", "{{json .Config.Env}}", cid).stdout == '["A=1"]\n'
    out = moor("start", "-a", cid).stdout.splitlines()
    assert "A=1" in out and f"HOSTNAME={cid[:12]}" in out


def test_attach_to_a_running_container(moor: Moor, bb: str) -> None:
    cid = moor(
        "run", "-d", "bb:1", "sh", "-c", "sleep 0.5; echo late; echo oops >&2; exit 4"
    ).stdout.strip()
    r = moor("attach", cid, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (4, "late\n", "oops\n")
    r = moor("attach", cid, check=False)
    assert r.returncode == 1 and "cannot attach to a stopped container" in r.stderr
    r = moor("attach", "nosuch", check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr
    echo = moor("run", "-di", "bb:1", "cat").stdout.strip()
    r = moor("attach", echo, input=b"typed\n", timeout=30)
    assert r.stdout == "typed\n" and r.returncode == 0
