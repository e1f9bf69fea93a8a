"""Run experiments on a SLURM cluster: job arrays through submitit.

The backend groups tasks by their resources, submits each group as job arrays (split
to respect the cluster's ``MaxArraySize``; one ``sbatch`` per array) and reports what
became of each task. On the node, :class:`SlurmTask` calls the core's
:func:`xhelpers.execution.execute`, exactly as the local backend does: same lock,
folder, logging and metafile, which also holds ``ref`` and ``slurm_job_id`` (the job
id), ``node``, ``attempts`` and the paths of the task's submitit stdout/stderr files.

Pipelines (``chains``): one submit() call gets every stage; tasks with ``after`` go in
arrays held by SLURM dependencies on their upstreams' arrays, planned stage by stage
by :mod:`~xhelpers.backends.slurm.chains`. A job ends non-zero when its experiment did
not succeed (:mod:`~xhelpers.backends.slurm.job`), so SLURM cancels what depends on it
(``--kill-on-invalid-dep=yes``); such a task is reported Lost with a ``blocked``
status. A requeued upstream is pending, not failed: its downstreams keep waiting.

The ``submitted`` marker (``marks_submitted``): the runner takes the lock of every task,
calls :meth:`SlurmBackend.submit`, writes each task's ``submitted`` metafile with the
job id it got back and only then releases the locks. A task that starts meanwhile
waits for its lock (bounded), so its own status is never overwritten. An ``sbatch``
failure cancels whatever this call already submitted and raises
:class:`~xhelpers.errors.BackendError` with SLURM's message; no marker is written.

submitit is imported when a backend is made or a task runs, not with this module:
a listing that asks the class about jobs (:meth:`SlurmBackend.states`) does not pay
for it.

Requeue: :class:`SlurmTask` is submitit-checkpointable. On timeout or preemption
(``USR2``) submitit calls :meth:`SlurmTask.checkpoint`, requeues the job and ends it
with ``sys.exit`` inside the experiment; ``execute`` records that as ``submitted``
again (see :func:`~xhelpers.execution.expect_requeue`), not as a failure. Past
``slurm_max_requeues`` the experiment fails with :class:`RequeueLimitReached`.

While waiting, one ``sacct`` call per poll covers every job (and one ``squeue`` call
when sacct shows some ended: a job SLURM requeued, after a node failure say, is waited
for, not lost); results are picked up from submitit's result files (a directory
listing, no scheduler call).

Housekeeping (:mod:`~xhelpers.backends.slurm.housekeeping`): a task's submitit files go
once its experiment succeeded, as the waiting runner reports it or at the start of the
group's next run (:meth:`SlurmBackend.tidy`); a task that did not succeed keeps its
stdout/stderr. ``slurm_keep_job_files`` keeps everything.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from xhelpers.backends.base import Backend, Finished, JobStatus, Lost, Report, Submitted
from xhelpers.backends.slurm import housekeeping, packing
from xhelpers.backends.slurm.chains import Batch, Planner, stages_of
from xhelpers.backends.slurm.node import (
    PackResult,
    PackTask,
    RequeueLimitReached,
    SlurmTask,
    node_succeeded,
)
from xhelpers.backends.slurm.node import submitit_module as _submitit
from xhelpers.backends.slurm.node import submitit_utils as _utils
from xhelpers.backends.slurm.queue import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    _base_id,
    _one_line,
    cancel_jobs,
    job_of,
    job_statuses,
    normalize,
    pack_ref,
    parse_sacct,
    partition_capacity,
    query_states,
    read_max_array_size,
    slurm_cancel,
    slurm_states,
)
from xhelpers.backends.slurm.resources import (
    at_once,
    resources_for,
    sbatch_parameters,
    with_dependency,
)
from xhelpers.config import RESOURCE_KEYS, BaseConfig
from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, TaskResult
from xhelpers.errors import BackendError

__all__ = [
    "ACTIVE_STATES",
    "RESOURCE_KEYS",
    "SLURM_FOLDER",
    "TERMINAL_STATES",
    "RequeueLimitReached",
    "SlurmBackend",
    "SlurmTask",
    "cancel_jobs",
    "node_succeeded",
    "parse_sacct",
    "query_states",
    "read_max_array_size",
    "slurm_folder",
]

logger = logging.getLogger(__name__)

SLURM_FOLDER = ".slurm"  # submitit's files: <output_directory>/<group>/.slurm/


_RESULT_CHECK_S = 1.0  # result files are looked for this often (a listdir, no SLURM call)
# What every job runs: submitit's runner, ending non-zero when the experiment did not
# succeed, so that SLURM holds back (and cancels) what depends on it (see .job).
_JOB_PYTHON = f"{shlex.quote(sys.executable)} -u -m xhelpers.backends.slurm.job"
_BLOCKED = "never started: a job it depends on did not succeed (SLURM: {reason})"


def slurm_folder(config: BaseConfig, group: str) -> Path:
    """Where submitit's files of ``group`` go."""
    return Path(os.path.abspath(config.output_directory)) / group / SLURM_FOLDER


# -- the backend ---------------------------------------------------------------------------
class SlurmBackend(Backend):
    """Submit tasks as SLURM job arrays; report each as its result or its job's end arrives.

    ``jobs`` is ignored: SLURM decides what runs at once (see ``slurm_array_parallelism``).
    """

    name = "slurm"
    label = "SLURM"
    can_detach = True
    can_requeue = True
    marks_submitted = True
    chains = True  # SLURM dependencies: see xhelpers.backends.slurm.chains

    def __init__(self, ctx: RunContext, *, jobs: int = 1) -> None:
        _submitit()  # a missing submitit is one line before anything is locked
        super().__init__(ctx, jobs=jobs)
        self.folder = slurm_folder(ctx.config, ctx.group)
        self.poll_interval_s = float(ctx.config.slurm_poll_interval_s)
        self.job_ids: dict[str, str] = {}  # task name -> job id ("123_4", or "123" alone)
        self.arrays: list[str] = []  # job ids of the submitted arrays/jobs, in order
        self.sbatch_calls = 0
        self.sacct_calls = 0
        self._cluster_max: int | None = None
        self._executors: dict[str, Any] = {}
        self._pending: dict[str, list[Task]] = {}  # job id -> its task(s), not reported yet
        self._packs: set[str] = set()  # job ids of packs (their _pending: tasks by slot)
        # partition -> its CPUs and time limit (sinfo), read once
        self._capacity: dict[str | None, tuple[int | None, float | None]] = {}
        self._estimates: dict[str, float] = {}  # folder -> recorded duration (packs)
        self._ended: dict[str, str] = {}  # job id -> terminal state seen without a result
        self._next_query = 0.0
        self._stopping = False
        self.keep_files = bool(ctx.config.slurm_keep_job_files)
        # array id -> {job id: experiment folder} of its tasks not seen to succeed yet:
        # the array's script and index go when the last one does (see .housekeeping).
        self._unsucceeded: dict[str, dict[str, str | list[str]]] = {}
        self._indexed: dict[str, int] = {}  # array id -> tasks its index was written with

    # -- sizes -------------------------------------------------------------------------
    @property
    def cluster_max_array_size(self) -> int:
        """``MaxArraySize`` of the cluster; read once per backend."""
        if self._cluster_max is None:
            self._cluster_max = read_max_array_size()
        return self._cluster_max

    @property
    def max_array_size(self) -> int:
        """Most tasks per array: MaxArraySize (indices 0..MaxArraySize-1), capped by config."""
        limit = max(1, self.cluster_max_array_size)  # 0: arrays disabled, plain jobs
        if self.ctx.config.slurm_max_array_size is not None:
            limit = min(limit, self.ctx.config.slurm_max_array_size)
        return limit

    # -- submission ---------------------------------------------------------------------
    def _resources(self, task: Task) -> dict[str, Any]:
        return resources_for(task.config or self.ctx.config, getattr(task, "resources", None))

    def _resource_sets(
        self, tasks: Sequence[Task]
    ) -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
        """The distinct resource sets of ``tasks`` by key, and each task's key (by id)."""
        resources: dict[str, dict[str, Any]] = {}
        keys: dict[int, str] = {}
        for task in tasks:
            res = self._resources(task)
            key = json.dumps(res, sort_keys=True, default=str)
            resources.setdefault(key, res)
            keys[id(task)] = key
        return resources, keys

    def submit(self, tasks: Sequence[Task]) -> dict[str, Submitted]:
        """Submit as arrays; {name: job id and log files}. The caller holds the tasks'
        locks (``marks_submitted``). BackendError if sbatch fails, after withdrawing
        whatever this call submitted.

        Tasks with ``after`` go in the same call: stage by stage, each downstream array
        held by SLURM dependencies on the arrays submitted before it (see
        :mod:`~xhelpers.backends.slurm.chains`)."""
        if not tasks:
            return {}
        # resources first: a bad setting fails before any sbatch
        resources, keys = self._resource_sets(tasks)
        groups = _by_stage_and_key(tasks, keys)
        sizes = self._pack_sizes(groups, resources)
        if any(size > 1 for size in sizes.values()):
            return self._submit_packed(groups, resources, sizes)
        planner = Planner(tasks, lambda task: keys[id(task)], self.max_array_size)
        submitted: list[tuple[Task, str]] = []
        batches = 0
        try:
            for stage in planner.stages:
                for batch in planner.batches(stage):
                    ids = self._submit(resources[batch.key], batch)
                    planner.place(batch, ids)
                    submitted.extend(zip(batch.tasks, ids, strict=True))
                    batches += 1
        except BaseException:
            if submitted:  # nothing may stay submitted: none of them is marked
                self.withdraw([j for _, j in submitted])
            raise
        for task, job_id in submitted:
            self.job_ids[task.name] = job_id
            self._pending[job_id] = [task]
        logger.info(
            "submitted %d experiments as %d SLURM jobs/arrays in %d stage(s): %s",
            len(submitted),
            batches,
            len(planner.stages),
            " ".join(self.arrays),
        )
        return {
            task.name: Submitted(job_id, self._log_members(job_id)) for task, job_id in submitted
        }

    def check(self, tasks: Sequence[Task]) -> None:
        """A resource set that may be packed whose ``pack_target_min`` is longer than its
        partition's time limit is a ConfigError (one sinfo call), before anything runs."""
        resources, _ = self._resource_sets(tasks)
        for res in resources.values():
            if res["experiments_per_task"] != 1:
                packing.target_s(res, self._partition(res)[1])

    # -- packs ----------------------------------------------------------------------------
    def _partition(self, res: Mapping[str, Any]) -> tuple[int | None, float | None]:
        """The partition's CPUs and time limit (one sinfo call per partition)."""
        partition = res["partition"]
        if partition not in self._capacity:
            self._capacity[partition] = partition_capacity(partition)
        return self._capacity[partition]

    def _pack_sizes(
        self,
        groups: Mapping[tuple[int, str], list[Task]],
        resources: Mapping[str, dict[str, Any]],
    ) -> dict[tuple[int, str], int]:
        """Experiments per array task, by stage and resource set (see :mod:`.packing`:
        what runs at once is a stage's); 1 for every set unpacked. Reads the tasks'
        metafiles only where it chooses."""
        sizes: dict[tuple[int, str], int] = {}
        for (number, key), members in groups.items():
            res = resources[key]
            if res["experiments_per_task"] is not None:
                sizes[number, key] = int(res["experiments_per_task"])
                if sizes[number, key] > 1:
                    self._estimates.update(packing.recorded_durations(members))
                continue
            if len(members) == 1:
                sizes[number, key] = 1
                continue
            cpus, limit = self._partition(res)
            durations = packing.recorded_durations(members)
            self._estimates.update(durations)
            workers = (members[0].config or self.ctx.config).workers
            sizes[number, key] = packing.pack_size(
                len(members), res, workers, list(durations.values()), cpus, limit
            )
            logger.debug(
                "%d experiments, %d durations recorded, partition CPUs %s: %d per task",
                len(members),
                len(durations),
                cpus,
                sizes[number, key],
            )
        return sizes

    def _submit_packed(
        self,
        groups: Mapping[tuple[int, str], list[Task]],
        resources: Mapping[str, dict[str, Any]],
        sizes: Mapping[tuple[int, str], int],
    ) -> dict[str, Submitted]:
        """Submit the ``groups`` (by stage and resource set, stages in order) in packs:
        arrays of packs, a later stage's held by ``afterany`` on the arrays of what it
        uses (each of its experiments checks its own upstreams when its pack reaches
        it: one that did not succeed blocks only its own downstreams)."""
        placed: dict[str, str] = {}  # folder -> array id of its pack
        out: dict[str, Submitted] = {}
        submitted: list[str] = []
        try:
            for (number, key), members in groups.items():
                res = resources[key]
                waits = sorted(
                    {placed[f] for t in members for f in t.after if f in placed}, key=int
                )
                dependency = "afterany:" + ":".join(waits) if waits else ""
                packs = packing.split(members, sizes[number, key])
                step = self.max_array_size
                for start in range(0, len(packs), step):
                    chunk = packs[start : start + step]
                    ids = self._submit_packs(res, chunk, dependency)
                    submitted.extend(ids)
                    for pack, job_id in zip(chunk, ids, strict=True):
                        self._pending[job_id] = pack
                        self._packs.add(job_id)
                        for slot, task in enumerate(pack):
                            ref = pack_ref(job_id, slot)
                            placed[task.folder] = _base_id(job_id)
                            self.job_ids[task.name] = ref
                            out[task.name] = Submitted(ref, self._log_members(job_id))
        except BaseException:
            if submitted:
                self.withdraw(submitted)
            raise
        logger.info(
            "submitted %d experiments in %d packed SLURM array task(s), %d array(s) in %d "
            "stage(s): %s",
            len(out),
            len(submitted),
            len({_base_id(j) for j in submitted}),
            len({number for number, _ in groups}),
            " ".join(self.arrays),
        )
        return out

    def _submit_packs(
        self, res: Mapping[str, Any], packs: list[list[Task]], dependency: str
    ) -> list[str]:
        """One sbatch: an array of packs; job ids in pack order."""
        workers = (packs[0][0].config or self.ctx.config).workers
        running = at_once(res, workers)
        known = self._estimates
        calls = [
            PackTask(
                pack,
                list(range(len(pack))),
                self.ctx,
                max_requeues=int(res["max_requeues"]),
                running=running,
                limit_s=packing.pack_limit_s(res),
                timeout_min=int(res["timeout_min"]),
                estimates={t.folder: known[t.folder] for t in pack if t.folder in known},
            )
            for pack in packs
        ]
        batch = Batch("", [pack[0] for pack in packs], None, dependency)
        return self._submit(res, batch, calls, running, [[t.folder for t in p] for p in packs])

    def preview(self, tasks: Sequence[Task]) -> list[str]:
        """The sbatch calls :meth:`submit` would make, one line each, stage by stage:
        how many tasks, their resources and their --dependency. Job ids are not known
        before submitting: arrays are named by their order (A1, A2, ...)."""
        resources, keys = self._resource_sets(tasks)
        planner = Planner(tasks, lambda task: keys[id(task)], self.max_array_size)
        lines = []
        for number, batch, stage in _previewed(planner):
            shown = ", ".join(f"{k}={v}" for k, v in sorted(resources[batch.key].items()))
            size = len(batch.tasks)
            what = "a job" if size == 1 and batch.indices is None else f"an array of {size}"
            first = batch.tasks[0].name + (f" ... {batch.tasks[-1].name}" if size > 1 else "")
            named = re.sub(r"(?<=:)(\d+)", r"A\1", batch.dependency)
            depends = f"; --dependency={named}" if named else ""
            lines.append(f"sbatch A{number} (stage {stage}): {what}: {first}; {shown}{depends}")
        return lines

    def _executor(self, res: Mapping[str, Any], dependency: str = "", running: int = 1) -> Any:
        """An executor for ``res`` (tasks running ``running`` experiments at once):
        cached, or (with a dependency) made for one array."""
        key = json.dumps([res, running], sort_keys=True, default=str)
        executor = None if dependency else self._executors.get(key)
        if executor is None:
            try:
                params = sbatch_parameters(res, self.ctx.group, running)
                if dependency:
                    params = with_dependency(params, dependency)
                executor = _submitit().SlurmExecutor(
                    folder=self.folder, max_num_timeout=int(res["max_requeues"]), python=_JOB_PYTHON
                )
                executor.update_parameters(**params)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"SLURM: {_one_line(str(exc))}") from None
            if not dependency:
                self._executors[key] = executor
        return executor

    def _submit(
        self,
        res: Mapping[str, Any],
        batch: Batch,
        calls: Sequence[SlurmTask | PackTask] | None = None,
        running: int = 1,
        folders: Sequence[str | list[str]] | None = None,
    ) -> list[str]:
        """One sbatch: an array (or a plain job for one task); job ids in task order.
        ``calls``/``folders``: what each job runs and the folders it runs in (a pack's,
        by slot), when not one SlurmTask per task of the batch."""
        executor = self._executor(res, batch.dependency, running)
        self.folder.mkdir(parents=True, exist_ok=True)
        before = set(os.listdir(self.folder))
        if calls is None:
            calls = [SlurmTask(task, self.ctx, int(res["max_requeues"])) for task in batch.tasks]
        calls = list(calls)
        try:
            # submitit prints sbatch's stderr itself; the error we raise carries it.
            with contextlib.redirect_stderr(io.StringIO()):
                if len(calls) == 1 and batch.indices is None:
                    ids = [str(executor.submit_array(calls)[0].job_id)]
                else:
                    ids = self._submit_array(executor, calls, batch.indices)
        except _utils().FailedJobError as exc:
            self._remove_leftovers(before)
            raise BackendError(f"sbatch: {_one_line(str(exc))}") from None
        except Exception as exc:
            self._remove_leftovers(before)
            raise BackendError(f"sbatch: {type(exc).__name__}: {_one_line(str(exc))}") from None
        self.sbatch_calls += 1
        array = _base_id(ids[0])
        self.arrays.append(array)
        if not self.keep_files:
            if folders is None:
                folders = [task.folder for task in batch.tasks]
            self._index(array, dict(zip(ids, folders, strict=True)))
        return ids

    def _index(self, array: str, tasks: dict[str, str | list[str]]) -> None:
        """Record which experiment each job of ``array`` runs, for later runs to tidy."""
        try:
            housekeeping.write_index(self.folder, array, tasks)
        except OSError as exc:  # the jobs run all the same; only their files stay
            logger.warning("SLURM array %s: cannot write its index: %s", array, exc)
            return
        self._unsucceeded[array] = dict(tasks)
        self._indexed[array] = len(tasks)

    def _submit_array(
        self, executor: Any, calls: list[SlurmTask | PackTask], indices: list[int] | None
    ) -> list[str]:
        """submitit's array submission, with the job's program ours (submitit's own
        array path drops the executor's ``python``) and any array indices (sparse ones
        align a downstream array with its upstream for ``aftercorr``)."""
        utils = _utils()
        indices = list(range(len(calls))) if indices is None else indices
        folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
        timeout_min = executor.parameters.get("time", 5)
        pickles = []
        for call in calls:
            delayed = utils.DelayedSubmission(call)
            delayed.set_timeout(timeout_min, executor.max_num_timeout)
            path = folder / f"{uuid.uuid4().hex}.pkl"
            delayed.dump(path)
            pickles.append(path)
        array = _submitit().SlurmExecutor(
            folder=self.folder, max_num_timeout=executor.max_num_timeout, python=_JOB_PYTHON
        )
        array.update_parameters(**executor.parameters)
        # map_count makes submitit name the logs per task (%A_%a); "array" then says which.
        array.parameters["map_count"] = len(calls)
        parallelism = min(len(calls), int(array.parameters.get("array_parallelism", 256)))
        extra = dict(array.parameters.get("additional_parameters") or {})
        extra["array"] = f"{_ranges(indices)}%{parallelism}"
        array.parameters["additional_parameters"] = extra
        first = array._submit_command(array._submitit_command_str)
        ids = [f"{first.job_id}_{index}" for index in indices]
        # Each task waits for its pickle (submitit's runner polls for it) and its lock.
        for job_id, path in zip(ids, pickles, strict=True):
            utils.JobPaths(self.folder, job_id=job_id, task_id=0).move_temporary_file(
                path, "submitted_pickle"
            )
        return ids

    def _remove_leftovers(self, before: set[str]) -> None:
        """Delete the pickles and sbatch script a failed submission left behind."""
        for name in set(os.listdir(self.folder)) - before:
            path = self.folder / name
            if not path.is_symlink() and (
                name.startswith(".submission_file_") or name.endswith(".pkl")
            ):
                with contextlib.suppress(OSError):
                    path.unlink()

    def withdraw(self, refs: Sequence[str]) -> None:
        """Cancel jobs just submitted (their tasks wait for the submitter's locks) and
        drop their files; they are forgotten."""
        bases = {_base_id(job_of(ref)) for ref in refs}
        for job_id in [j for j in self._pending if _base_id(j) in bases]:
            for task in self._pending.pop(job_id):
                self.job_ids.pop(task.name, None)
            self._packs.discard(job_id)
        for base in bases:  # their index goes with their other files below
            self._unsucceeded.pop(base, None)
            self._indexed.pop(base, None)
        try:
            cancel_jobs(bases)
        except BackendError as exc:
            logger.error("could not cancel SLURM jobs %s: %s", " ".join(sorted(bases)), exc)
            return
        names = os.listdir(self.folder)
        for name in names:
            if name.split("_", 1)[0] in bases:
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
        for name in names:  # submitit's links to the scripts just deleted
            path = self.folder / name
            if name.startswith(".submission_file_") and path.is_symlink() and not path.exists():
                with contextlib.suppress(OSError):
                    path.unlink()

    def _log_members(self, job_id: str) -> dict[str, str]:
        paths = _utils().JobPaths(self.folder, job_id=job_id, task_id=0)
        return {
            "slurm_job_id": job_id,  # what metafiles held before the seam's "ref"
            "slurm_stdout": str(paths.stdout),
            "slurm_stderr": str(paths.stderr),
        }

    # -- waiting ------------------------------------------------------------------------
    def reports(self) -> Iterator[Report]:
        while self._pending:
            yield from self._collect_results()
            if self._stopping or not self._pending:
                return
            now = time.monotonic()
            if now >= self._next_query:
                self._next_query = now + self.poll_interval_s
                yield from self._collect_lost()
                if not self._pending:
                    return
            if self.ticker:
                self.ticker()
            wait = min(_RESULT_CHECK_S, self.poll_interval_s, self._next_query - time.monotonic())
            time.sleep(max(0.01, wait))

    def _result_path(self, job_id: str) -> Path:
        path: Path = _utils().JobPaths(self.folder, job_id=job_id, task_id=0).result_pickle
        return path

    def _collect_results(self) -> Iterator[Report]:
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            if name.endswith("_0_result.pkl"):
                job_id = name[: -len("_0_result.pkl")]
                if job_id in self._pending:
                    yield from self._report(job_id)

    def _report(self, job_id: str, status: JobStatus | None = None) -> list[Report]:
        """The reports of a job whose result file exists, or (status given) that ended
        without: one, or one per experiment of a pack."""
        tasks = self._pending.pop(job_id)
        self._ended.pop(job_id, None)
        if job_id in self._packs:
            self._packs.discard(job_id)
            return self._pack_reports(job_id, tasks, status)
        task = tasks[0]
        if status is not None and status.blocked:
            cause = _BLOCKED.format(reason=status.reason)
            logger.info("[%s] SLURM job %s %s", task.name, job_id, cause)
            return [Lost(task, None, None, cause=cause, state=status)]
        if status is not None:
            recorded = self._recorded(task, job_id)
            if recorded is not None:
                return [recorded]
            logger.warning(
                "[%s] SLURM job %s ended %s without a result", task.name, job_id, status.raw
            )
            return [Lost(task, None, None, status.raw, state=status)]
        value = self._result(job_id)
        if isinstance(value, TaskResult):
            self._served(job_id, value.status == results.DONE)
            return [Finished(task, value)]
        recorded = self._recorded(task, job_id)
        return [recorded or Lost(task, None, None, "FAILED", state=normalize("FAILED"))]

    def _result(self, job_id: str) -> TaskResult | PackResult | None:
        """What the job returned; None (said in the log) if it failed outside its
        experiments or its result cannot be read."""
        try:
            outcome, value = _utils().pickle_load(self._result_path(job_id))
        except Exception as exc:
            logger.error("unreadable result of SLURM job %s: %s", job_id, exc)
            return None
        if outcome == "success" and isinstance(value, (TaskResult, PackResult)):
            return value
        tail = str(value).strip().splitlines()[-1:] or ["?"]
        paths = _utils().JobPaths(self.folder, job_id=job_id, task_id=0)
        logger.error(
            "SLURM job %s failed outside its experiments: %s (see %s)",
            job_id,
            tail[0],
            paths.stderr,
        )
        return None

    def _pack_reports(
        self, job_id: str, tasks: list[Task], status: JobStatus | None
    ) -> list[Report]:
        """A pack's reports: each experiment's result, or what its metafile recorded
        (success under its ref), or Lost with the job's end."""
        by_name: dict[str, TaskResult] = {}
        if status is None:
            value = self._result(job_id)
            if isinstance(value, PackResult):
                by_name = {r.name: r for r in value.results}
        ended = status or normalize("FAILED")
        out: list[Report] = []
        for slot, task in enumerate(tasks):
            result = by_name.get(task.name)
            if result is not None:
                out.append(Finished(task, result))
                continue
            recorded = self._recorded(task, pack_ref(job_id, slot), serve=False)
            if recorded is not None:
                out.append(recorded)
                continue
            logger.warning(
                "[%s] SLURM job %s ended %s without its result", task.name, job_id, ended.raw
            )
            out.append(Lost(task, None, None, ended.raw, state=ended))
        succeeded = all(isinstance(r, Finished) and r.result.status == results.DONE for r in out)
        self._served(job_id, succeeded)
        return out

    def _recorded(self, task: Task, ref: str, serve: bool = True) -> Finished | None:
        """The success its metafile records, for a job whose result file is gone: the
        next run of the group (another shell's) may tidy it away before we read it.
        ``serve=False``: an experiment of a pack (its job's files stay until the whole
        pack is reported)."""
        meta = housekeeping.recorded_success(task.folder, ref)
        if meta is None:
            return None
        if serve:
            self._served(ref, True)
        duration = meta.get("duration")
        return Finished(
            task, TaskResult(task.name, results.DONE, duration if _is_number(duration) else None)
        )

    def _served(self, job_id: str, succeeded: bool) -> None:
        """Remove what a reported task leaves that nothing needs any more.

        The metafile holds the outcome, so the pickles (task in, result out) have served;
        a success's stdout/stderr too when they hold only submitit's lines (its logging
        is in its experiment.log; what it printed is kept), and once an array's tasks all
        succeeded, its script and index. A failure keeps its logs.
        """
        if self.keep_files:
            return
        if not succeeded:
            housekeeping.remove(self.folder, housekeeping.pickle_files(job_id))
            return
        housekeeping.remove(self.folder, housekeeping.served_files(self.folder, job_id))
        array = _base_id(job_id)
        left = self._unsucceeded.get(array)
        if left is None:
            return
        left.pop(job_id, None)
        if not left:
            housekeeping.remove_array(self.folder, array)
            del self._unsucceeded[array]
            del self._indexed[array]

    def _collect_lost(self) -> Iterator[Report]:
        """One sacct call for all pending jobs; a job that ended for good without a result
        is Lost (one that SLURM requeued, e.g. after a node failure, is waited for).

        Its result file is looked for once more after sacct answered (a job writes it
        before it ends) and, for shared filesystems that cache directory entries, the
        job must be seen ended on two polls in a row.
        """
        self.sacct_calls += 1
        try:
            states = job_statuses(self._pending)
        except BackendError as exc:
            logger.warning("cannot query SLURM job states (will retry): %s", exc)
            return
        with contextlib.suppress(OSError):  # make NFS revalidate the folder's entries
            os.utime(self.folder)
        for job_id in list(self._pending):
            status = states.get(job_id)
            if status is None or not status.final:
                self._ended.pop(job_id, None)
                continue
            if status.blocked:  # it never ran: no result can come
                yield from self._report(job_id, status)
            elif self._result_path(job_id).exists():
                yield from self._report(job_id)
            elif job_id in self._ended:
                yield from self._report(job_id, status)
            else:
                self._ended[job_id] = status.raw

    def interrupt(self) -> None:
        """Stop waiting; the jobs keep running (cancel them with :meth:`cancel`)."""
        self._stopping = True

    def close(self) -> None:
        """Nothing to stop: submitted jobs run on without this process. The index of an
        array some of whose tasks succeeded shrinks to the others (see .housekeeping)."""
        for array, left in self._unsucceeded.items():
            if len(left) < self._indexed.get(array, 0):
                try:
                    housekeeping.write_index(self.folder, array, left)
                except OSError as exc:  # a later tidy reads the old one: slower, as safe
                    logger.debug("SLURM array %s: index not rewritten: %s", array, exc)
                self._indexed[array] = len(left)

    # -- the seam's questions, from any process --------------------------------------------
    @classmethod
    def states(cls, refs: Iterable[str]) -> dict[str, JobStatus]:
        """One sacct call (squeue for ends in question, or when accounting is down)."""
        return slurm_states(refs)

    @classmethod
    def cancel(cls, refs: Iterable[str]) -> dict[str, bool]:
        """One squeue call to tell live jobs from ended ones, one scancel for the live."""
        return slurm_cancel(refs)

    @classmethod
    def tidy(cls, config: BaseConfig, group: str) -> None:
        """Remove the submitit files of earlier jobs of ``group`` whose experiments
        succeeded (see :mod:`~xhelpers.backends.slurm.housekeeping`): one listing of
        ``.slurm/`` when there are none, no SLURM call."""
        if config.slurm_keep_job_files:
            return
        housekeeping.tidy(slurm_folder(config, group))

    @classmethod
    def handles(cls, refs: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(_base_id(job_of(ref)) for ref in refs))

    @classmethod
    def follow_hint(cls, handles: Sequence[str]) -> str | None:
        return f"squeue -j {','.join(handles)}" if handles else None


def _by_stage_and_key(
    tasks: Sequence[Task], keys: Mapping[int, str]
) -> dict[tuple[int, str], list[Task]]:
    """``tasks`` by (stage, resource set key), stages in order (see :mod:`.chains`)."""
    groups: dict[tuple[int, str], list[Task]] = {}
    for number, stage in enumerate(stages_of(tasks)):
        for task in stage:
            groups.setdefault((number, keys[id(task)]), []).append(task)
    return groups


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ranges(indices: Sequence[int]) -> str:
    """Array indices as sbatch's ``--array`` list: ``0-4,7,9-10``."""
    parts: list[str] = []
    start = prev = indices[0]
    for index in [*indices[1:], None]:
        if index is not None and index == prev + 1:
            prev = index
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if index is not None:
            start = prev = index
    return ",".join(parts)


def _previewed(planner: Planner) -> Iterator[tuple[int, Batch, int]]:
    """(number, batch, stage) of each sbatch the planner would have made, placed under
    made-up job ids (1, 2_0, ...: shown as A1, A2_0) so later stages' dependencies can
    name them."""
    number = 0
    for stage, tasks in enumerate(planner.stages):
        for batch in planner.batches(tasks):
            number += 1
            if len(batch.tasks) == 1 and batch.indices is None:
                planner.place(batch, [str(number)])
            else:
                indices = batch.indices or list(range(len(batch.tasks)))
                planner.place(batch, [f"{number}_{i}" for i in indices])
            yield number, batch, stage
