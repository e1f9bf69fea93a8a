"""The run's tasks: each experiment to run described as a :class:`Task`.

Its metafile members (function, arguments, fingerprint at the run's scope), whether it
takes ``config=``, its own config and resources (SLURM's, GPUs); for a pipeline also the
:class:`~xhelpers.core.upstreams.Result` handles its placeholders become, its upstreams,
and which of them run in the same run (``after``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xhelpers.config import BaseConfig
from xhelpers.core.execution import Task
from xhelpers.core.fingerprints import Fingerprints, describe
from xhelpers.core.pipeline import Pipeline
from xhelpers.core.planning import PipelinePlan, RunOptions
from xhelpers.core.upstreams import Result, resolved
from xhelpers.errors import ConfigError

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["described", "pipeline_tasks"]


def described(
    group: ParametrizedExperiments,
    to_run: list[tuple[str, str, bool]],
    config: BaseConfig,
    options: RunOptions,
    fingerprints: Fingerprints | None = None,
) -> list[Task]:
    """Tasks for ``to_run`` of one group: (name, folder, fresh) each."""
    tasks = []
    fps = fingerprints if fingerprints is not None else Fingerprints(config.fingerprint)
    for name, folder, fresh in to_run:
        fn = group.experiments[name]
        try:
            description, pass_config, own = describe(fn, config, fps)
        except ConfigError as exc:  # its partial binds config={...} with a bad field
            raise ConfigError(f"experiment {name!r}: {exc}", field=exc.field) from None
        tasks.append(
            Task(
                name,
                folder,
                fn,
                description,
                pass_config,
                own,
                options.force or fresh,
                group.resources_of(name),
            )
        )
    return tasks


def pipeline_tasks(
    pipeline: Pipeline,
    steps: PipelinePlan,
    config: BaseConfig,
    options: RunOptions,
    fingerprints: Fingerprints,
) -> list[Task]:
    """A pipeline's tasks, upstreams first: each with its placeholders answered by
    :class:`Result` handles, its upstreams, and which of them run in this run."""
    home = pipeline.home
    running = {step.folder for step in steps.steps}
    folders = steps.folders
    handles: dict[tuple[str, str], Result] = {}

    def handle(key: tuple[str, str]) -> Result:
        found = handles.get(key)
        if found is None:
            found = handles[key] = Result(key[0], key[1], folders[key])
        return found

    tasks = []
    for step in steps.steps:
        group_name, name = step.key
        group = pipeline.groups[group_name]
        fn = group.experiments[name]
        try:
            description, pass_config, own = describe(fn, config, fingerprints)
        except ConfigError as exc:
            raise ConfigError(f"experiment {step.label!r}: {exc}", field=exc.field) from None
        if group_name != home and own is None and not isinstance(config, group.configcls):
            own = group.configcls.with_updates(config)  # its own group's config class
        answers: dict[Any, Any] = {}
        for ph, keys in pipeline.answers.get(step.key, {}).items():
            answers[ph] = [handle(k) for k in keys] if isinstance(keys, list) else handle(keys)
        ups = pipeline.needs.get(step.key, [])
        tasks.append(
            Task(
                name,
                step.folder,
                resolved(fn, answers) if answers else fn,
                description,
                pass_config,
                own,
                step.fresh or (options.force and group_name == home),
                group.resources_of(name),
                group=None if group_name == home else group_name,
                upstreams=tuple((g, n, folders[(g, n)]) for g, n in ups),
                after=tuple(folders[u] for u in ups if folders[u] in running),
            )
        )
    return tasks
