"""One run: plan what to run, hand it to a backend, record outcomes, summarize.

The Python API (``group(...)``) and the CLI both end here, with the same options.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from xhelpers.backends import Backend, Finished, JobState, Report, get_backend
from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, blocked_line
from xhelpers.core.feeding import Feeder
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.core.pipeline import Registry, build, label
from xhelpers.core.planning import RunOptions, failed_only, plan, plan_pipeline
from xhelpers.core.provenance import GitProbe, run_members
from xhelpers.core.records import lost_error, record_blocked, record_lost, submit_marked
from xhelpers.core.summary import (
    BUSY,
    NOT_STARTED,
    QUEUED,
    STALE,
    SUCCESS,
    ExperimentOutcome,
    RunSummary,
)
from xhelpers.core.tasks import described, pipeline_tasks
from xhelpers.core.watchers import MakeProgress, RunWatcher
from xhelpers.errors import BackendError, ConfigError, ExperimentDefinitionError

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["ExperimentOutcome", "RunOptions", "RunSummary", "plan", "preview", "run_selected"]

logger = logging.getLogger(__name__)


def run_selected(
    group: ParametrizedExperiments,
    names: list[str],
    config: BaseConfig,
    options: RunOptions,
    notifier: RunWatcher | None = None,
    make_progress: MakeProgress | None = None,
    registry: Registry | None = None,
) -> RunSummary:
    """Run the selected ``names`` of ``group`` with the resolved ``config``.

    ``notifier`` (the run's Slack thread) and ``make_progress`` (the live line, shown
    when ``options.progress`` says so) are handed in: the core imports neither.
    ``registry``: every defined group, where upstreams of other groups are found.
    """
    start = time.perf_counter()
    base = results.group_prefix(config.output_directory, group.name)
    _check_path_lengths(group.name, names, base)
    if not options.wait:  # before anything is planned or run: a usage error
        name = options.backend or ("slurm" if config.slurm else "local")
        if not get_backend(name).can_detach:
            raise BackendError(
                f"--no-wait: the {name} backend cannot detach (its experiments end "
                "with this process); use one that can, e.g. --slurm",
                usage=True,
            )
    _tidy(options.backend or ("slurm" if config.slurm else "local"), config, group.name)
    if options.retry_failed:
        names = failed_only(names, base)
        if not names:
            logger.warning("nothing to retry: no selected experiment failed or was interrupted")
    fingerprints = Fingerprints(config.fingerprint)  # one per run: plan and describe agree
    pipeline = build(group, names, registry or {group.name: group})
    tasks: list[Task] | None = None
    pulled: list[str] = []  # upstreams run for the selection, as the run names them
    if pipeline is None:
        to_run, skip = plan(group, names, base, options, fingerprints)
    else:
        steps = plan_pipeline(pipeline, names, str(config.output_directory), options, fingerprints)
        skip = steps.skip
        to_run = [(step.label, step.folder, step.fresh) for step in steps.steps]
        tasks = pipeline_tasks(pipeline, steps, config, options, fingerprints)
        chosen = set(names)
        pulled = [
            step.label
            for step in steps.steps
            if step.key[0] != group.name or step.key[1] not in chosen
        ]
    done: dict[str, ExperimentOutcome] = {
        name: ExperimentOutcome(name, status, base + name) for name, status in skip.items()
    }
    stale = [name for name, status in skip.items() if status == STALE]
    if stale:
        shown = ", ".join(stale[:10]) + (f" and {len(stale) - 10} more" if len(stale) > 10 else "")
        logger.warning(
            "%d stale experiment%s not rerun (their definition changed since their result): "
            "%s; rerun with --rerun-stale (or --force)",
            len(stale),
            "s" if len(stale) > 1 else "",
            shown,
        )
    if notifier is not None:
        backend = options.backend or ("slurm" if config.slurm else "local")
        notifier.start(
            group.name,
            selected=len(names),
            to_run=len(to_run),
            skipped=len(skip),
            backend=backend,
            jobs=config.jobs,
        )
    interrupted = False
    if to_run:
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"output_directory {str(config.output_directory)!r}: cannot make {base}: "
                f"{exc.strerror or exc}",
                field="output_directory",
            ) from None
        interrupted = _execute(
            group, to_run, config, options, done, notifier, make_progress, tasks, fingerprints
        )
    outcomes = [done[n] for n in names]
    extra = [done[n] for n in pulled if n in done]
    return RunSummary(
        group.name, outcomes + extra, time.perf_counter() - start, interrupted, len(extra)
    )


def preview(
    group: ParametrizedExperiments,
    names: list[str],
    config: BaseConfig,
    options: RunOptions,
    registry: Registry | None = None,
) -> list[str]:
    """How the run's backend would submit what it would run (``--dry-run``): the tasks
    planned and described as a run does, handed to :meth:`Backend.preview`; nothing is
    submitted, locked or written."""
    backend_name = options.backend or ("slurm" if config.slurm else "local")
    base = results.group_prefix(config.output_directory, group.name)
    fingerprints = Fingerprints(config.fingerprint)
    pipeline = build(group, names, registry or {group.name: group})
    if pipeline is None:
        to_run, _ = plan(group, names, base, options, fingerprints)
        tasks = described(group, to_run, config, options, fingerprints)
    else:
        steps = plan_pipeline(pipeline, names, str(config.output_directory), options, fingerprints)
        tasks = pipeline_tasks(pipeline, steps, config, options, fingerprints)
    if not tasks:
        return []
    root = results.real_root(config.output_directory)
    backend = get_backend(backend_name)(RunContext(group.name, config, "", root=root))
    try:
        backend.check(tasks)
        return backend.preview(tasks)
    finally:
        backend.close()


def _tidy(backend_name: str, config: BaseConfig, group: str) -> None:
    """The backend's housekeeping of earlier runs of the group, before anything is
    planned: also when nothing is to run, the usual end of a run that did not wait."""
    try:
        backend_cls = get_backend(backend_name)
    except BackendError:  # an unusable backend is an error where it is used, not here
        return
    backend_cls.tidy(config, group)


def _check_path_lengths(group: str, names: Sequence[str], base: str) -> None:
    """Names whose folders this output directory makes too long: one error, before any run."""
    room = results.PATH_MAX - len(base.encode()) - len("/" + results.LONGEST_ENTRY)
    if not names or 4 * max(map(len, names)) < room:  # (4: the most bytes of a character)
        return
    bad = [n for n in names if len(n.encode()) >= room]
    if bad:
        shown = ", ".join(repr(n[:60] + "...") for n in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ExperimentDefinitionError(
            f"group {group!r}: the folders of {len(bad)} experiment"
            f"{'s' if len(bad) > 1 else ''} would exceed the path limit of "
            f"{results.PATH_MAX} bytes "
            f"under {base}: {shown}{more}; use shorter names or output_directory",
            offending=bad,
        )


def _execute(
    group: ParametrizedExperiments,
    to_run: list[tuple[str, str, bool]],
    config: BaseConfig,
    options: RunOptions,
    done: dict[str, ExperimentOutcome],
    notifier: RunWatcher | None = None,
    make_progress: MakeProgress | None = None,
    tasks: list[Task] | None = None,
    fingerprints: Fingerprints | None = None,
) -> bool:
    """Run ``to_run`` (or a pipeline's ``tasks``) on the backend; fill ``done``; True if
    stopped by Ctrl-C."""
    backend_name = options.backend or ("slurm" if config.slurm else "local")
    backend_cls = get_backend(backend_name)
    git = GitProbe(os.getcwd())  # answers while the experiments are described
    try:
        if tasks is None:
            tasks = described(group, to_run, config, options, fingerprints)
    except BaseException:
        git.close()
        raise
    labels = {t.folder: label for (label, _, _), t in zip(to_run, tasks, strict=True)}
    if backend_name != "local" or not options.wait:  # tasks are pickled: no secrets there
        config = _without_token(config)
        tasks = [
            t if t.config is None else replace(t, config=_without_token(t.config)) for t in tasks
        ]
    ctx = RunContext(
        group.name,
        config,
        run_members(config, backend_name, config.jobs, git),
        root=results.real_root(config.output_directory),
        capture_logger=config.logger,
        post_mortem=options.post_mortem,
        # Tasks that run elsewhere post into the run's thread themselves (and their
        # outcomes too when nobody waits for them).
        watcher=(
            notifier.task_watcher(not options.wait)
            if notifier is not None and backend_name != "local"
            else None
        ),
        submitter_waits=options.wait,
    )
    backend = backend_cls(ctx, jobs=config.jobs)
    try:  # what it can never run fails the whole run now, before any of it runs
        backend.check(tasks)
    except BaseException:
        backend.close()
        raise
    show = options.progress
    if show is None:
        show = sys.stderr.isatty()
    progress = None
    if show and make_progress is not None:
        progress = make_progress(
            group.name, len(tasks), config.jobs, interval=config.progress_interval_s
        )
        progress.running = backend.running
        backend.ticker = progress.tick
        backend.tick_interval = min(backend.tick_interval, progress.interval)
    interrupted = False
    refs: dict[str, str] = {}  # task name -> its job's ref, as the backend handed it over
    try:
        with progress if progress is not None else nullcontext():
            # A backend that does not chain gets a pipeline's tasks as their upstreams end.
            feeder = None
            if not backend.chains and any(t.after for t in tasks):
                if not options.wait:
                    raise BackendError(
                        f"--no-wait: the {backend_name} backend cannot hold experiments back "
                        "until their upstreams are done; run the pipeline waiting, or with "
                        "--slurm",
                        usage=True,
                    )
                feeder = Feeder(tasks, labels)
            first = feeder.take_ready() if feeder is not None else tasks
            if backend.marks_submitted or backend.detached:  # locked, submitted, marked
                refs, settled = submit_marked(backend, first, ctx)
                for task, result in settled:  # running elsewhere, done meanwhile
                    outcome = _record(Finished(task, result), ctx, backend, refs, labels)
                    done[outcome.name] = outcome
                    if progress is not None and options.wait:
                        progress.update(outcome.status)
            else:
                refs = {name: got.ref for name, got in backend.submit(first).items()}
            if not options.wait:
                _tell_queued(group.name, backend, refs, options.patterns)
            else:
                fed = 0  # tasks submitted while reports were read, not reported yet
                while True:
                    try:
                        reported = 0
                        for report in backend.reports():
                            reported += 1
                            outcome = _record(report, ctx, backend, refs, labels)
                            done[outcome.name] = outcome
                            if progress is not None:
                                progress.update(outcome.status)
                            if feeder is not None:
                                for blocked in feeder.ended(report.task, outcome.status, ctx):
                                    done[blocked.name] = blocked
                                    if progress is not None:
                                        progress.update(blocked.status)
                                fed = max(0, fed - 1) if report.task.after else fed
                                ready = feeder.take_ready()
                                if ready and not interrupted:
                                    if backend.marks_submitted:  # as the first ones went
                                        more, settled = submit_marked(backend, ready, ctx)
                                        refs.update(more)
                                        for task, result in settled:
                                            got_outcome = _record(
                                                Finished(task, result), ctx, backend, refs, labels
                                            )
                                            done[got_outcome.name] = got_outcome
                                    else:
                                        got = backend.submit(ready)
                                        refs.update((n, g.ref) for n, g in got.items())
                                    fed += len(ready)
                        # A backend whose reports() ended before it saw what was fed
                        # during it is asked again, as long as it reports something.
                        if fed and reported and not interrupted:
                            continue
                        break
                    except KeyboardInterrupt:
                        interrupted = True
                        if refs and backend.detached:
                            logger.warning("interrupted: no longer waiting; the jobs run on")
                        else:
                            logger.warning("interrupted: stopping running experiments")
                        backend.interrupt()
    finally:
        backend.close()
    detached = refs if backend.detached else {}
    for name, folder, _ in to_run:
        if name not in done:
            outcome = _from_disk(name, folder)
            if name in detached and outcome.status in (BUSY, NOT_STARTED):
                outcome = ExperimentOutcome(name, QUEUED, folder)  # its job runs on
            done[name] = outcome
    if interrupted and any(o.status == QUEUED for o in done.values()):
        _tell_queued(group.name, backend, detached, options.patterns)
    return interrupted


def _without_token(config: BaseConfig) -> BaseConfig:
    """``config`` without its Slack token, which then reaches SLURM jobs through the
    environment (sbatch passes it on) instead of the pickles under the result tree."""
    if config.slacktoken is None:
        return config
    os.environ.setdefault("XHELPERS_SLACK_TOKEN", config.slacktoken.get_secret_value())
    return config.model_copy(update={"slacktoken": None})


def _tell_queued(
    group: str, backend: Backend, refs: Mapping[str, str], patterns: Sequence[str]
) -> None:
    handles = backend.handles(refs.values())
    if not handles:
        return
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run.py"
    selection = " ".join(shlex.quote(p) for p in (group, *patterns))
    jobs_word = "jobs" if len(handles) > 1 else "job"
    hint = backend.follow_hint(handles)
    print(
        f"submitted to {backend.label}: {jobs_word} {' '.join(handles)}\n"
        f"  follow:  python {prog} {selection} -l" + (f"    (or: {hint})" if hint else "") + "\n"
        f"  cancel:  python {prog} {selection} --cancel",
        flush=True,
    )


def _record(
    report: Report,
    ctx: RunContext,
    backend: Backend,
    refs: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
) -> ExperimentOutcome:
    """The outcome of a report; a lost task's metafile is written here, by the core.

    ``labels``: how the run names tasks of other groups than its own (``group:name``).
    """
    task = report.task
    shown = labels.get(task.folder, task.name) if labels else task.name
    if isinstance(report, Finished):
        r = report.result
        return ExperimentOutcome(shown, r.status, task.folder, r.duration, r.error)
    ref = refs.get(task.name) if backend.marks_submitted else None
    if ref is not None and task.after:  # a job its dependencies may have kept from running
        by = _not_succeeded(task, ctx.group)
        if not by and report.state is not None and report.state.blocked:
            by = [label((g, n), ctx.group) for g, n, f in task.upstreams if f in task.after]
        if by and record_blocked(task, ctx, by):
            return ExperimentOutcome(shown, results.BLOCKED, task.folder, None, blocked_line(by))
    if ref is not None:  # a job that ended without a result: its backend's state says why
        ended = report.state
        word = ended.word if ended is not None else (report.why or "FAILED")
        cancelled = ended.state is JobState.CANCELLED if ended else word == "CANCELLED"
        status = results.INTERRUPTED if cancelled else results.FAILED
        message = f"{backend.label} job {ref} ended {word}"
        error: dict[str, Any] = {
            "type": "JobEnded",
            "message": message,
            "backend": backend.name,
            "state": word,
        }
    else:
        message, error = lost_error(report.exitcode, report.why, report.cause)
        status = results.INTERRUPTED if report.why else results.FAILED
    if record_lost(task, ctx, report.pid, message, error, status, ref):
        if status == results.FAILED:
            logger.error("[%s] %s", shown, message)
        return ExperimentOutcome(shown, status, task.folder, None, message)
    return _from_disk(shown, task.folder)


def _not_succeeded(task: Task, home: str) -> list[str]:
    """Upstreams of ``task`` in this run whose metafile does not say success."""
    return [
        label((group, name), home)
        for group, name, folder in task.upstreams
        if folder in task.after and results.read_status(folder) != results.DONE
    ]


def _from_disk(name: str, folder: str) -> ExperimentOutcome:
    """What the metafile says of an experiment the backend gave no clear word on."""
    meta = results.read_metafile(folder)
    if meta is None:
        return ExperimentOutcome(name, NOT_STARTED, folder)
    status = meta.get("status")
    error = meta.get("error") or {}
    message = f"{error.get('type', '')}: {error.get('message', '')}" if error else None
    if status == results.INTERRUPTED:  # as -jN words it: no exception type to show
        message = str(error.get("message") or "interrupted")
    if status == results.DONE:
        return ExperimentOutcome(name, SUCCESS, folder, meta.get("duration"))
    if status == results.RUNNING and results.standing(meta, folder) == results.INTERRUPTED:
        return ExperimentOutcome(name, results.INTERRUPTED, folder, None, "interrupted")
    if status == results.RUNNING:
        return ExperimentOutcome(name, BUSY, folder)
    if status == results.SUBMITTED:
        return ExperimentOutcome(name, QUEUED, folder)
    return ExperimentOutcome(name, str(status), folder, meta.get("duration"), message)
