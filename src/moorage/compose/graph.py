"""The dependency graph of a project's services: start order in levels (the services of one
level can start in parallel), the closure of a selection, and cycles named."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from moorage.compose.errors import ComposeError


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None; deterministic (sorted walk)."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(deps.get(node, ())):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(deps):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check_acyclic(deps: Mapping[str, Iterable[str]]) -> None:
    cycle = find_cycle(deps)
    if cycle:
        raise ComposeError(f"dependency cycle between services: {' -> '.join(cycle)}")


def levels(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Services in start order: level 0 needs nothing, level n needs only earlier levels.

    Dependencies on services outside ``deps`` are ignored (they are not being started).
    """
    check_acyclic(deps)
    remaining = {name: {d for d in ds if d in deps} for name, ds in deps.items()}
    out: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, ds in remaining.items() if not ds)
        out.append(ready)
        for name in ready:
            del remaining[name]
        for ds in remaining.values():
            ds.difference_update(ready)
    return out


def closure(deps: Mapping[str, Iterable[str]], selected: Iterable[str]) -> set[str]:
    """``selected`` and everything they depend on, transitively."""
    out: set[str] = set()
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        todo.extend(d for d in deps.get(name, ()) if d in deps)
    return out


def dependents(deps: Mapping[str, Iterable[str]], selected: Iterable[str]) -> set[str]:
    """``selected`` and every service that depends on them, transitively (stop order)."""
    reverse: dict[str, set[str]] = {}
    for name, ds in deps.items():
        for d in ds:
            reverse.setdefault(d, set()).add(name)
    out: set[str] = set()
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(reverse.get(name, ()))
    return out
