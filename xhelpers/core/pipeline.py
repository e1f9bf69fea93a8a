"""The dependency graph of a selection: which results each experiment uses, in which order.

Built from the upstream placeholders experiments bind (:mod:`xhelpers.core.upstreams`)
when a selection is run or listed, so groups may be defined in any order. Every
mistake is one :class:`~xhelpers.errors.ExperimentDefinitionError` (exit 2) naming the
experiment, the placeholder and what would be valid: an unknown group, a name or pattern
matching nothing (with the closest names), an ``xh.upstream`` matching several, a cycle
(member by member).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xhelpers.core.upstreams import Upstream
from xhelpers.errors import ExperimentDefinitionError, PatternError

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["Key", "Pipeline", "build", "label"]

Key = tuple[str, str]  # (group, name): one experiment of any group
Registry = Mapping[str, "ParametrizedExperiments"]  # every defined group, by name


def label(key: Key, home: str) -> str:
    """How a run names an experiment: its name in its own group, ``group:name`` elsewhere."""
    return key[1] if key[0] == home else f"{key[0]}:{key[1]}"


@dataclass
class Pipeline:
    """The selection and every upstream it needs, transitively, in a runnable order."""

    home: str  # the selected group
    groups: dict[str, ParametrizedExperiments]
    needs: dict[Key, list[Key]] = field(default_factory=dict)  # node -> its upstreams
    answers: dict[Key, dict[Upstream, Key | list[Key]]] = field(default_factory=dict)
    order: list[Key] = field(default_factory=list)  # upstreams before their downstreams

    def downstreams(self) -> dict[Key, list[Key]]:
        """node -> the nodes that need it."""
        out: dict[Key, list[Key]] = {}
        for node, ups in self.needs.items():
            for up in ups:
                out.setdefault(up, []).append(node)
        return out

    def stages(self) -> dict[Key, int]:
        """node -> its stage: 0 without upstreams, else one more than its deepest upstream."""
        stage: dict[Key, int] = {}
        for node in self.order:
            ups = self.needs.get(node, ())
            stage[node] = 1 + max((stage[u] for u in ups), default=-1)
        return stage


def build(
    group: ParametrizedExperiments, names: Sequence[str], registry: Registry
) -> Pipeline | None:
    """The pipeline of ``names`` of ``group``; None when none of them uses an upstream."""
    if not any(name in group.upstreams for name in names):
        return None
    pipeline = Pipeline(group.name, {group.name: group})
    matches: dict[Upstream, list[str]] = {}  # (patterns repeat across a stage: ask once)
    todo: list[Key] = [(group.name, n) for n in names]
    seen = set(todo)
    while todo:
        node = todo.pop()
        owner = pipeline.groups[node[0]]
        placeholders = owner.upstreams.get(node[1], ())
        if not placeholders:
            continue
        ups: list[Key] = []
        answers: dict[Upstream, Key | list[Key]] = {}
        for ph in placeholders:
            other = _group(pipeline, ph, node, registry)
            hits = matches.get(ph)
            if hits is None:
                hits = matches[ph] = _matches(other, ph, node)
            keys = [(ph.group, h) for h in hits]
            answers[ph] = keys if ph.many else keys[0]
            ups.extend(keys)
        ups = list(dict.fromkeys(ups))
        pipeline.needs[node] = ups
        pipeline.answers[node] = answers
        for up in ups:
            if up not in seen:
                seen.add(up)
                todo.append(up)
    pipeline.order = _ordered(pipeline, [(group.name, n) for n in names])
    return pipeline


def _group(
    pipeline: Pipeline, ph: Upstream, node: Key, registry: Registry
) -> ParametrizedExperiments:
    known = pipeline.groups.get(ph.group)
    if known is not None:
        return known
    other = registry.get(ph.group)
    if other is None:
        import difflib

        close = difflib.get_close_matches(ph.group, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ExperimentDefinitionError(
            f"experiment {label(node, pipeline.home)!r}: {ph!r}: no group named "
            f"{ph.group!r} is defined{hint} (groups: {', '.join(sorted(registry)) or 'none'})",
            offending=[ph.group],
        )
    pipeline.groups[ph.group] = other
    return other


def _matches(other: ParametrizedExperiments, ph: Upstream, node: Key) -> list[str]:
    if ph.pattern in other.experiments:  # a name (element-wise stages: thousands of them)
        return [ph.pattern]
    where = f"experiment {node[0]}:{node[1]!r}: {ph!r}"
    try:
        hits = other.select(ph.pattern)
    except PatternError as exc:
        raise ExperimentDefinitionError(f"{where}: {exc}", offending=[ph.pattern]) from None
    if not ph.many and len(hits) != 1:
        shown = ", ".join(repr(h) for h in hits[:5]) + (" ..." if len(hits) > 5 else "")
        raise ExperimentDefinitionError(
            f"{where} matches {len(hits)} experiments ({shown}); name one, or use "
            f"xh.upstreams({ph.group!r}, {ph.pattern!r}) for all of them",
            offending=[ph.pattern],
        )
    return sorted(hits) if ph.many else hits


def _ordered(pipeline: Pipeline, roots: Iterable[Key]) -> list[Key]:
    """Every node reachable from ``roots``, upstreams first; a cycle is an error."""
    order: list[Key] = []
    state: dict[Key, int] = {}  # 1: on the current path, 2: placed
    needs = pipeline.needs
    for root in roots:
        if root in state:
            continue
        path: list[Key] = [root]
        stack: list[Any] = [iter(needs.get(root, ()))]
        state[root] = 1
        while stack:
            up = next(stack[-1], None)
            if up is None:
                stack.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
                continue
            seen = state.get(up)
            if seen == 2:
                continue
            if seen == 1:
                cycle = [*path[path.index(up) :], up]
                shown = " -> ".join(label(k, pipeline.home) for k in cycle)
                raise ExperimentDefinitionError(
                    f"experiments depend on each other in a cycle: {shown}; an experiment "
                    "cannot use its own result, even through others",
                    offending=[label(k, pipeline.home) for k in cycle[:-1]],
                )
            state[up] = 1
            path.append(up)
            stack.append(iter(needs.get(up, ())))
    return order
