"""Planning a run: what to run, what to skip and why, from what is on disk now.

Decided from each metafile's first bytes (status and fingerprint), so a run over
100,000 finished experiments reads little; submitted or orphaned ones ask their
backend, in one query per backend. A pipeline (experiments using others' results) is
planned as a whole: the not-done upstreams of the selection join the run, and a done
downstream whose upstreams changed since is stale.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from xhelpers.core import jobs, results
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.core.pipeline import Key, Pipeline, label
from xhelpers.core.summary import BUSY, NOT_STARTED, QUEUED, SKIPPED, STALE
from xhelpers.errors import ExperimentDefinitionError

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = [
    "PipelinePlan",
    "RunOptions",
    "Step",
    "failed_only",
    "plan",
    "plan_pipeline",
    "upstreams_changed",
]

logger = logging.getLogger(__name__)

_RETRYABLE = (results.FAILED, results.INTERRUPTED, results.BLOCKED)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run, beyond the config: what the CLI's flags say."""

    force: bool = False  # rerun done experiments from an empty folder
    rerun_stale: bool = False  # rerun results whose definition changed
    retry_failed: bool = False  # run only failed and interrupted experiments
    backend: str | None = None  # None: "slurm" when config.slurm, else "local"
    post_mortem: bool = False  # pdb at a failure (-j1)
    progress: bool | None = None  # None: when stderr is a terminal
    wait: bool = True  # False: submit, report, return (a backend that can detach)
    patterns: tuple[str, ...] = ()  # as given, for the hints printed to the user
    no_upstream: bool = False  # refuse (naming them) instead of running not-done upstreams


def plan(
    group: ParametrizedExperiments,
    names: Sequence[str],
    base: str,
    options: RunOptions,
    fingerprints: Fingerprints | None = None,
) -> tuple[list[tuple[str, str, bool]], dict[str, str]]:
    """Split selected names into what to run and {name: why not} for the rest.

    What to run is (name, folder, fresh): fresh ones start from an empty folder (stale
    results rerun on request: a changed definition must not resume old checkpoints).
    ``fingerprints``: the run's (at its config's scope), else at the default scope.
    """
    to_run: list[tuple[str, str, bool]] = []
    skip: dict[str, str] = {}
    submitted: dict[str, str] = {}
    experiments = group.experiments
    fps = fingerprints if fingerprints is not None else Fingerprints()
    narrower: dict[str, int] = {}  # scope -> results current when compared only there
    heads = results.read_heads(base, names)
    for name, (status, fp) in zip(names, heads, strict=True):
        if status is None:
            to_run.append((name, base + name, False))
        elif status == results.DONE and not options.force:
            if fp is not None and not _current(fps, experiments[name], fp, base + name, narrower):
                if options.rerun_stale:
                    to_run.append((name, base + name, True))
                else:
                    skip[name] = STALE
            else:
                skip[name] = SKIPPED
        elif status in (results.RUNNING, results.SUBMITTED) and results.is_locked(base + name):
            skip[name] = BUSY
        elif status in (results.SUBMITTED, results.RUNNING):
            # running with a free lock: its runner died, or its node under its SLURM job,
            # which SLURM may have requeued
            submitted[name] = base + name
        else:
            to_run.append((name, base + name, False))
    if submitted:  # one query per backend for all of them, and only when there are any
        queued = jobs.still_queued(_metafiles(submitted))  # none for metafiles without refs
        for name, folder in submitted.items():
            if name in queued:
                skip[name] = QUEUED
            else:  # its job is gone (cancelled, ended for good) or it had none: run it again
                to_run.append((name, folder, False))
        order = {name: i for i, name in enumerate(names)}  # run in selection order still
        to_run.sort(key=lambda item: order[item[0]])
    for scope, count in narrower.items():
        logger.info(
            "%d done result%s recorded at another fingerprint scope compared by %s only "
            "(this run's scope: %s); --force reruns them to record it",
            count,
            "s" if count > 1 else "",
            scope,
            fps.scope,
        )
    return to_run, skip


def _current(fps: Fingerprints, fn: Any, head: str, folder: str, narrower: dict[str, int]) -> bool:
    """Whether a done result is current; counts those compared at a narrower scope."""
    scope: str | None = fps.head_scope(fn, head)
    current = scope is not None
    if scope is None:  # its head alone cannot tell: rare, so parsed
        meta = results.read_metafile(folder)
        if meta is None:
            return False
        current, scope = fps.compare(fn, meta)
    if current and scope != fps.scope:
        narrower[scope] = narrower.get(scope, 0) + 1
    return current


def failed_only(names: list[str], base: str) -> list[str]:
    keep = []
    orphans: dict[str, str] = {}  # running with a free lock
    for name, (status, _) in zip(names, results.read_heads(base, names), strict=True):
        if status in _RETRYABLE:
            keep.append(name)
        elif status == results.RUNNING and not results.is_locked(base + name):
            keep.append(name)
            orphans[name] = base + name
    if orphans:  # a SLURM job requeued after its node died is queued, not to retry
        queued = jobs.still_queued(_metafiles(orphans))  # none for metafiles without refs
        keep = [name for name in keep if name not in queued]
    return keep


def _metafiles(folders: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return {name: results.read_metafile(folder) or {} for name, folder in folders.items()}


@dataclass(frozen=True, slots=True)
class Step:
    """One experiment of a pipeline's run: which, where, and how it starts."""

    key: Key
    label: str  # how the run names it (group:name outside the selected group)
    folder: str
    fresh: bool  # from an empty folder (forced, or a stale result rerun)


@dataclass
class PipelinePlan:
    steps: list[Step]  # upstreams before their downstreams
    skip: dict[str, str]  # label -> why not run, for the selected experiments
    folders: dict[Key, str]  # every node's folder


def plan_pipeline(
    pipeline: Pipeline,
    names: Sequence[str],
    output_directory: str,
    options: RunOptions,
    fingerprints: Fingerprints | None = None,
) -> PipelinePlan:
    """Plan the selection ``names`` of the pipeline's home group with every upstream.

    Not-done upstreams join the run (``--no-upstream`` refuses instead, naming them);
    upstreams running elsewhere or queued hold back what needs them (not started); a
    done selected experiment whose upstream reruns now, or changed since its result
    was made, is stale.
    """
    home = pipeline.home
    prefixes = {g: results.group_prefix(output_directory, g) for g in pipeline.groups}
    folders = {key: prefixes[key[0]] + key[1] for key in pipeline.order}
    selected = {(home, n) for n in names}
    to_run, skip = plan(pipeline.groups[home], names, prefixes[home], options, fingerprints)
    run: dict[Key, bool] = {(home, n): fresh for n, _, fresh in to_run}
    others: dict[str, list[str]] = {}
    for key in pipeline.order:
        if key not in selected:
            others.setdefault(key[0], []).append(key[1])
    upstream_options = replace(options, force=False, retry_failed=False)
    missing: list[str] = []
    not_now: set[Key] = set()
    for group, group_names in others.items():
        up_run, up_skip = plan(
            pipeline.groups[group], group_names, prefixes[group], upstream_options, fingerprints
        )
        for name, _, fresh in up_run:
            if options.no_upstream:
                missing.append(label((group, name), home))
            else:
                run[(group, name)] = fresh
        not_now.update((group, n) for n, why in up_skip.items() if why in (BUSY, QUEUED))
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise ExperimentDefinitionError(
            f"--no-upstream: {len(missing)} upstream experiment"
            f"{'s are' if len(missing) > 1 else ' is'} not done: {shown}; run "
            f"{'them' if len(missing) > 1 else 'it'} first, or drop --no-upstream",
            offending=missing,
        )
    # What needs an upstream that is not available now waits (not started), transitively.
    waits: set[Key] = set()
    for key in pipeline.order:
        if any(u in not_now or u in waits for u in pipeline.needs.get(key, ())):
            waits.add(key)
            run.pop(key, None)
            if key in selected:
                skip[key[1]] = NOT_STARTED
    # A done selected result is stale if an upstream reruns now or changed since.
    seen: dict[str, dict[str, Any] | None] = {}  # upstream metafiles, each read once
    for name, why in list(skip.items()):
        key = (home, name)
        if why != SKIPPED or not pipeline.needs.get(key):
            continue
        if any(u in run for u in pipeline.needs[key]) or upstreams_changed(
            folders[key], folders, seen, own=key
        ):
            if options.rerun_stale:
                del skip[name]
                run[key] = True
            else:
                skip[name] = STALE
    steps = [
        Step(key, label(key, home), folders[key], run[key]) for key in pipeline.order if key in run
    ]
    return PipelinePlan(steps, skip, folders)


def upstreams_changed(
    folder: str,
    folders: Mapping[Key, str] | None = None,
    seen: dict[str, dict[str, Any] | None] | None = None,
    meta: Mapping[str, Any] | None = None,
    own: Key | None = None,
) -> list[str]:
    """The upstreams whose result is not the one the metafile at ``folder`` (``meta``,
    when read already) recorded using (rerun since, failed, or deleted): its result is
    stale then. ``seen`` caches upstream metafiles across calls (a stage shares them)."""
    used: Any = None
    if meta is None:
        # As execute writes it (a kwarg named "upstreams" shows as a repr string first).
        found, used = results.read_member(folder, '"upstreams": [{"group": ')
        if not found or not isinstance(used, list):
            meta = results.read_metafile(folder)
    if meta is not None:
        used = meta.get("upstreams")
    if not isinstance(used, list):
        return []
    changed = []
    for record in used:
        if not isinstance(record, dict):
            continue
        key = (str(record.get("group")), str(record.get("name")))
        where = (folders or {}).get(key) or _sibling_folder(folder, key, own)
        if not where:
            now = None
        elif seen is not None and where in seen:
            now = seen[where]
        else:
            now = results.read_metafile(where)
            if seen is not None:
                seen[where] = now
        if (
            now is None
            or now.get("status") != results.DONE
            or now.get("fingerprint") != record.get("fingerprint")
            or now.get("ended") != record.get("ended")
        ):
            changed.append(f"{key[0]}:{key[1]}")
    return changed


def _sibling_folder(folder: str, key: Key, own: Key | None) -> str | None:
    """The folder of upstream ``key`` of experiment ``own`` at ``folder``: in the same
    output directory."""
    if own is None:
        return None
    tail = f"{own[0]}/{own[1]}"
    if not folder.endswith(tail):
        return None
    return folder[: -len(tail)] + f"{key[0]}/{key[1]}"
