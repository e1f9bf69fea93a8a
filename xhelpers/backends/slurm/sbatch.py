"""``sbatch`` through submitit: the submitting side of the SLURM backend.

:class:`Sbatch` is mixed into :class:`~xhelpers.backends.slurm.backend.SlurmBackend`,
which decides what goes in which array (:mod:`.chains`, :mod:`.packing`); here each
array (or plain job) goes out in ONE ``sbatch``, with xhelpers' job program and any
sparse array indices, its tasks waiting for their pickles and locks. An ``sbatch``
failure removes what it left and raises :class:`~xhelpers.errors.BackendError` with
SLURM's message in one line; :meth:`Sbatch.withdraw` cancels what was just submitted.
Each array's index (:mod:`.housekeeping`) is written as it goes out.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xhelpers.backends.slurm import housekeeping
from xhelpers.backends.slurm.chains import Batch
from xhelpers.backends.slurm.job import NO_NUMPY
from xhelpers.backends.slurm.node import PackTask, SlurmTask
from xhelpers.backends.slurm.node import submitit_module as _submitit
from xhelpers.backends.slurm.node import submitit_utils as _utils
from xhelpers.backends.slurm.queue import _one_line, cancel_jobs
from xhelpers.backends.slurm.refs import array_of, job_of
from xhelpers.backends.slurm.resources import sbatch_parameters, with_dependency
from xhelpers.backends.threads import ThreadPolicy
from xhelpers.core.execution import RunContext, Task
from xhelpers.errors import BackendError

__all__ = ["Sbatch"]

logger = logging.getLogger(__name__)


def _job_python() -> str:
    """What every job runs: submitit's runner, ending non-zero when the experiment did
    not succeed, so that SLURM holds back (and cancels) what depends on it; without
    submitit's numpy unless ``run.py`` loaded numpy here (see .job)."""
    program = f"{shlex.quote(sys.executable)} -u -m xhelpers.backends.slurm.job"
    return program if "numpy" in sys.modules else f"{program} {NO_NUMPY}"


class Sbatch:
    """The backend's sbatch calls and their undoing: see the module. The attributes
    are the backend's."""

    ctx: RunContext
    folder: Path
    keep_files: bool
    job_ids: dict[str, str]  # task name -> its ref
    arrays: list[str]  # job ids of the submitted arrays/jobs, in order
    sbatch_calls: int
    _executors: dict[str, Any]
    _threads: ThreadPolicy  # the thread-count variables the user set here
    _pending: dict[str, list[Task]]  # job id -> its task(s), not reported yet
    _packs: set[str]  # job ids of packs
    # array id -> {job id: experiment folder(s)} of its tasks not seen to succeed yet
    _unsucceeded: dict[str, dict[str, str | list[str]]]
    _indexed: dict[str, int]  # array id -> tasks its index was written with

    def _executor(
        self, res: Mapping[str, Any], dependency: str = "", running: int = 1, packed: bool = False
    ) -> Any:
        """An executor for ``res`` (tasks running ``running`` experiments at once, in a
        pool if ``packed``): cached, or (with a dependency) made for one array."""
        key = json.dumps([res, running, packed], sort_keys=True, default=str)
        executor = None if dependency else self._executors.get(key)
        if executor is None:
            # An unpacked task's process gets its thread counts from the job script: a
            # pack's pool gives each of its workers their own (from this environment).
            threads = None if packed else self._threads.variables(int(res["cpus_per_task"]))
            try:
                params = sbatch_parameters(res, self.ctx.group, running, threads)
                if dependency:
                    params = with_dependency(params, dependency)
                executor = _submitit().SlurmExecutor(
                    folder=self.folder,
                    max_num_timeout=int(res["max_requeues"]),
                    python=_job_python(),
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
        packed = calls is not None
        executor = self._executor(res, batch.dependency, running, packed)
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
        array = array_of(ids[0])
        self.arrays.append(array)
        if folders is None:
            folders = [task.folder for task in batch.tasks]
        if not self.keep_files or packed:  # kept files: packs only (--cancel reads it)
            self._index(array, dict(zip(ids, folders, strict=True)))
        return ids

    def _index(self, array: str, tasks: dict[str, str | list[str]]) -> None:
        """Record which experiment each job of ``array`` runs, for later runs to tidy
        (or, files kept, only for ``--cancel`` to know who is in a pack)."""
        try:
            housekeeping.write_index(self.folder, array, tasks, kept=self.keep_files)
        except OSError as exc:  # the jobs run all the same; only their files stay
            logger.warning("SLURM array %s: cannot write its index: %s", array, exc)
            return
        if not self.keep_files:
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
            folder=self.folder, max_num_timeout=executor.max_num_timeout, python=executor.python
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
        bases = {array_of(job_of(ref)) for ref in refs}
        for job_id in [j for j in self._pending if array_of(j) in bases]:
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
