"""Groups of experiments: names to callables, validated, selected by pattern."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal

from xhelpers.config import SLURM_RESOURCE_KEYS, BaseConfig, check_resources
from xhelpers.core.results import PATH_MAX
from xhelpers.core.upstreams import Upstream, placeholders_in
from xhelpers.errors import ExperimentDefinitionError, PatternError

if TYPE_CHECKING:
    from xhelpers.core.jobs import CancelOutcome
    from xhelpers.core.summary import RunSummary
    from xhelpers.notify import SlackRun
    from xhelpers.views.status import StatusRow

__all__ = ["ParametrizedExperiments", "get_group", "groups", "run", "unregister"]

_REGISTRY: dict[str, ParametrizedExperiments] = {}
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_MAGIC = re.compile(r"[*?\[]")
_MAX_SEGMENT_BYTES = 255  # longest file name on common filesystems
# A name's folder path must also hold the output directory and group before the name
# (checked again with the real ones when a run starts) and a file name after it.
_MAX_NAME_BYTES = PATH_MAX - 1024
_NAME_RULES = (
    "names are path-like ('a/b/c'): no empty, '.' or '..' segment, no leading or "
    "trailing '/', no backslash or NUL, no top-level segment starting with '.', "
    "and no experiment may be a folder of another"
)


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"not a string ({type(name).__name__})"
    if not name:
        return "empty"
    if name.startswith("/") or name.endswith("/"):
        return "leading or trailing '/'"
    if "\\" in name or "\0" in name:
        return "backslash or NUL"
    try:
        encoded = name.encode()
    except UnicodeEncodeError:  # a lone surrogate: no filesystem can hold it
        return "not valid Unicode text (a lone surrogate?)"
    if len(encoded) > _MAX_NAME_BYTES:
        return f"longer than {_MAX_NAME_BYTES} bytes: its folder path would exceed the limit"
    segments = name.split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            return f"segment {seg!r}" if seg else "empty segment"
        if len(seg.encode()) > _MAX_SEGMENT_BYTES:
            return f"segment longer than {_MAX_SEGMENT_BYTES} bytes"
    if segments[0].startswith("."):
        return "top-level segment starts with '.' (reserved for xhelpers)"
    return None


def _validate(group: str, experiments: Mapping[str, Any]) -> None:
    problems = [(n, p) for n in experiments if (p := _name_problem(n)) is not None]
    names = set(experiments)
    folders: dict[str, str] = {}
    for name in experiments:
        if not isinstance(name, str):
            continue
        pos = name.find("/")
        while pos != -1:
            folders.setdefault(name[:pos], name)
            pos = name.find("/", pos + 1)
    problems += [(f, f"is a folder of {folders[f]!r}") for f in folders if f in names]
    if problems:
        shown = "; ".join(f"{n!r} ({why})" for n, why in problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ExperimentDefinitionError(
            f"group {group!r}: invalid experiment names: {shown}{more}. {_NAME_RULES}",
            offending=[str(n) for n, _ in problems],
        )
    bad = [n for n, fn in experiments.items() if not callable(fn)]
    if bad:
        shown = ", ".join(repr(n) for n in bad[:20])
        raise ExperimentDefinitionError(
            f"group {group!r}: experiments must be callables; not callable: {shown}"
            + (f" and {len(bad) - 20} more" if len(bad) > 20 else ""),
            offending=bad,
        )
    for name, fn in experiments.items():
        # Experiments that can check themselves (a command's unfilled fields) do so now,
        # not on a node after the queue.
        validate = getattr(fn, "xh_validate", None)
        if validate is not None:
            try:
                validate()
            except ExperimentDefinitionError as exc:
                raise ExperimentDefinitionError(
                    f"group {group!r}: experiment {name!r}: {exc}", offending=[name]
                ) from None


class ParametrizedExperiments:
    """A named group of experiments: ``{name: callable}``, runnable from Python or the CLI.

    ``resources`` gives settings per name pattern, e.g.
    ``{"big/*": {"gpus": 1, "gpus_per_node": 1, "mem_gb": 64}}``: ``gpus``, the GPUs a
    local run gives each (0.5: half of one, shared), and the SLURM ones (the ``slurm_*``
    config fields without the prefix); on SLURM, experiments whose settings differ go
    into separate arrays.

    Call it to run experiments: ``group("*lr=0.1*", jobs=4, force=True)`` takes the
    CLI's options as keywords and returns a :class:`~xhelpers.runner.RunSummary`.
    """

    def __init__(
        self,
        name: str,
        experiments: Mapping[str, Callable[..., Any]],
        *,
        configcls: type[BaseConfig] = BaseConfig,
        description: str | None = None,
        resources: Mapping[str, Mapping[str, Any]] | None = None,
        register: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _GROUP_NAME.match(name):
            raise ExperimentDefinitionError(
                f"invalid group name {name!r}: use letters, digits, '_', '.', '-' "
                "and start with a letter or digit",
                offending=[str(name)],
            )
        if not (isinstance(configcls, type) and issubclass(configcls, BaseConfig)):
            raise ExperimentDefinitionError(
                f"group {name!r}: configcls must be a subclass of xhelpers.BaseConfig, "
                f"not {configcls!r}"
            )
        if register and name in _REGISTRY:
            raise ExperimentDefinitionError(
                f"a group named {name!r} is already registered; group names must be unique",
                offending=[name],
            )
        _validate(name, experiments)
        self.resources: dict[str, dict[str, Any]] = {}
        for pattern, settings in (resources or {}).items():
            where = f"group {name!r}: resources[{pattern!r}]"
            check_resources(settings, where)
            # typed like the config fields they override, so a bad value fails here,
            # not at submission (``gpus``, which no field holds, check_resources checked)
            BaseConfig._build(
                {f"slurm_{k}": v for k, v in settings.items() if k in SLURM_RESOURCE_KEYS},
                source=where,
            )
            match = re.compile(fnmatch.translate(pattern)).match
            if not any(match(n) for n in experiments):
                raise ExperimentDefinitionError(
                    f"{where}: the pattern matches no experiment of the group (a typo would "
                    "send those experiments out without these settings)",
                    offending=[pattern],
                )
            self.resources[pattern] = dict(settings)
        self.name = name
        self.experiments: dict[str, Callable[..., Any]] = dict(experiments)
        self._upstreams: dict[str, tuple[Upstream, ...]] | None = None
        self.configcls = configcls
        self.description = description
        if register:
            _REGISTRY[name] = self

    def __repr__(self) -> str:
        return f"ParametrizedExperiments({self.name!r}, <{len(self.experiments)} experiments>)"

    @property
    def upstreams(self) -> dict[str, tuple[Upstream, ...]]:
        """{name: the upstream placeholders it binds} of the experiments that use any.

        Found on first use (a run, a plan, a graph), not when the group is defined:
        ``--help`` and completion of 10,000 experiments need none of it.
        """
        if self._upstreams is None:
            self._upstreams = {
                n: found for n, fn in self.experiments.items() if (found := placeholders_in(fn))
            }
        return self._upstreams

    def __len__(self) -> int:
        return len(self.experiments)

    def select(self, *patterns: str) -> list[str]:
        """Names matching any pattern (fnmatch, ``*`` crosses ``/``), in registration order.

        No pattern selects everything. A pattern matching nothing raises PatternError
        with the closest names.
        """
        if not patterns:
            return list(self.experiments)
        chosen: set[str] = set()
        for pattern in patterns:
            if not _MAGIC.search(pattern):
                hits: list[str] = [pattern] if pattern in self.experiments else []
            else:
                match = re.compile(fnmatch.translate(pattern)).match
                hits = [n for n in self.experiments if match(n)]
            if not hits:
                raise self._no_match(pattern)
            chosen.update(hits)
        if len(patterns) == 1 and not _MAGIC.search(patterns[0]):
            return list(chosen)
        return [n for n in self.experiments if n in chosen]

    def _no_match(self, pattern: str) -> PatternError:
        names = list(self.experiments)
        suggestions: list[str] = []
        prefix = pattern.rstrip("/") + "/"
        if any(n.startswith(prefix) for n in names):
            suggestions.append(prefix + "*")
        pool = names if len(names) <= 20000 else names[:20000]
        suggestions += difflib.get_close_matches(pattern, pool, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        return PatternError(
            f"no experiment in group {self.name!r} matches {pattern!r}{hint} "
            "(patterns are fnmatch-style; quote them in the shell)",
            pattern=pattern,
            suggestions=suggestions,
        )

    def resources_of(self, name: str) -> dict[str, Any] | None:
        """Resources of one experiment: every matching ``resources`` pattern, in order."""
        merged: dict[str, Any] = {}
        for pattern, settings in self.resources.items():
            if fnmatch.fnmatchcase(name, pattern):
                merged.update(settings)
        return merged or None

    def __call__(self, *patterns: str, **options: Any) -> RunSummary:
        """Run the selected experiments; options as on the CLI (jobs, force, config, ...)."""
        return run(self, patterns, **options)

    def status(self, *patterns: str, **options: Any) -> list[StatusRow]:
        """One row per selected experiment, read from metafiles; runs nothing."""
        from xhelpers.views.status import collect_status

        return collect_status(self, patterns, **options)

    def cancel(self, *patterns: str, config: Any = None, config_file: Any = None) -> CancelOutcome:
        """Cancel the jobs of the selected experiments (through their backends); mark
        them ``interrupted``. Jobs that had ended already are reported, not touched."""
        from xhelpers.config import resolve_config
        from xhelpers.core.jobs import cancel
        from xhelpers.core.results import group_prefix

        names = self.select(*patterns)
        resolved = resolve_config(self.configcls, config_file=config_file, config=config)
        base = group_prefix(resolved.output_directory, self.name)
        return cancel({n: base + n for n in names})

    def load(self, name: str, file: str, *, config: Any = None, config_file: Any = None) -> Any:
        """A file of experiment ``name``'s folder, in the format its name says
        (``group.load("C=1/fold=0", "scores.json")``; see :func:`xhelpers.load`)."""
        from xhelpers.config import resolve_config
        from xhelpers.core.files import load
        from xhelpers.core.results import group_prefix

        if name not in self.experiments:
            raise self._no_match(name)
        resolved = resolve_config(self.configcls, config_file=config_file, config=config)
        return load(os.path.join(group_prefix(resolved.output_directory, self.name) + name, file))

    def results(self, *patterns: str, as_frame: bool = False, **options: Any) -> Any:
        """One dict per selected experiment: name, status, duration, the parameters its
        result was made with, and its metrics; ``as_frame=True``: the same as a pandas
        DataFrame (``pip install 'xhelpers[frames]'``)."""
        from xhelpers.views.results import collect_table

        table = collect_table(self, patterns, **options)
        if not as_frame:
            return table.rows
        from xhelpers.views.frames import to_frame

        return to_frame(table)

    def aggregate(
        self,
        *patterns: str,
        by: str | Sequence[str],
        metrics: Sequence[str] | None = None,
        include_failed: bool = False,
        **options: Any,
    ) -> Any:
        """The selected experiments' metrics aggregated over every parameter not in
        ``by`` (count, mean, std, min, max; ``metrics``: these, default every numeric
        one), one DataFrame row per ``by`` combination,
        with how many experiments were used, failed and are missing."""
        from xhelpers.views.frames import aggregate

        columns = [by] if isinstance(by, str) else list(by)
        frame = self.results(*patterns, as_frame=True, **options)
        return aggregate(frame, columns, metrics=metrics, include_failed=include_failed)

    def best(
        self,
        metric: str,
        *patterns: str,
        by: str | Sequence[str] | None = None,
        minimize: bool = False,
        include_failed: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """The finished experiment with the highest ``metric`` (``minimize``: lowest), as
        its row; with ``by``, the combination of those parameters with the best mean."""
        from xhelpers.views.frames import best

        columns = [by] if isinstance(by, str) else by
        frame = self.results(*patterns, as_frame=True, **options)
        return best(frame, metric, by=columns, minimize=minimize, include_failed=include_failed)

    def plot(
        self,
        metric: str,
        *patterns: str,
        x: str,
        hue: str | None = None,
        logx: bool = False,
        include_failed: bool = False,
        path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Any:
        """A matplotlib Figure of ``metric``'s mean (and spread over the other parameters)
        against parameter ``x``, one line per value of ``hue``; written to ``path`` when
        given, as PNG, SVG or PDF by its suffix (``pip install 'xhelpers[plots]'``)."""
        from xhelpers.views.frames import to_frame
        from xhelpers.views.plots import plot, write_plot
        from xhelpers.views.results import collect_table

        # pandas is named as part of the plots extra, which installs matplotlib too
        frame = to_frame(collect_table(self, patterns, **options), "group.plot", "plots")
        figure = plot(frame, metric, x, hue=hue, logx=logx, include_failed=include_failed)
        if path is not None:
            write_plot(figure, path)
        return figure

    def diff(self, a: str, b: str, **options: Any) -> dict[str, dict[str, tuple[Any, Any]]]:
        """How experiments ``a`` and ``b`` differ: ``{section: {key: (in a, in b)}}`` for
        the sections status, parameters, config, code and metrics, differing keys only
        (a key one side lacks is :data:`xhelpers.views.diff.ABSENT` there)."""
        from xhelpers.views.diff import diff

        return diff(self, a, b, **options)


def groups() -> dict[str, ParametrizedExperiments]:
    """All registered groups by name, in registration order."""
    return dict(_REGISTRY)


def get_group(name: str) -> ParametrizedExperiments:
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(_REGISTRY) or "none registered"
        raise PatternError(f"no group named {name!r}; groups: {valid}", pattern=name) from None


def unregister(name: str) -> None:
    """Forget a group (for notebooks and tests that redefine one)."""
    _REGISTRY.pop(name, None)


# -- one run, as group(...) and the CLI start it ---------------------------------------
def run(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    jobs: int | None = None,
    workers: int | None = None,
    gpus: Sequence[int | str] | str | None = None,
    force: bool = False,
    rerun_stale: bool = False,
    retry_failed: bool = False,
    no_upstream: bool = False,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
    loglevel: str | None = None,
    backend: str | None = None,
    post_mortem: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
    console: bool | None = None,
    slack: bool = True,
    slurm: bool | None = None,
    wait: bool = True,
) -> RunSummary:
    """Run the experiments of ``group`` matching ``patterns``; see the CLI for options.

    Never calls ``sys.exit``: the returned summary has the ``exit_code``. Log records
    reach the console when ``console`` is True, or when None and logging is not
    configured yet. ``slurm`` overrides ``config.slurm``; ``wait=False`` submits (SLURM
    jobs, or one detached local process) and returns with the experiments counted as queued.

    This is where the core's run meets what watches it: the console, the progress
    line (a view) and the run's Slack thread (notify), each loaded only when used.
    """
    from xhelpers.config import resolve_config
    from xhelpers.core import runner
    from xhelpers.core.logs import console_logging
    from xhelpers.views.progress import Progress

    names = group.select(*patterns)
    resolved = resolve_config(
        group.configcls,
        config_file=config_file,
        config=config,
        overrides={
            "jobs": jobs,
            "workers": workers,
            "gpus": gpus,
            "loglevel": loglevel,
            "slurm": slurm,
        },
    )
    options = runner.RunOptions(
        force,
        rerun_stale,
        retry_failed,
        backend,
        post_mortem,
        progress if not quiet else False,
        wait,
        tuple(patterns),
        no_upstream,
    )
    with console_logging(resolved.loglevel, force=bool(console)):
        notifier = _slack(resolved) if slack else None  # slack=False: nothing to Slack
        with notifier or nullcontext():
            summary = runner.run_selected(
                group,
                names,
                resolved,
                options,
                notifier,
                make_progress=Progress,
                registry=_REGISTRY,
            )
            if notifier is not None:
                notifier.finish(summary)
    if not quiet:
        print(summary, flush=True)
    return summary


def _slack(config: BaseConfig) -> SlackRun | None:
    """The run's Slack thread when a token is set; notify and slack_sdk load only then."""
    if not (config.slacktoken or os.environ.get("XHELPERS_SLACK_TOKEN")):
        return None
    from xhelpers.notify import open_run

    return open_run(config)
