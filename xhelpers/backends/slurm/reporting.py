"""How submitted SLURM jobs end, as they end: the waiting side of the SLURM backend.

:class:`JobReporting` is mixed into :class:`~xhelpers.backends.slurm.backend.SlurmBackend`;
it reads what the submitting side (:mod:`.sbatch`, the backend's packs) left pending.
While waiting, results are picked up from submitit's result files (a directory
listing, no scheduler call) and one ``sacct`` call per poll covers every job (and one
``squeue`` call when sacct shows some ended: a job SLURM requeued, after a node failure
say, is waited for, not lost). A job that ended without a result is Lost; one SLURM
never ran because what it depends on failed is Lost with a ``blocked`` status. A pack
is reported experiment by experiment.

Once reported, what a job leaves in ``.slurm/`` that nothing needs goes
(:meth:`JobReporting._served`, see :mod:`.housekeeping`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from xhelpers.backends.base import Finished, JobStatus, Lost, Report
from xhelpers.backends.slurm import housekeeping
from xhelpers.backends.slurm.node import PackResult
from xhelpers.backends.slurm.node import submitit_utils as _utils
from xhelpers.backends.slurm.queue import job_statuses, normalize
from xhelpers.backends.slurm.refs import array_of, pack_ref
from xhelpers.core import results
from xhelpers.core.execution import Task, TaskResult
from xhelpers.errors import BackendError

__all__ = ["JobReporting"]

logger = logging.getLogger(__name__)

_RESULT_CHECK_S = 1.0  # result files are looked for this often (a listdir, no SLURM call)
_BLOCKED = "never started: a job it depends on did not succeed (SLURM: {reason})"


class JobReporting:
    """The backend's ``reports()``: see the module. The attributes are the backend's."""

    folder: Path
    keep_files: bool
    poll_interval_s: float
    sacct_calls: int
    ticker: Callable[[], None] | None
    _pending: dict[str, list[Task]]  # job id -> its task(s), not reported yet
    _packs: set[str]  # job ids of packs (their _pending: tasks by slot)
    _ended: dict[str, str]  # job id -> terminal state seen without a result
    _next_query: float
    _stopping: bool
    # array id -> {job id: experiment folder(s)} of its tasks not seen to succeed yet
    _unsucceeded: dict[str, dict[str, str | list[str]]]
    _indexed: dict[str, int]  # array id -> tasks its index was written with

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
        array = array_of(job_id)
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


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
