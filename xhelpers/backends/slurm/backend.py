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

Packs (:mod:`~xhelpers.backends.slurm.packing`): many experiments per array task, sized
and planned there for :meth:`SlurmBackend.submit` and its ``--dry-run`` preview
(:mod:`~xhelpers.backends.slurm.preview`) alike.

The backend is three parts: this module decides what goes in which array; the
``sbatch`` calls and their undoing are :mod:`~xhelpers.backends.slurm.sbatch`'s; how
jobs end, as they end (``reports()``), is :mod:`~xhelpers.backends.slurm.reporting`'s.

Housekeeping (:mod:`~xhelpers.backends.slurm.housekeeping`): a task's submitit files go
once its experiment succeeded, as the waiting runner reports it or at the start of the
group's next run (:meth:`SlurmBackend.tidy`); a task that did not succeed keeps its
stdout/stderr. ``slurm_keep_job_files`` keeps everything.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xhelpers.backends.base import Backend, JobStatus, Submitted
from xhelpers.backends.slurm import housekeeping, packing, preview
from xhelpers.backends.slurm.chains import Batch, Planner, stages_of
from xhelpers.backends.slurm.limits import partition_capacity, read_max_array_size
from xhelpers.backends.slurm.node import (
    PackTask,
    RequeueLimitReached,
    SlurmTask,
    node_succeeded,
)
from xhelpers.backends.slurm.node import submitit_module as _submitit
from xhelpers.backends.slurm.queue import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    cancel_jobs,
    parse_sacct,
    query_states,
    slurm_cancel,
    slurm_states,
)
from xhelpers.backends.slurm.refs import array_of, job_of, pack_ref
from xhelpers.backends.slurm.reporting import JobReporting
from xhelpers.backends.slurm.resources import resources_for
from xhelpers.backends.slurm.sbatch import Sbatch
from xhelpers.backends.threads import ThreadPolicy
from xhelpers.config import RESOURCE_KEYS, BaseConfig
from xhelpers.core.execution import RunContext, Task

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


def slurm_folder(config: BaseConfig, group: str) -> Path:
    """Where submitit's files of ``group`` go."""
    return Path(os.path.abspath(config.output_directory)) / group / SLURM_FOLDER


# -- the backend ---------------------------------------------------------------------------
class SlurmBackend(JobReporting, Sbatch, Backend):
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
        self._threads = ThreadPolicy.of(os.environ)
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
        if _packed(sizes):
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
    ) -> dict[tuple[int, str], packing.PackSize]:
        """Experiments per array task, and why, by stage and resource set (see
        :mod:`.packing`: what runs at once is a stage's); 1 for every set unpacked.
        Reads the tasks' metafiles only where it chooses or packs."""
        sizes: dict[tuple[int, str], packing.PackSize] = {}
        for (number, key), members in groups.items():
            res = resources[key]
            workers = packing.workers_of(members[0], self.ctx.config)
            if res["experiments_per_task"] is not None or len(members) == 1:
                sizes[number, key] = packing.sizing(len(members), res, workers, [], None)
                if sizes[number, key].size > 1:
                    self._estimates.update(packing.recorded_durations(members))
                continue
            cpus, limit = self._partition(res)
            durations = packing.recorded_durations(members)
            self._estimates.update(durations)
            sizes[number, key] = packing.sizing(
                len(members), res, workers, list(durations.values()), cpus, limit
            )
            logger.debug(
                "%d experiments, %d durations recorded, partition CPUs %s: %d per task",
                len(members),
                len(durations),
                cpus,
                sizes[number, key].size,
            )
        return sizes

    def _submit_packed(
        self,
        groups: Mapping[tuple[int, str], list[Task]],
        resources: Mapping[str, dict[str, Any]],
        sizes: Mapping[tuple[int, str], packing.PackSize],
    ) -> dict[str, Submitted]:
        """Submit the ``groups`` (by stage and resource set, stages in order) in packs:
        arrays of packs, a later stage's held by ``afterany`` on the arrays of what it
        uses (each of its experiments checks its own upstreams when its pack reaches
        it: one that did not succeed blocks only its own downstreams)."""
        arrays = packing.plan(groups, _sizes(sizes), self.max_array_size)
        bases: list[str] = []  # array id of each of ``arrays`` submitted
        out: dict[str, Submitted] = {}
        submitted: list[str] = []
        try:
            for array in arrays:
                dependency = packing.afterany(bases[i] for i in array.after)
                ids = self._submit_packs(resources[array.key], array.packs, dependency)
                submitted.extend(ids)
                bases.append(array_of(ids[0]))
                for pack, job_id in zip(array.packs, ids, strict=True):
                    self._pending[job_id] = pack
                    self._packs.add(job_id)
                    for slot, task in enumerate(pack):
                        ref = pack_ref(job_id, slot)
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
            len(bases),
            len({number for number, _ in groups}),
            " ".join(self.arrays),
        )
        return out

    def _submit_packs(
        self, res: Mapping[str, Any], packs: list[list[Task]], dependency: str
    ) -> list[str]:
        """One sbatch: an array of packs; job ids in pack order."""
        running = packing.running_in(res, packs, self.ctx.config)
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
        how many tasks, how many experiments each (and why), their resources and their
        --dependency (see :mod:`.preview`). Planned and sized by the code that submits."""
        resources, keys = self._resource_sets(tasks)
        groups = _by_stage_and_key(tasks, keys)
        sizes = self._pack_sizes(groups, resources)
        if _packed(sizes):
            arrays = packing.plan(groups, _sizes(sizes), self.max_array_size)
            return preview.packed_lines(arrays, resources, sizes, self.ctx.config)
        planner = Planner(tasks, lambda task: keys[id(task)], self.max_array_size)
        return preview.unpacked_lines(planner, resources, sizes)

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
        """One squeue call to tell live jobs from ended ones, one scancel for the live.
        Experiments of a pack stop alone, unless they are all its job has left to run
        (known from its array's index): then the job is cancelled, its allocation freed."""
        return slurm_cancel(refs, housekeeping.unsettled_slots)

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
        return list(dict.fromkeys(array_of(job_of(ref)) for ref in refs))

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


def _packed(sizes: Mapping[tuple[int, str], packing.PackSize]) -> bool:
    """Whether a submission of these sizes goes in packs: all of it, once one set does."""
    return any(size.size > 1 for size in sizes.values())


def _sizes(sizes: Mapping[tuple[int, str], packing.PackSize]) -> dict[tuple[int, str], int]:
    return {group: size.size for group, size in sizes.items()}
