"""One run: plan what to run, hand it to a backend, record outcomes, summarize.

The Python API (``group(...)``) and the CLI both end here, with the same options.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from . import results
from ._version import __version__
from .backends import Finished, Report, get_backend
from .config import BaseConfig, resolve_config
from .execution import BUSY, SKIPPED, RunContext, Task, describe, lost_error, record_lost
from .logs import console_logging

if TYPE_CHECKING:
    from .framework import ParametrizedExperiments

__all__ = ["ExperimentOutcome", "RunSummary", "run"]

logger = logging.getLogger(__name__)

SUCCESS = "success"
NOT_STARTED = "not started"
_ORDER = (SUCCESS, SKIPPED, results.FAILED, results.INTERRUPTED, BUSY, NOT_STARTED)
_WORDS = {
    SUCCESS: "succeeded",
    SKIPPED: "skipped",
    results.FAILED: "failed",
    results.INTERRUPTED: "interrupted",
    BUSY: "running elsewhere",
    NOT_STARTED: "not started",
}


@dataclass(frozen=True, slots=True)
class ExperimentOutcome:
    """How one selected experiment fared in a run."""

    name: str
    status: str  # success, skipped, failed, interrupted, running elsewhere, not started
    folder: str
    duration: float | None = None
    error: str | None = None


@dataclass
class RunSummary:
    """The outcome of a run: one entry per selected experiment, in selection order."""

    group: str
    outcomes: list[ExperimentOutcome] = field(default_factory=list)
    duration: float = 0.0
    interrupted: bool = False  # the run itself was stopped (Ctrl-C)

    def __iter__(self) -> Iterator[ExperimentOutcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, name: str) -> ExperimentOutcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_ORDER, 0)
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def with_status(self, status: str) -> list[ExperimentOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0: nothing failed; 1: something failed or was interrupted; 130: Ctrl-C."""
        if self.interrupted:
            return 130
        counts = self.counts()
        return 1 if counts[results.FAILED] or counts[results.INTERRUPTED] else 0

    def __str__(self) -> str:
        counts = self.counts()
        parts = [f"{counts[s]} {_WORDS[s]}" for s in _ORDER[:4]]
        parts += [f"{counts[s]} {_WORDS[s]}" for s in _ORDER[4:] if counts[s]]
        lines = [
            f"{self.group}: {', '.join(parts)} ({len(self)} selected, "
            f"{self.duration:.1f}s)" + (" - stopped by Ctrl-C" if self.interrupted else "")
        ]
        for o in self.outcomes:
            if o.status in (results.FAILED, results.INTERRUPTED):
                lines.append(
                    f"  {o.status:<11} {o.name}: {o.error or o.status}  ({_show(o.folder)})"
                )
        return "\n".join(lines)


def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _git_info(cwd: str) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _run_info(config: BaseConfig, backend: str, jobs: int) -> str:
    cwd = os.getcwd()
    info = {
        "xhelpers": __version__,
        "python": sys.version.split()[0],
        "argv": sys.argv,
        "cwd": cwd,
        "git": _git_info(cwd),
        "backend": backend,
        "jobs": jobs,
        "config": config.redacted(),
    }
    return json.dumps(info, default=str)[1:-1]


def plan(
    names: Sequence[str], root: str, group: str, force: bool
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Split selected names into (name, folder) to run and {name: status} not to run."""
    to_run: list[tuple[str, str]] = []
    skip: dict[str, str] = {}
    # Plain concatenation, not os.path.join: at 100,000 names the difference shows.
    base = os.path.join(root, group) + os.sep
    for name, status in zip(names, results.read_statuses(base, names), strict=True):
        if status is None:
            to_run.append((name, base + name))
        elif status == results.DONE and not force:
            skip[name] = SKIPPED
        elif status in (results.RUNNING, results.SUBMITTED) and results.is_locked(base + name):
            skip[name] = BUSY
        else:
            to_run.append((name, base + name))
    return to_run, skip


def run(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    jobs: int | None = None,
    workers: int | None = None,
    force: bool = False,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
    loglevel: str | None = None,
    backend: str = "local",
    post_mortem: bool = False,
    quiet: bool = False,
    console: bool | None = None,
) -> RunSummary:
    """Run the experiments of ``group`` matching ``patterns``; see the CLI for options.

    Never calls ``sys.exit``: the returned summary has the ``exit_code``. Log records
    reach the console when ``console`` is True, or when None and logging is not
    configured yet.
    """
    names = group.select(*patterns)
    resolved = resolve_config(
        group.configcls,
        config_file=config_file,
        config=config,
        overrides={"jobs": jobs, "workers": workers, "loglevel": loglevel},
    )
    with console_logging(resolved.loglevel, force=bool(console)):
        summary = _run(group, names, resolved, force, backend, post_mortem)
    if not quiet:
        print(summary, flush=True)
    return summary


def _run(
    group: ParametrizedExperiments,
    names: list[str],
    config: BaseConfig,
    force: bool,
    backend_name: str,
    post_mortem: bool,
) -> RunSummary:
    start = time.perf_counter()
    root = os.path.abspath(config.output_directory)
    to_run, skip = plan(names, root, group.name, force)
    base = os.path.join(root, group.name) + os.sep
    done: dict[str, ExperimentOutcome] = {
        name: ExperimentOutcome(name, status, base + name) for name, status in skip.items()
    }
    if skip:
        logger.info("%d of %d selected experiments need no run", len(skip), len(names))
    interrupted = False
    if to_run:
        backend_cls = get_backend(backend_name)
        tasks = []
        for name, folder in to_run:
            fn = group.experiments[name]
            description, pass_config, own = describe(fn, config)
            tasks.append(Task(name, folder, fn, description, pass_config, own, force))
        ctx = RunContext(
            group.name,
            config,
            _run_info(config, backend_name, config.jobs),
            capture_logger=config.logger,
            post_mortem=post_mortem,
        )
        kwargs: dict[str, Any] = {"jobs": config.jobs}
        if backend_name == "local":
            kwargs.update(
                start_method=config.start_method,
                console_level=logging.getLevelName(config.loglevel),
            )
        backend = backend_cls(ctx, **kwargs)
        try:
            backend.start(tasks)
            while True:
                try:
                    for report in backend.reports():
                        _record(report, ctx, done)
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    logger.warning("interrupted: stopping running experiments")
                    backend.interrupt()
        finally:
            backend.close()
        for name, folder in to_run:
            if name not in done:
                done[name] = _from_disk(name, folder)
    outcomes = [done[n] for n in names]
    return RunSummary(group.name, outcomes, time.perf_counter() - start, interrupted)


def _record(report: Report, ctx: RunContext, done: dict[str, ExperimentOutcome]) -> None:
    task = report.task
    if isinstance(report, Finished):
        r = report.result
        done[task.name] = ExperimentOutcome(task.name, r.status, task.folder, r.duration, r.error)
        return
    message, error = lost_error(report.exitcode, report.why)
    status = results.INTERRUPTED if report.why else results.FAILED
    if record_lost(task, ctx, report.pid, message, error, status):
        if status == results.FAILED:
            logger.error("[%s] %s", task.name, message)
        done[task.name] = ExperimentOutcome(task.name, status, task.folder, None, message)
    else:
        done[task.name] = _from_disk(task.name, task.folder)


def _from_disk(name: str, folder: str) -> ExperimentOutcome:
    """What the metafile says of an experiment the backend gave no clear word on."""
    meta = results.read_metafile(folder)
    if meta is None:
        return ExperimentOutcome(name, NOT_STARTED, folder)
    status = meta.get("status")
    error = meta.get("error") or {}
    message = f"{error.get('type', '')}: {error.get('message', '')}" if error else None
    if status == results.DONE:
        return ExperimentOutcome(name, SUCCESS, folder, meta.get("duration"))
    if status == results.RUNNING and not results.is_locked(folder):
        return ExperimentOutcome(name, results.INTERRUPTED, folder, None, "interrupted")
    if status == results.RUNNING:
        return ExperimentOutcome(name, BUSY, folder)
    return ExperimentOutcome(name, str(status), folder, meta.get("duration"), message)
