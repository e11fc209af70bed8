"""Building an image from a parsed Dockerfile, step by step, as Docker's classic builder.

Every step commits an image (intermediate images are untagged, with their parent recorded);
the cache maps (parent image, instruction with expanded arguments, checksum of COPY/ADD
sources) to the image a step made, so a rebuild runs nothing that did not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from moorage.build import copy as cp
from moorage.build.context import BuildContext
from moorage.build.frontend import Dockerfile, DockerfileError, Instruction, Stage
from moorage.build.layers import layer_in_place
from moorage.build.shell import ExpansionError, process_word, process_words
from moorage.engine.images.layers import LayerInfo, known_layer, layer_from_stream
from moorage.errors import InvalidArgument, MoorageError, NotFound
from moorage.oci.digest import Digest
from moorage.store import Store

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = frozenset(
    f"{n}_PROXY" if up else f"{n.lower()}_proxy"
    for n in ("HTTP", "HTTPS", "FTP", "NO", "ALL")
    for up in (True, False)
)
# the files and directories a container runtime makes as mount points: never part of a layer
_MOUNT_POINTS = (
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "dev/shm",
    "dev/pts",
    "dev/mqueue",
    "dev/console",
    "dev",
    "proc",
    "sys",
    "run/moorage-init",
    "etc",
)


class BuildFailed(MoorageError):
    """A RUN step exited non-zero; the build exits with its code, as Docker."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "bridge"  # RUN steps: the default network (NAT out), host, none, a name
    no_cache: bool = False
    cache_from: list[str] = field(default_factory=list)
    quiet: bool = False
    pull: bool = False
    rm: bool = True
    force_rm: bool = False
    source_date_epoch: int | None = None
    # registry domain -> (user, password) for FROM images pulled (the API's X-Registry-Config;
    # the API passes only those, the CLI lets pulls use what `moor login` stored)
    registry_auth: dict[str, tuple[str, str]] = field(default_factory=dict)
    stored_credentials: bool = True


@dataclass
class StageState:
    """What a stage has built so far: the image config and layers of its last step."""

    doc: dict[str, Any]  # the whole image config document
    layers: list[LayerInfo]
    image_id: str  # "" while nothing is committed (FROM scratch)
    args: dict[str, str | None] = field(default_factory=dict)  # declared ARGs
    cmd_set: bool = False

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.doc.setdefault("config", {})
        assert isinstance(cfg, dict)
        return cfg

    def copy(self) -> StageState:
        return StageState(
            json.loads(json.dumps(self.doc)), list(self.layers), self.image_id, dict(self.args)
        )


class Progress:
    """Docker's classic builder output: ``Step i/n : ...``, `` ---> id``, ..."""

    def __init__(self, out: Callable[[str], None], quiet: bool) -> None:
        self._out = out
        self.quiet = quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            self._out(text)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _now_rfc3339(epoch: int | None) -> str:
    from moorage.units import rfc3339

    return rfc3339(float(epoch) if epoch is not None else time.time())


class Builder:
    def __init__(
        self,
        engine: Any,
        dockerfile: Dockerfile,
        context: BuildContext | None,
        options: BuildOptions,
        progress: Progress,
        run_output: tuple[BinaryIO, BinaryIO] | None = None,
    ) -> None:
        self.engine = engine
        self.store: Store = engine.store
        self.images = engine.images
        self.df = dockerfile
        self.ctx = context
        self.opts = options
        self.progress = progress
        self.run_output = run_output
        self.escape = dockerfile.escape
        self.stage_states: dict[int, StageState] = {}
        self.used_args: set[str] = set()
        self._step = 0
        self._steps = 0
        self._containers_svc: Any = None
        self._cache_from_ids: list[str] = []
        self.running: str | None = None  # the RUN step's container, while it runs

    # ---- planning -----------------------------------------------------------------------

    def meta_env(self) -> list[str]:
        """Values of the ARGs before the first FROM, for expanding FROM lines."""
        env: list[str] = []
        for ins in self.df.meta_args:
            for name, default in self._arg_pairs(ins, env):
                value = self._arg_value(name, default)
                if value is not None:
                    env = [e for e in env if e.partition("=")[0] != name] + [f"{name}={value}"]
        return env

    def _arg_value(self, name: str, default: str | None) -> str | None:
        if name in self.opts.build_args:
            self.used_args.add(name)
            given = self.opts.build_args[name]
            return given if given is not None else default
        if default is None and name in _platform_args():
            return _platform_args()[name]
        return default

    def _arg_pairs(self, ins: Instruction, env: Sequence[str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for word in ins.args:
            if not word:
                continue
            name, sep, value = word.partition("=")
            if not name:
                raise ins.error("ARG names can not be blank")
            out.append((name, self._expand(ins, value, env) if sep else None))
        return out

    def _expand(self, ins: Instruction, word: str, env: Sequence[str]) -> str:
        try:
            return process_word(word, env, self.escape)
        except ExpansionError as e:
            raise ins.error(str(e)) from None

    def needed_stages(self, target: int) -> list[int]:
        """The stages ``target`` depends on (through FROM and COPY --from), in order."""
        meta = self.meta_env()
        need: set[int] = set()
        visiting: set[int] = set()

        def visit(i: int) -> None:
            if i in need:
                return
            if i in visiting:
                raise DockerfileError(f"{self.df.file}: circular dependency between build stages")
            visiting.add(i)
            stage = self.df.stages[i]
            base = self._expand(stage.from_instr, stage.base, meta)
            dep = self._stage_ref(base, before=i)
            if dep is not None:
                visit(dep)
            for ins in stage.instructions:
                for ref in _stage_refs(ins):
                    if ref.lower() == stage.name and stage.name:
                        raise ins.error(
                            f"invalid from flag value {ref}: refers to current build stage"
                        )
                    dep = self._stage_ref(ref, before=i)
                    if dep is not None:
                        visit(dep)
            visiting.discard(i)
            need.add(i)

        visit(target)
        return sorted(need)

    def _stage_ref(self, name: str, before: int) -> int | None:
        idx = self.df.stage_index(name)
        if idx is not None and idx < before:
            return idx
        return None

    # ---- running ------------------------------------------------------------------------

    def build(self) -> str:
        """Build the target stage; returns the final image id."""
        target = len(self.df.stages) - 1
        if self.opts.target:
            idx = self.df.stage_index(self.opts.target)
            if idx is None:
                raise InvalidArgument(
                    f"failed to reach build target {self.opts.target} in Dockerfile"
                )
            target = idx
        order = self.needed_stages(target)
        # Docker: one LABEL step per --label (sorted), taken literally, after the last step
        for k, v in sorted(self.opts.labels.items()):
            self.df.stages[target].instructions.append(
                Instruction("LABEL", (k, v), {}, False, f"LABEL {k}={v}", "--label", 0,
                            expand=False)
            )  # fmt: skip
        self._steps = sum(1 + len(self.df.stages[i].instructions) for i in order)
        from moorage.build.rootfs import clean_abandoned

        clean_abandoned(self.store.root)
        self._clean_dead_build_containers()
        self._cache_from_ids = [str(self.images.resolve(r).id) for r in self.opts.cache_from]
        with self.store.adding():
            for i in order:
                self.stage_states[i] = self._run_stage(self.df.stages[i])
            final = self.stage_states[target]
            if not final.image_id:
                final = self._commit(final, "", None, history=None, force=True)
        unused = sorted(
            k for k in self.opts.build_args if k not in self.used_args and k not in PROXY_ARGS
        )
        if unused:
            self.progress.line(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed"
            )
        return final.image_id

    def _step_line(self, ins: Instruction) -> None:
        self._step += 1
        text = ins.original.replace("\n", "\n")
        self.progress.line(f"Step {self._step}/{self._steps} : {text}")

    def _run_stage(self, stage: Stage) -> StageState:
        self._step_line(stage.from_instr)
        state = self._from(stage)
        triggers = list(state.config.get("OnBuild") or [])
        state.config["OnBuild"] = None
        if triggers:
            self.progress.line(
                f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}"
            )
            from moorage.build.frontend import parse_instruction_text

            for t in triggers:
                ins = parse_instruction_text(t, f"{self.df.file}:{stage.from_instr.line}: ONBUILD")
                state = self._dispatch(stage, state, ins, announce=False)
        self.progress.line(f" ---> {_short(state.image_id)}")
        for ins in stage.instructions:
            self._step_line(ins)
            state = self._dispatch(stage, state, ins, announce=True)
        return state

    def _from(self, stage: Stage) -> StageState:
        ins = stage.from_instr
        base = self._expand(ins, stage.base, self.meta_env())
        if stage.platform:
            wanted = self._expand(
                ins,
                stage.platform,
                [*self.meta_env(), *(f"{k}={v}" for k, v in _platform_args().items())],
            )
            host = _platform_args()["TARGETPLATFORM"]
            if wanted.rstrip("/") not in (host, "linux", host.split("/")[1]):
                raise ins.error(
                    f"--platform={wanted}: only the host's platform ({host}) can be built"
                )
        if not base:
            raise ins.error("base name (" + stage.base + ") should not be blank")
        dep = self._stage_ref(base, before=stage.index)
        if dep is not None:
            state = self.stage_states[dep].copy()
            state.args = {}
            state.cmd_set = False
            return state
        if base == "scratch":
            doc: dict[str, Any] = {
                "architecture": _arch(),
                "os": "linux",
                "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            return StageState(doc, [], "")
        if self.opts.pull:  # --pull: the registry's version, even when one is here
            rec = self._pull(ins, base)
        else:
            try:
                rec = self.images.resolve(base)
            except NotFound:
                rec = self._pull(ins, base)
        state = self._load_image(str(rec.id))
        env = list(state.config.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env):
            state.config["Env"] = [*env, f"PATH={DEFAULT_PATH}"]
        return state

    def _pull(self, ins: Any, base: str) -> Any:
        """A FROM image that is not here is pulled, as Docker's builder does."""
        from moorage.engine.images.transfer import pull
        from moorage.errors import MoorageError
        from moorage.oci.reference import parse_reference

        self.progress.line(f"Pulling {base}")
        try:
            creds = self.opts.registry_auth.get(parse_reference(base).domain)
            res = pull(
                self.images,
                base,
                credentials=creds,
                stored_credentials=self.opts.stored_credentials,
            )
        except MoorageError as e:
            raise ins.error(
                f"pull access denied for {base}, repository does not exist or may require "
                f"'docker login': {e}"
            ) from None
        return self.images.get(res.image_id)

    def _load_image(self, image_id: str) -> StageState:
        digest = Digest.parse(image_id)
        rec = self.images.get(digest)
        doc = json.loads(json.dumps(self.images.config(rec)))
        layers: list[LayerInfo] = []
        for d in self.images.layers(digest):
            info = known_layer(self.store, d)
            if info is None:
                raise NotFound(f"layer {d} of image {_short(image_id)} is missing")
            layers.append(info)
        return StageState(doc, layers, image_id)

    # ---- environment --------------------------------------------------------------------

    def _env(self, state: StageState) -> list[str]:
        """Expansion environment: the config's Env, then declared build args it does not set."""
        env = list(state.config.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        for name, value in state.args.items():
            if value is not None and name not in keys:
                env.append(f"{name}={value}")
        return env

    def _run_args_env(self, state: StageState) -> list[str]:
        keys = {e.partition("=")[0] for e in state.config.get("Env") or []}
        out = [f"{k}={v}" for k, v in sorted(state.args.items()) if v is not None and k not in keys]
        for name in sorted(PROXY_ARGS):
            v = self.opts.build_args.get(name)
            if name in self.opts.build_args and name not in state.args and v is not None:
                out.append(f"{name}={v}")
        return out

    # ---- dispatch -----------------------------------------------------------------------

    def _dispatch(
        self, stage: Stage, state: StageState, ins: Instruction, *, announce: bool
    ) -> StageState:
        state = state.copy() if state.image_id else state
        cmd = ins.sub if ins.cmd == "ONBUILD" else ins.cmd
        env = self._env(state)
        cfg = state.config
        words = [a for a in ins.args if a != ""] if not ins.json else list(ins.args)
        if ins.cmd == "ONBUILD":
            trigger = ins.trigger
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
            return self._meta(state, f"ONBUILD {trigger}", ins, announce)
        if cmd == "ENV" or cmd == "LABEL":
            if len(words) % 2:
                raise ins.error(f"{cmd} must have two arguments")
            pairs = [
                (self._expand(ins, words[i], env), self._expand(ins, words[i + 1], env))
                if ins.expand
                else (words[i], words[i + 1])
                for i in range(0, len(words), 2)
            ]
            if cmd == "ENV":
                new_env = list(cfg.get("Env") or [])
                for k, v in pairs:
                    if not k:
                        raise ins.error("ENV names can not be blank")
                    _set_env(new_env, k, v)
                    env = [f"{k}={v}", *env]
                cfg["Env"] = new_env
                desc = " ".join(f"{k}={v}" for k, v in pairs)
            else:
                labels = dict(cfg.get("Labels") or {})
                labels.update(pairs)
                cfg["Labels"] = labels
                desc = " ".join(f"{k}={v}" for k, v in pairs)
            return self._meta(state, f"#(nop)  {cmd} {desc}", ins, announce)
        if cmd == "ARG":
            descs = []
            meta = {k: v for k, _, v in (e.partition("=") for e in self.meta_env())}
            for name, default in self._arg_pairs(ins, env):
                if default is None and name in meta:
                    default = meta[name]
                value = self._arg_value(name, default)
                state.args[name] = value
                descs.append(name if default is None else f"{name}={default}")
            return self._meta(state, f"#(nop)  ARG {' '.join(descs)}", ins, announce)
        if cmd in ("CMD", "ENTRYPOINT"):
            shell = list(cfg.get("Shell") or DEFAULT_SHELL)
            command = list(ins.args) if ins.json else [*shell, " ".join(words)]
            if cmd == "CMD":
                cfg["Cmd"] = command
                state.cmd_set = True
            else:
                cfg["Entrypoint"] = command
                if not state.cmd_set:
                    cfg["Cmd"] = None
            return self._meta(state, f"#(nop)  {cmd} {json.dumps(command)}", ins, announce)
        if cmd == "EXPOSE":
            ports: list[str] = []
            for w in words:
                try:
                    ports += process_words(w, env, self.escape)
                except ExpansionError as e:
                    raise ins.error(str(e)) from None
            from moorage.oci.config import _ChangeError, _expose

            try:
                expanded = _expose(ports)
            except _ChangeError as e:
                raise ins.error(str(e)) from None
            exposed = dict(cfg.get("ExposedPorts") or {})
            for p in expanded:
                exposed[p] = {}
            cfg["ExposedPorts"] = exposed
            return self._meta(state, f"#(nop)  EXPOSE {' '.join(expanded)}", ins, announce)
        if cmd == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for w in words:
                v = self._expand(ins, w, env)
                if not v.strip():
                    raise ins.error("VOLUME specified can not be an empty string")
                vols[v] = {}
            cfg["Volumes"] = vols
            return self._meta(state, f"#(nop)  VOLUME {json.dumps(words)}", ins, announce)
        if cmd == "USER":
            cfg["User"] = self._expand(ins, words[0], env)
            return self._meta(state, f"#(nop)  USER {cfg['User']}", ins, announce)
        if cmd == "STOPSIGNAL":
            sig = self._expand(ins, words[0], env)
            from moorage.engine.containers.parse import parse_stop_signal

            try:
                parse_stop_signal(sig)
            except InvalidArgument as e:
                raise ins.error(str(e)) from None
            cfg["StopSignal"] = sig
            return self._meta(state, f"#(nop)  STOPSIGNAL {sig}", ins, announce)
        if cmd == "MAINTAINER":
            state.doc["author"] = " ".join(words)
            return self._meta(state, f"#(nop)  MAINTAINER {state.doc['author']}", ins, announce)
        if cmd == "SHELL":
            if not ins.json:
                raise ins.error("SHELL requires the arguments to be in JSON form")
            cfg["Shell"] = list(ins.args)
            return self._meta(state, f"#(nop)  SHELL {json.dumps(list(ins.args))}", ins, announce)
        if cmd == "HEALTHCHECK":
            cfg["Healthcheck"] = self._healthcheck(ins, words)
            return self._meta(
                state, f"#(nop)  HEALTHCHECK {json.dumps(cfg['Healthcheck'])}", ins, announce
            )
        if cmd == "WORKDIR":
            path = self._expand(ins, words[0], env)
            cur = cfg.get("WorkingDir") or "/"
            path = posixpath.normpath(posixpath.join(cur, path))
            cfg["WorkingDir"] = path
            return self._workdir(state, path, ins, announce)
        if cmd == "RUN":
            return self._run(state, ins, announce)
        if cmd in ("COPY", "ADD"):
            return self._copy(state, ins, env, announce)
        raise ins.error(f"unknown instruction: {cmd}")

    def _healthcheck(self, ins: Instruction, words: list[str]) -> dict[str, Any]:
        from moorage.oci.config import _ChangeError, _parse_duration

        if words and words[0].upper() == "NONE" and not ins.json:
            if len(words) > 1 or ins.flags:
                raise ins.error("HEALTHCHECK NONE takes no arguments")
            return {"Test": ["NONE"]}
        if not words or words[0].upper() != "CMD":
            raise ins.error(
                'Unknown type "' + (words[0] if words else "") + '" in HEALTHCHECK (try CMD)'
            )
        out: dict[str, Any] = {}
        if ins.json:
            out["Test"] = ["CMD", *ins.args[1:]]
        else:
            rest = ins.original.split(None, 1)[1]
            body = rest[rest.upper().index("CMD") + 3 :].strip()
            out["Test"] = ["CMD-SHELL", body]
        for flag, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            v = ins.flag(flag)
            if v:
                try:
                    ns = _parse_duration(v, flag)
                except _ChangeError as e:
                    raise ins.error(str(e)) from None
                if ns and ns < 1_000_000:
                    raise ins.error(f"{flag} cannot be less than 1ms")
                out[key] = ns
        r = ins.flag("retries")
        if r:
            if not r.lstrip("-").isdigit() or int(r) < 0:
                raise ins.error("--retries cannot be negative")
            out["Retries"] = int(r)
        return out

    # ---- committing ---------------------------------------------------------------------

    def _key(self, state: StageState, *parts: str) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps([state.image_id, state.doc.get("config"), *parts], sort_keys=True).encode()
        )
        return "sha256:" + h.hexdigest()

    def _cached(self, state: StageState, key: str, created_by: str) -> StageState | None:
        """The image a step made before: from the local cache or, with ``--cache-from``,
        from those images' history only (the classic builder's rules)."""
        if self.opts.no_cache:
            return None
        if self._cache_from_ids:
            return self._from_cache_sources(state, key, created_by)
        row = self.store.db.conn.execute(
            "SELECT image_id FROM build_cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        try:
            return self._load_image(row["image_id"])
        except NotFound:
            return None

    def _from_cache_sources(
        self, state: StageState, key: str, created_by: str
    ) -> StageState | None:
        """A ``--cache-from`` image whose history continues ours with this very step: reuse
        its layer (if the step made one) under the config we computed."""
        mine = [
            (h.get("created_by"), bool(h.get("empty_layer")))
            for h in state.doc.get("history") or []
        ]
        n_layers = len(state.layers)
        for source_id in self._cache_from_ids:
            src = self._load_image(source_id)
            hist = src.doc.get("history") or []
            theirs = [(h.get("created_by"), bool(h.get("empty_layer"))) for h in hist]
            if len(theirs) <= len(mine) or theirs[: len(mine)] != mine:
                continue
            if [li.diff_id for li in src.layers[:n_layers]] != [li.diff_id for li in state.layers]:
                continue
            step = hist[len(mine)]
            if step.get("created_by") != created_by:
                continue
            empty = bool(step.get("empty_layer"))
            if not empty and len(src.layers) <= n_layers:
                continue
            layer = None if empty else src.layers[n_layers]
            history = {"created_by": created_by, **({"empty_layer": True} if empty else {})}
            return self._commit(state, key, layer, history=history)
        return None

    def _hit(self, state: StageState, hit: StageState, announce: bool) -> StageState:
        hit.args, hit.cmd_set = state.args, state.cmd_set
        if announce:
            self.progress.line(" ---> Using cache")
            self.progress.line(f" ---> {_short(hit.image_id)}")
        return hit

    def _meta(
        self, state: StageState, created_by: str, ins: Instruction, announce: bool
    ) -> StageState:
        """A step that changes only the config."""
        key = self._key(state, "meta", created_by, str(state.doc.get("author")))
        hit = self._cached(state, key, "/bin/sh -c " + created_by)
        if hit is not None:
            return self._hit(state, hit, announce)
        new = self._commit(
            state,
            key,
            None,
            history={"created_by": "/bin/sh -c " + created_by, "empty_layer": True},
        )
        if announce:
            self.progress.line(f" ---> {_short(new.image_id)}")
        return new

    def _commit(
        self,
        state: StageState,
        key: str,
        layer: LayerInfo | None,
        *,
        history: dict[str, Any] | None,
        force: bool = False,
    ) -> StageState:
        from moorage.engine.images.layers import manifest_for, record_image
        from moorage.oci import mediatypes as mt

        doc = json.loads(json.dumps(state.doc))
        created = _now_rfc3339(self.opts.source_date_epoch)
        doc["created"] = created
        layers = list(state.layers)
        if layer is not None:
            layers.append(layer)
        doc["rootfs"] = {"type": "layers", "diff_ids": [str(li.diff_id) for li in layers]}
        if history is not None:
            doc["history"] = [*(doc.get("history") or []), {"created": created, **history}]
        cfg = doc.get("config") or {}
        for k in ("OnBuild",):
            if not cfg.get(k):
                cfg.pop(k, None)
        raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        config_digest = self.store.content.put(raw)
        record_image(
            self.store,
            manifest=manifest_for(config_digest, len(raw), layers),
            manifest_media_type=mt.OCI_MANIFEST,
            config_digest=config_digest,
            created=created,
            os_name=str(doc.get("os") or "linux"),
            architecture=str(doc.get("architecture") or ""),
            layers=layers,
        )
        with self.store.db.transaction() as conn:
            if state.image_id and state.image_id != str(config_digest):
                conn.execute(
                    "UPDATE images SET parent = ? WHERE id = ? AND parent = ''",
                    (state.image_id, str(config_digest)),
                )
            if key:
                conn.execute(
                    "INSERT OR REPLACE INTO build_cache(key, image_id, created) VALUES (?, ?, ?)",
                    (key, str(config_digest), time.time()),
                )
        del force
        return StageState(doc, layers, str(config_digest), state.args, state.cmd_set)

    def _layer_from_upper(self, upper: Path) -> LayerInfo | None:
        """The changes in ``upper`` as a layer; None if there are none."""
        from moorage.store.layerwriter import write_layer

        if not os.listdir(upper):
            return None
        with tempfile.TemporaryFile(dir=self.store.content.ingest_dir) as tmp:
            write_layer(upper, tmp, clamp_mtime=self.opts.source_date_epoch)
            tmp.seek(0)
            return layer_from_stream(self.store, tmp)

    def _lowers(self, state: StageState) -> list[Path]:
        return [self.store.snapshots.diff_dir(li.diff_id) for li in reversed(state.layers)]

    # ---- WORKDIR, COPY/ADD --------------------------------------------------------------

    def _workdir(
        self, state: StageState, path: str, ins: Instruction, announce: bool
    ) -> StageState:
        from moorage.build.rootfs import scratch_root

        created_by = f"#(nop) WORKDIR {path}"
        key = self._key(state, "workdir", path)
        hit = self._cached(state, key, "/bin/sh -c " + created_by)
        if hit is not None:
            return self._hit(state, hit, announce)
        layer = None
        lowers = self._lowers(state)

        def make_workdir(diff: Path) -> None:
            with scratch_root(self.store.root, lowers, upper_dir=diff) as (merged, _):
                if not cp.in_root(merged, path).is_dir():
                    try:
                        cp.mkdirs(merged, path, None)
                    except (InvalidArgument, OSError) as e:
                        raise ins.error(f"cannot create the working directory: {e}") from None

        layer = layer_in_place(self.store, make_workdir, clamp_mtime=self.opts.source_date_epoch)
        new = self._commit(
            state,
            key,
            layer,
            history={
                "created_by": "/bin/sh -c " + created_by,
                **({} if layer else {"empty_layer": True}),
            },
        )
        if announce:
            self.progress.line(f" ---> {_short(new.image_id)}")
        return new

    def _copy(
        self, state: StageState, ins: Instruction, env: list[str], announce: bool
    ) -> StageState:
        from moorage.build.rootfs import scratch_root

        cmd = ins.sub or ins.cmd
        words = list(ins.args) if ins.json else [a for a in ins.args if a]
        if len(words) < 2:
            raise ins.error(f"{cmd} requires at least two arguments")
        heredocs = {h.name: h for h in ins.heredocs}
        expanded: list[str] = []
        for w in words:
            if w.startswith("<<") and w.lstrip("<-").strip("\"'") in heredocs:
                expanded.append(w)
            else:
                expanded.append(self._expand(ins, w, env))
        *sources, dest = expanded
        workdir = state.config.get("WorkingDir") or "/"
        dest_abs = dest if dest.startswith("/") else posixpath.join(workdir, dest)
        dest_is_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "..")
        chown = ins.flag("chown")
        if chown:
            chown = self._expand(ins, chown, env)
        chmod_s = ins.flag("chmod")
        chmod: int | None = None
        if chmod_s:
            try:
                chmod = int(chmod_s, 8)
            except ValueError:
                raise ins.error(f"invalid chmod parameter {chmod_s!r}") from None
        from_ref = ins.flag("from") if cmd == "COPY" else None
        checksum_flag = ins.flag("checksum") if cmd == "ADD" else None
        # resolve the sources and their checksum (the cache key) before touching anything
        src_state: StageState | None = None
        plan: list[tuple[str, Any]] = []  # (kind, payload)
        multi = len(sources) > 1
        key_parts: list[str] = [cmd, json.dumps(expanded), chown or "", chmod_s or ""]
        if from_ref is not None:
            dep = self._stage_ref(from_ref, before=len(self.df.stages))
            if dep is not None and dep in self.stage_states:
                src_state = self.stage_states[dep]
            else:
                try:
                    rec = self.images.resolve(from_ref)
                except NotFound:
                    raise ins.error(
                        f"invalid from flag value {from_ref}: no stage or image of that name"
                    ) from None
                src_state = self._load_image(str(rec.id))
            key_parts.append(
                "from:"
                + src_state.image_id
                + ":"
                + json.dumps([li.diff_id.hex for li in src_state.layers])
            )
        for src in sources:
            if src.startswith("<<"):
                doc = heredocs[src.lstrip("<-").strip("\"'")]
                content = self._expand(ins, doc.content, env) if doc.expand else doc.content
                plan.append(("heredoc", (doc.name, content)))
                key_parts.append("heredoc:" + hashlib.sha256(content.encode()).hexdigest())
                continue
            if cmd == "ADD" and (src.startswith("http://") or src.startswith("https://")):
                plan.append(("url", src))
                key_parts.append(f"url:{src}:{checksum_flag or ''}")
                continue
            if src_state is not None:
                plan.append(("stage", src))
                multi = multi or any(c in src for c in "*?[")
                continue
            if checksum_flag:
                raise ins.error("checksum can't be specified for non-HTTP(S) sources")
            if self.ctx is None:
                raise ins.error(f"{cmd} failed: no build context (the Dockerfile came from stdin)")
            rels = self._context_sources(ins, cmd, src)
            if len(rels) > 1 or any(c in src for c in "*?["):
                multi = True
            # a named source that is a symlink is followed inside the context, as Docker does
            resolved = [self._in_context(rel) for rel in rels]
            for rel in rels:
                plan.append(("context", rel))
            key_parts.append("ctx:" + self.ctx.checksum(resolved) + json.dumps(rels))
        if multi and not dest_is_dir:
            raise ins.error(
                f"When using {cmd} with more than one source file, the destination must be a "
                "directory and end with a /"
            )
        key = self._key(state, *key_parts)
        # like Docker's "COPY file:<hash> in /dst": the history names the sources' content
        sources_hash = hashlib.sha256(json.dumps(key_parts[1:]).encode()).hexdigest()
        kind = "multi" if multi else "file"
        created_by = f"/bin/sh -c #(nop) {cmd} {kind}:{sources_hash} in {dest} "
        hit = self._cached(state, key, created_by)
        if hit is not None:
            return self._hit(state, hit, announce)
        lowers = self._lowers(state)

        def make_copy(diff: Path) -> None:
            with contextlib.ExitStack() as stack:
                merged, _ = stack.enter_context(
                    scratch_root(self.store.root, lowers, upper_dir=diff)
                )
                src_merged: Path | None = None
                if src_state is not None:
                    src_merged, _ = stack.enter_context(
                        scratch_root(self.store.root, self._lowers(src_state))
                    )
                owner = cp.resolve_owner(chown, cp.read_in_root(merged)) if chown else None
                try:
                    for kind, payload in plan:
                        if kind == "context":
                            assert self.ctx is not None
                            self._copy_from(
                                ins,
                                self.ctx.root,
                                payload,
                                merged,
                                dest_abs,
                                dest_is_dir,
                                owner,
                                chmod,
                                extract=cmd == "ADD",
                                context=True,
                            )
                        elif kind == "stage":
                            assert src_merged is not None
                            src = str(payload)
                            for rel in self._stage_sources(ins, cmd, src_merged, src):
                                self._copy_from(
                                    ins,
                                    src_merged,
                                    rel,
                                    merged,
                                    dest_abs,
                                    dest_is_dir,
                                    owner,
                                    chmod,
                                    extract=False,
                                    context=False,
                                )
                        elif kind == "heredoc":
                            name, content = payload
                            target = dest_abs if not dest_is_dir else posixpath.join(dest_abs, name)
                            cp.mkdirs(merged, posixpath.dirname(target), owner)
                            host = cp.in_root(merged, target)
                            host.write_text(content)
                            os.chmod(host, chmod if chmod is not None else 0o644)
                            o = owner or cp.Owner(0, 0)
                            os.lchown(host, o.uid, o.gid)
                        elif kind == "url":
                            self._add_url(
                                ins,
                                str(payload),
                                merged,
                                dest_abs,
                                dest_is_dir,
                                owner,
                                chmod,
                                checksum_flag,
                            )
                except OSError as e:
                    raise ins.error(
                        f"{cmd} failed: {e.strerror or e}: {e.filename or ''}"
                    ) from None
                except DockerfileError:
                    raise
                except InvalidArgument as e:
                    raise ins.error(f"{cmd} failed: {e}") from None

        layer = layer_in_place(self.store, make_copy, clamp_mtime=self.opts.source_date_epoch)
        new = self._commit(
            state,
            key,
            layer,
            history={"created_by": created_by, **({} if layer else {"empty_layer": True})},
        )
        if announce:
            self.progress.line(f" ---> {_short(new.image_id)}")
        return new

    def _in_context(self, rel: str) -> str:
        """``rel`` with its symlinks resolved inside the context root."""
        assert self.ctx is not None
        if rel in ("", "."):
            return rel
        real = os.path.relpath(cp.in_root(self.ctx.root, rel), self.ctx.root)
        return "" if real == "." else real

    def _stage_sources(self, ins: Instruction, cmd: str, root: Path, src: str) -> list[str]:
        """Paths (relative to ``root``) a COPY --from source names; wildcards in its last
        component are matched against that directory."""
        import fnmatch

        head, base = posixpath.split(posixpath.normpath("/" + src))
        if not any(c in base for c in "*?["):
            host = cp.in_root(root, src)
            if not os.path.lexists(host):
                raise ins.error(f"{cmd} failed: stat {src}: file does not exist")
            return [os.path.relpath(host, root)]
        if any(c in head for c in "*?["):
            raise ins.error(f"{cmd} --from: wildcards are only supported in the last component")
        parent = cp.in_root(root, head)
        try:
            names = sorted(n for n in os.listdir(parent) if fnmatch.fnmatchcase(n, base))
        except OSError:
            names = []
        if not names:
            raise ins.error(f"{cmd} failed: no source files were specified")
        return [os.path.relpath(parent / n, root) for n in names]

    def _context_sources(self, ins: Instruction, cmd: str, src: str) -> list[str]:
        assert self.ctx is not None
        clean = posixpath.normpath("/" + src).lstrip("/") if src not in ("", ".", "/") else ""
        raw = posixpath.normpath(src)
        if raw == ".." or raw.startswith("../"):
            raise ins.error(f"{cmd} failed: forbidden path outside the build context: {src} ()")
        if any(c in src for c in "*?["):
            import fnmatch

            pattern = clean
            depth = pattern.count("/")
            rels = [
                rel
                for rel in self.ctx.entries()
                if rel.count("/") == depth and _path_match(pattern, rel, fnmatch)
            ]
            if not rels:
                raise ins.error(f"{cmd} failed: no source files were specified")
            return rels
        if not self.ctx.exists(clean):
            raise ins.error(
                f"{cmd} failed: file not found in build context or excluded by "
                f".dockerignore: stat {src}: file does not exist"
            )
        return [clean]

    def _copy_from(
        self,
        ins: Instruction,
        src_root: Path,
        rel: str,
        merged: Path,
        dest: str,
        dest_is_dir: bool,
        owner: cp.Owner | None,
        chmod: int | None,
        *,
        extract: bool,
        context: bool,
    ) -> None:
        import stat as st_mod

        # the named source itself is followed (inside its root), as Docker does
        host = cp.in_root(src_root, rel) if rel not in ("", ".") else src_root
        st = os.stat(host)
        if st_mod.S_ISDIR(st.st_mode):
            existed = cp.in_root(merged, dest).is_dir()
            # Docker: parents made as root, the destination itself owned like its content
            dest_host = cp.mkdirs(merged, dest, None)
            if not existed and owner is not None:
                os.lchown(dest_host, owner.uid, owner.gid)
            if context and self.ctx is not None:
                real = self._in_context(rel)
                base = "" if real in ("", ".") else real + "/"
                entries = [(e.rel[len(base) :], e.st) for e in self.ctx.children(real)]
                cp.copy_tree(host, entries, dest_host, owner, chmod)
            else:
                cp.copy_tree(host, cp.walk_dir(host), dest_host, owner, chmod)
            return
        if extract and cp.is_archive(host):
            cp.extract_archive(host, merged, dest)
            return
        target = posixpath.join(dest, posixpath.basename(rel)) if dest_is_dir else dest
        if not dest_is_dir and cp.in_root(merged, dest).is_dir():
            target = posixpath.join(dest, posixpath.basename(rel))
        cp.mkdirs(merged, posixpath.dirname(target), owner)
        cp.copy_entry(host, st, cp.in_root(merged, target), owner, chmod)

    def _add_url(
        self,
        ins: Instruction,
        url: str,
        merged: Path,
        dest: str,
        dest_is_dir: bool,
        owner: cp.Owner | None,
        chmod: int | None,
        checksum: str | None,
    ) -> None:
        import urllib.parse
        import urllib.request

        name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
        target = posixpath.join(dest, name) if dest_is_dir else dest
        cp.mkdirs(merged, posixpath.dirname(target), owner)
        host = cp.in_root(merged, target)
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(host, "wb") as out:
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                modified = resp.headers.get("Last-Modified")
        except OSError as e:
            raise ins.error(f"ADD failed: cannot download {url}: {e}") from None
        if checksum and checksum != "sha256:" + h.hexdigest():
            raise ins.error(
                f"ADD failed: digest mismatch for {url}: expected {checksum}, "
                f"got sha256:{h.hexdigest()}"
            )
        os.chmod(host, chmod if chmod is not None else 0o600)
        o = owner or cp.Owner(0, 0)
        os.lchown(host, o.uid, o.gid)
        if modified:
            from email.utils import parsedate_to_datetime

            with contextlib.suppress(ValueError, TypeError):
                ts = parsedate_to_datetime(modified).timestamp()
                os.utime(host, (ts, ts))

    # ---- RUN ----------------------------------------------------------------------------

    def _containers(self) -> Any:
        if self._containers_svc is None:
            from moorage.engine.containers.service import ContainerService

            self._containers_svc = ContainerService(self.store, self.images)
        return self._containers_svc

    def _clean_dead_build_containers(self) -> None:
        """Remove RUN containers a killed build left (their builder's pid is gone)."""
        svc = self._containers()
        rows = self.store.db.conn.execute("SELECT id, spec FROM containers").fetchall()
        for r in rows:
            labels = json.loads(r["spec"]).get("labels") or {}
            pid = labels.get("moorage.build.pid")
            if pid is None:
                continue
            if _pid_alive(int(pid)) and labels.get("moorage.build.start") == _start_time(int(pid)):
                continue
            with contextlib.suppress(MoorageError):
                svc.remove(r["id"], force=True)

    def _run(self, state: StageState, ins: Instruction, announce: bool) -> StageState:
        from moorage.engine.containers.spec import ContainerSpec

        cfg = state.config
        if ins.heredocs and not ins.json:
            doc = ins.heredocs[0]
            first = ins.args[0] if ins.args else ""
            script = doc.content
            if (
                first.startswith("<<")
                and first.lstrip("<-").strip("\"'") == doc.name
                and len([a for a in ins.args if a]) == 1
            ):
                command = [*(cfg.get("Shell") or DEFAULT_SHELL), script]
            else:
                shell_cmd = ins.original.split("\n", 1)[0].split(None, 1)[1]
                for flag in ins.flags:
                    shell_cmd = (
                        shell_cmd.split(None, 1)[1]
                        if shell_cmd.startswith(f"--{flag}")
                        else shell_cmd
                    )
                command = [
                    *(cfg.get("Shell") or DEFAULT_SHELL),
                    shell_cmd + "\n" + script + doc.name,
                ]
                command[-1] = shell_cmd + "\n" + script + doc.name + "\n"
        elif ins.json:
            command = list(ins.args)
        else:
            command = [*(cfg.get("Shell") or DEFAULT_SHELL), " ".join(a for a in ins.args if a)]
        from moorage.build.mounts import parse_mount

        try:
            mounts = [parse_mount(m) for m in ins.flags.get("mount", [])]
        except InvalidArgument as e:
            raise ins.error(str(e)) from None
        args_env = self._run_args_env(state)
        # undeclared proxy args reach the RUN but not its history or cache key, as in Docker
        declared = [e for e in args_env if e.partition("=")[0] in state.args]
        created_by = (f"|{len(declared)} {' '.join(declared)} " if declared else "") + " ".join(
            command
        )
        key = self._key(
            state, "run", json.dumps(command), json.dumps(declared), *ins.flags.get("mount", [])
        )
        hit = self._cached(state, key, created_by)
        if hit is not None:
            return self._hit(state, hit, announce)
        if not state.image_id:
            state = self._commit(state, "", None, history=None)
        network = ins.flag("network") or "default"
        if network not in ("default", "host", "none"):
            raise ins.error(f"RUN --network={network}: only default, host and none are supported")
        if network == "default":
            network = self.opts.network  # the build's --network: the bridge unless said
        svc = self._containers()
        pid = os.getpid()
        spec = ContainerSpec(
            image=state.image_id,
            name=f"moorage-build-{os.urandom(6).hex()}",
            entrypoint="",
            args=tuple(command),
            env=tuple(args_env),
            network_mode=network,
            labels={"moorage.build.pid": str(pid), "moorage.build.start": _start_time(pid)},
        )
        rec = svc.create(spec)
        keep = not self.opts.rm and not self.opts.force_rm
        ok = False
        try:
            # inside the try: output that fails (an API client gone) still removes it
            self.progress.line(f" ---> Running in {rec.id[:12]}")
            with contextlib.ExitStack() as mounted:
                if mounts:
                    self._prepare_mounts(ins, svc, rec, mounts, mounted)
                self.running = rec.id
                try:
                    code = self._run_container(svc, rec, before_cleanup=mounted.close)
                finally:
                    self.running = None
            if code != 0:
                raise BuildFailed(
                    f"The command '{' '.join(command)}' returned a non-zero code: {code}", code
                )
            upper = svc.overlay(rec.id) / "diff"
            _drop_mount_points(upper, self._lowers(state))
            if keep:  # the container keeps its upper dir: the layer is a copy of it
                layer = self._layer_from_upper(upper)
            else:

                def adopt(diff: Path) -> None:
                    os.rmdir(diff)
                    os.rename(upper, diff)

                layer = layer_in_place(self.store, adopt, clamp_mtime=self.opts.source_date_epoch)
            new = self._commit(
                state,
                key,
                layer,
                history={"created_by": created_by, **({} if layer else {"empty_layer": True})},
            )
            ok = True
        finally:
            if not keep:
                with contextlib.suppress(MoorageError):
                    svc.remove(rec.id, force=True)
                if ok:
                    self.progress.line(f"Removing intermediate container {rec.id[:12]}")
        if announce:
            self.progress.line(f" ---> {_short(new.image_id)}")
        return new

    def _prepare_mounts(
        self, ins: Instruction, svc: Any, rec: Any, mounts: list[Any], stack: contextlib.ExitStack
    ) -> None:
        """Mount the RUN's ``--mount``s on its root filesystem before the runtime starts."""
        from moorage.build.mounts import mounted
        from moorage.build.rootfs import scratch_root

        sources: dict[str, Path] = {}
        if self.ctx is not None:
            sources[""] = self.ctx.root
        for m in mounts:
            if m.type != "bind" or not m.from_ or m.from_ in sources:
                continue
            dep = self._stage_ref(m.from_, before=len(self.df.stages))
            if dep is not None and dep in self.stage_states:
                src_state = self.stage_states[dep]
            else:
                try:
                    src_state = self._load_image(str(self.images.resolve(m.from_).id))
                except NotFound:
                    raise ins.error(f"mount from {m.from_!r}: no such stage or image") from None
            merged, _ = stack.enter_context(scratch_root(self.store.root, self._lowers(src_state)))
            sources[m.from_] = merged
        rootfs = svc.mount_rootfs(rec)
        try:
            stack.enter_context(
                mounted(rootfs, svc.overlay(rec.id) / "diff", mounts, self.store.root, sources)
            )
        except InvalidArgument as e:
            raise ins.error(str(e)) from None

    def _run_container(
        self, svc: Any, rec: Any, before_cleanup: Callable[[], None] | None = None
    ) -> int:
        from moorage.engine.containers import attach as att
        from moorage.store.locks import flocked

        lock = svc.attached_lock(rec.id)
        lock.parent.mkdir(parents=True, exist_ok=True)
        box: list[Any] = []
        with flocked(lock, exclusive=True):
            svc.start(rec.id, attach=lambda p: box.append(att.connect(p)))
            if self.run_output is not None and not self.progress.quiet:
                out, err = self.run_output
                att.relay(box[0], stdin=None, stdout=out, stderr=err, tty=False)
            else:
                with open(os.devnull, "wb") as devnull:
                    att.relay(box[0], stdin=None, stdout=devnull, stderr=devnull, tty=False)
            exit_file = svc.layout(rec.id).exit_file(rec.id)
            deadline = time.monotonic() + 10
            code = 125
            while time.monotonic() < deadline:
                try:
                    code = int(exit_file.read_text().strip() or 0)
                    break
                except (FileNotFoundError, ValueError):
                    time.sleep(0.005)
            if before_cleanup is not None:
                before_cleanup()
            svc.cleanup(rec.id)
        return code


# ---- helpers ------------------------------------------------------------------------------


def _stage_refs(ins: Instruction) -> list[str]:
    """The stages (or images) an instruction reads from: COPY --from, RUN --mount from=."""
    if ins.cmd == "COPY" and ins.flag("from") is not None:
        return [str(ins.flag("from"))]
    if ins.cmd == "RUN":
        refs = []
        for m in ins.flags.get("mount", []):
            for part in m.split(","):
                key, _, value = part.partition("=")
                if key.strip().lower() == "from" and value:
                    refs.append(value)
        return refs
    return []


def _set_env(env: list[str], key: str, value: str) -> None:
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            return
    env.append(f"{key}={value}")


def _path_match(pattern: str, rel: str, fnmatch: Any) -> bool:
    pp = pattern.split("/")
    rp = rel.split("/")
    if len(pp) != len(rp):
        return False
    return all(fnmatch.fnmatchcase(r, p) for p, r in zip(pp, rp, strict=True))


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _platform_args() -> dict[str, str]:
    arch = _arch()
    plat = f"linux/{arch}"
    return {
        "TARGETPLATFORM": plat,
        "TARGETOS": "linux",
        "TARGETARCH": arch,
        "TARGETVARIANT": "",
        "BUILDPLATFORM": plat,
        "BUILDOS": "linux",
        "BUILDARCH": arch,
        "BUILDVARIANT": "",
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> str:
    """A process's start time (so a reused pid is not mistaken for the builder)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[data.rfind(b")") + 2 :].split()[19].decode()


def _drop_mount_points(upper: Path, lowers: Sequence[Path]) -> None:
    """Remove what the runtime created in ``upper`` as mount points (empty files and dirs
    that no lower layer has), as Docker's init layer keeps them out of a RUN's layer."""
    import stat

    def in_lower(rel: str) -> os.stat_result | None:
        for low in lowers:
            try:
                return os.lstat(low / rel)
            except OSError:
                continue
        return None

    for rel in _MOUNT_POINTS:
        p = upper / rel
        try:
            st = os.lstat(p)
        except OSError:
            continue
        low = in_lower(rel)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and low is None:
            os.unlink(p)
        elif stat.S_ISDIR(st.st_mode) and not os.listdir(p):
            same = (
                low is not None
                and stat.S_ISDIR(low.st_mode)
                and (low.st_mode, low.st_uid, low.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
            )
            if low is None or same:
                with contextlib.suppress(OSError):
                    os.rmdir(p)


def stdio() -> tuple[BinaryIO, BinaryIO]:
    return sys.stdout.buffer, sys.stderr.buffer
