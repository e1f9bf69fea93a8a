"""What a run would do, and how a selection's experiments depend on each other.

``--dry-run`` plans exactly as a run does (same options, same reading of metafiles) and
prints the plan instead of running it; ``--graph`` prints the dependency structure of
the selection by stage. Past a screenful, both summarize by stage and top-level folder.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.pipeline import Key, Pipeline, build, label
from xhelpers.core.planning import RunOptions, failed_only, plan, plan_pipeline
from xhelpers.core.summary import BUSY, NOT_STARTED, QUEUED, SKIPPED, STALE

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["dry_run_text", "graph_text"]

MAX_LISTED = 60  # lines of experiments before a plan or graph is summarized

# Why an experiment would not run, in the plan's words (the run's summary counts these).
_SKIP_WHY = {
    SKIPPED: "done",
    STALE: "stale: its definition or an upstream changed (--rerun-stale reruns it)",
    BUSY: "running elsewhere",
    QUEUED: "queued (SLURM)",
    NOT_STARTED: "waits for an upstream running elsewhere",
}


def _folder_of(name: str) -> str:
    return name.split("/", 1)[0] + "/*" if "/" in name else name


def _why_run(folder: str, fresh: bool, force: bool) -> str:
    if force:
        return "forced: from an empty folder"
    if fresh:
        return "stale: from an empty folder"
    status = results.read_status(folder)
    if status is None:
        return "never run"
    return f"{status} before"


def dry_run_text(
    group: ParametrizedExperiments,
    names: list[str],
    config: BaseConfig,
    options: RunOptions,
    registry: Mapping[str, ParametrizedExperiments],
    backend: str,
) -> str:
    """The plan of a run of ``names``, in the order it would go, without running it."""
    base = results.group_prefix(config.output_directory, group.name)
    if options.retry_failed:
        names = failed_only(names, base)
    pipeline = build(group, names, registry)
    where = f"{backend}, -j{config.jobs}" if backend == "local" else backend
    lines: list[tuple[int, str, str, str]] = []  # (stage, what, name, why)
    if pipeline is None:
        to_run, skip = plan(group, names, base, options)
        for name, folder, fresh in to_run:
            lines.append((0, "run", name, _why_run(folder, fresh, options.force)))
        lines += [(0, "skip", name, _SKIP_WHY.get(why, why)) for name, why in skip.items()]
        pulled = 0
        stages: dict[Key, int] = {}
        needs: dict[Key, list[Key]] = {}
    else:
        steps = plan_pipeline(pipeline, names, str(config.output_directory), options)
        stages = pipeline.stages()
        needs = pipeline.needs
        running = {step.key for step in steps.steps}
        chosen = set(names)
        pulled = sum(1 for s in steps.steps if s.key[0] != group.name or s.key[1] not in chosen)
        for step in steps.steps:
            ups = [label(u, group.name) for u in needs.get(step.key, ()) if u in running]
            why = _why_run(step.folder, step.fresh, options.force and step.key[1] in chosen)
            if ups:
                why += "; after " + _listed(ups)
            lines.append((stages[step.key], "run", step.label, why))
        for name, why in steps.skip.items():
            stage = stages.get((group.name, name), 0)
            lines.append((stage, "skip", name, _SKIP_WHY.get(why, why)))
    runs = sum(1 for line in lines if line[1] == "run")
    chosen_text = f"{len(names)} selected" + (f" + {pulled} upstream" if pulled else "")
    head = (
        f"{group.name}: dry run ({where}): would run {runs} and skip {len(lines) - runs} "
        f"of {chosen_text}"
    )
    if not lines:
        return head
    if backend != "local" and runs:
        from xhelpers.core.runner import preview

        submission = preview(group, names, config, options, registry)
        if submission:
            head += "\n" + "\n".join(f"  {line}" for line in submission)
    lines.sort(key=lambda line: (line[0], line[1] != "run"))
    staged = pipeline is not None
    if len(lines) <= MAX_LISTED:
        width = max(len(line[2]) for line in lines)
        out = [head]
        current = -1
        for stage, what, name, why in lines:
            if staged and stage != current:
                current = stage
                out.append(f"  stage {stage}")
            indent = "    " if staged else "  "
            out.append(f"{indent}{what:<5} {name:<{width}}  {why}")
        return "\n".join(out)
    out = [head]
    by_stage: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    for stage, what, name, _ in lines:
        by_stage[stage][(what, _folder_of(name))] += 1
    for stage in sorted(by_stage):
        parts = ", ".join(f"{what} {n} {folder}" for (what, folder), n in by_stage[stage].items())
        out.append(f"  stage {stage}: {parts}" if staged else f"  {parts}")
    return "\n".join(out)


def _listed(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def graph_text(
    group: ParametrizedExperiments,
    names: list[str],
    registry: Mapping[str, ParametrizedExperiments],
) -> str:
    """The dependency structure of the selection (and its upstreams), stage by stage."""
    pipeline = build(group, names, registry)
    if pipeline is None:
        return f"{group.name}: {len(names)} selected, no experiment uses another's result"
    return _graph(pipeline)


def _graph(pipeline: Pipeline) -> str:
    home = pipeline.home
    stages = pipeline.stages()
    by_stage: dict[int, list[Key]] = defaultdict(list)
    for key in pipeline.order:
        by_stage[stages[key]].append(key)
    edges = sum(len(ups) for ups in pipeline.needs.values())
    out = [f"{home}: {len(pipeline.order)} experiments in {len(by_stage)} stages, {edges} edges"]
    small = len(pipeline.order) <= MAX_LISTED
    for stage in sorted(by_stage):
        keys = by_stage[stage]
        out.append(f"  stage {stage} ({len(keys)})")
        if small:
            for key in keys:
                ups = [label(u, home) for u in pipeline.needs.get(key, ())]
                out.append(f"    {label(key, home)}" + (f" <- {_listed(ups)}" if ups else ""))
            continue
        folders = Counter(_folder_of(label(k, home)) for k in keys)
        uses = Counter(_folder_of(label(u, home)) for k in keys for u in pipeline.needs.get(k, ()))
        line = "    " + ", ".join(f"{folder} {n}" for folder, n in folders.most_common(5))
        if uses:
            per = sum(uses.values()) / len(keys)
            line += f"; each uses {per:.3g} on average, from " + ", ".join(
                f"{folder} ({n})" for folder, n in uses.most_common(3)
            )
        out.append(line)
    return "\n".join(out)
