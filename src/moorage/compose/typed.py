"""Canonical mappings (already checked by :mod:`canonical`) to the typed project model."""

from __future__ import annotations

from typing import Any

from moorage.compose.model import (
    Build,
    Dependency,
    Deploy,
    FileObject,
    FileRef,
    Healthcheck,
    Mount,
    Network,
    Port,
    Resources,
    Service,
    ServiceNetwork,
    Volume,
    WatchRule,
)

_BUILD_FIELDS = ("context", "dockerfile", "args", "target", "labels")


def _tuple(v: Any) -> tuple[str, ...] | None:
    return None if v is None else tuple(v)


def port_of(p: dict[str, Any]) -> Port:
    return Port(
        target=p["target"],
        published=p.get("published"),
        host_ip=p.get("host_ip", ""),
        protocol=p.get("protocol", "tcp"),
        mode=p.get("mode", "ingress"),
        name=p.get("name", ""),
        app_protocol=p.get("app_protocol", ""),
    )


def _mount(m: dict[str, Any]) -> Mount:
    bind = m.get("bind") or {}
    vol = m.get("volume") or {}
    tmp = m.get("tmpfs") or {}
    return Mount(
        type=m["type"],
        target=m["target"],
        source=m.get("source", ""),
        read_only=bool(m.get("read_only")),
        propagation=bind.get("propagation", ""),
        create_host_path=bool(bind.get("create_host_path")),
        selinux=bind.get("selinux", ""),
        nocopy=bool(vol.get("nocopy")),
        subpath=vol.get("subpath", ""),
        tmpfs_size=tmp.get("size", 0),
        tmpfs_mode=tmp.get("mode", 0),
    )


def _resources(r: dict[str, Any] | None) -> Resources:
    r = r or {}
    return Resources(cpus=r.get("cpus"), memory=r.get("memory"), pids=r.get("pids"))


def _ref(r: dict[str, Any]) -> FileRef:
    return FileRef(
        source=r["source"],
        target=r.get("target", ""),
        uid=r.get("uid", ""),
        gid=r.get("gid", ""),
        mode=r.get("mode"),
    )


def service(name: str, c: dict[str, Any]) -> Service:
    """A :class:`Service` from its canonical mapping."""
    build = None
    if "build" in c:
        b = c["build"]
        build = Build(
            context=b["context"],
            dockerfile=b.get("dockerfile", "Dockerfile"),
            args=dict(b.get("args", {})),
            target=b.get("target", ""),
            labels={k: v or "" for k, v in b.get("labels", {}).items()},
            options={k: v for k, v in b.items() if k not in _BUILD_FIELDS},
        )
    hc = None
    if "healthcheck" in c:
        h = c["healthcheck"]
        hc = Healthcheck(
            test=_tuple(h.get("test")),
            interval=h.get("interval"),
            timeout=h.get("timeout"),
            start_period=h.get("start_period"),
            start_interval=h.get("start_interval"),
            retries=h.get("retries"),
        )
    deploy = None
    if "deploy" in c:
        d = c["deploy"]
        res = d.get("resources") or {}
        deploy = Deploy(
            replicas=d.get("replicas"),
            limits=_resources(res.get("limits")),
            reservations=_resources(res.get("reservations")),
            labels=dict(d.get("labels", {})),
            options={k: v for k, v in d.items() if k not in ("replicas", "resources", "labels")},
        )
    return Service(
        name=name,
        config=c,
        image=c.get("image", ""),
        build=build,
        command=_tuple(c.get("command")),
        entrypoint=_tuple(c.get("entrypoint")),
        environment=dict(c.get("environment", {})),
        ports=tuple(port_of(p) for p in c.get("ports", ())),
        expose=tuple(c.get("expose", ())),
        volumes=tuple(_mount(m) for m in c.get("volumes", ())),
        volumes_from=tuple(c.get("volumes_from", ())),
        networks={
            k: ServiceNetwork(
                aliases=tuple((v or {}).get("aliases", ())),
                ipv4_address=(v or {}).get("ipv4_address", ""),
                ipv6_address=(v or {}).get("ipv6_address", ""),
                priority=(v or {}).get("priority", 0),
            )
            for k, v in c.get("networks", {}).items()
        },
        network_mode=c.get("network_mode", ""),
        links=tuple(c.get("links", ())),
        external_links=tuple(c.get("external_links", ())),
        depends_on={
            k: Dependency(
                condition=v.get("condition", "service_started"),
                restart=bool(v.get("restart", False)),
                required=bool(v.get("required", True)),
            )
            for k, v in c.get("depends_on", {}).items()
        },
        healthcheck=hc,
        restart=c.get("restart", ""),
        labels={k: v or "" for k, v in c.get("labels", {}).items()},
        container_name=c.get("container_name", ""),
        hostname=c.get("hostname", ""),
        domainname=c.get("domainname", ""),
        user=c.get("user", ""),
        working_dir=c.get("working_dir", ""),
        init=bool(c.get("init", False)),
        tty=bool(c.get("tty", False)),
        stdin_open=bool(c.get("stdin_open", False)),
        privileged=bool(c.get("privileged", False)),
        read_only=bool(c.get("read_only", False)),
        stop_signal=c.get("stop_signal", ""),
        stop_grace_period=c.get("stop_grace_period"),
        cap_add=tuple(c.get("cap_add", ())),
        cap_drop=tuple(c.get("cap_drop", ())),
        security_opt=tuple(c.get("security_opt", ())),
        tmpfs=tuple(c.get("tmpfs", ())),
        ulimits={k: (v["soft"], v["hard"]) for k, v in c.get("ulimits", {}).items()},
        sysctls={k: v or "" for k, v in c.get("sysctls", {}).items()},
        mem_limit=c.get("mem_limit"),
        mem_reservation=c.get("mem_reservation"),
        memswap_limit=c.get("memswap_limit"),
        shm_size=c.get("shm_size"),
        cpus=c.get("cpus"),
        cpu_shares=c.get("cpu_shares"),
        pids_limit=c.get("pids_limit"),
        deploy=deploy,
        scale=c.get("scale"),
        secrets=tuple(_ref(r) for r in c.get("secrets", ())),
        configs=tuple(_ref(r) for r in c.get("configs", ())),
        profiles=tuple(c.get("profiles", ())),
        pull_policy=c.get("pull_policy", ""),
        watch=tuple(
            WatchRule(
                path=w["path"],
                action=w["action"],
                target=w.get("target", ""),
                ignore=tuple(w.get("ignore", ())),
                include=tuple(w.get("include", ())),
                initial_sync=bool(w.get("initial_sync", False)),
            )
            for w in (c.get("develop") or {}).get("watch", ())
        ),
    )


def network(key: str, c: dict[str, Any]) -> Network:
    return Network(
        key=key,
        name=c["name"],
        driver=c.get("driver", ""),
        driver_opts=dict(c.get("driver_opts", {})),
        external=bool(c.get("external")),
        internal=bool(c.get("internal")),
        attachable=bool(c.get("attachable")),
        enable_ipv6=bool(c.get("enable_ipv6")),
        ipam=dict(c.get("ipam", {})),
        labels=dict(c.get("labels", {})),
    )


def volume(key: str, c: dict[str, Any]) -> Volume:
    return Volume(
        key=key,
        name=c["name"],
        driver=c.get("driver", ""),
        driver_opts=dict(c.get("driver_opts", {})),
        external=bool(c.get("external")),
        labels=dict(c.get("labels", {})),
    )


def file_object(key: str, c: dict[str, Any]) -> FileObject:
    return FileObject(
        key=key,
        name=c["name"],
        file=c.get("file", ""),
        environment=c.get("environment", ""),
        content=c.get("content", ""),
        external=bool(c.get("external")),
    )
