"""nftables through libnftables' JSON API (ctypes): one call, one kernel transaction.

Each call to :func:`run` sends a list of commands that the kernel applies all or nothing, in
about a millisecond; nothing is exec'd. Debian: ``libnftables1``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

from moorage.errors import MoorageError

NFT_CTX_OUTPUT_JSON = 1 << 4
# One libnftables call at a time. In a process: its one context is not thread-safe, and
# `compose down` tears containers' networks down from several threads at once; libnftnl
# (1.2.4, Debian 12) then met a garbled reply and exited the whole process ("nf_tables kernel
# ABI is broken ... table.c:270 reason: Numerical result out of range"). On the host: a call
# fills its cache by dumping every table while other moorage processes (conmon's exit
# commands, other stores) add and delete theirs.
HOST_LOCK = "/run/moorage-nftables.lock"
_THREADS = threading.Lock()


class NftError(MoorageError):
    """nftables refused a transaction."""


@cache
def _ctx() -> tuple[Any, Any]:
    import ctypes

    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError as e:
        raise NftError(
            f"libnftables is not installed ({e}): apt-get install libnftables1"
        ) from None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    ctx = lib.nft_ctx_new(0)
    # with JSON output set, libnftables 1.0 also parses its input as JSON
    lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON)
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return lib, ctx


def run(commands: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply ``commands`` (``{"add": {...}}``, ``{"delete": ...}``, ``{"list": ...}``) as one
    transaction; return the parsed JSON output (for ``list``)."""
    if not commands:
        return {}
    lib, ctx = _ctx()
    with _one_at_a_time():
        rc = lib.nft_run_cmd_from_buffer(ctx, json.dumps({"nftables": commands}).encode())
        out = lib.nft_ctx_get_output_buffer(ctx) or b""
        err = lib.nft_ctx_get_error_buffer(ctx) or b""
    if rc != 0:
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        raise NftError("nftables: " + ("; ".join(lines) or f"transaction failed ({rc})"))
    if not out.strip():
        return {}
    parsed: dict[str, Any] = json.loads(out)
    return parsed


@contextlib.contextmanager
def _one_at_a_time() -> Iterator[None]:
    """This process's lock, then the host's (see HOST_LOCK; where it cannot be opened, the
    process's alone)."""
    with _THREADS:
        try:
            fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def table_exists(family: str, name: str) -> bool:
    try:
        run([{"list": {"table": {"family": family, "name": name}}}])
    except NftError:
        return False
    return True


def list_ruleset() -> list[dict[str, Any]]:
    out = run([{"list": {"ruleset": None}}])
    items: list[dict[str, Any]] = out.get("nftables", [])
    return items
