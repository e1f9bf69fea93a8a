"""SLURM's own command-line tools, for what the core asks of the queue.

``sacct`` (job states, one call for many jobs), ``squeue`` (to tell a job SLURM
requeued from one that ended, and when accounting is down), ``scancel`` and
``scontrol``; and SLURM's states in the seam's vocabulary (:func:`normalize`). Reads
and writes no metafile: the core asks through ``SlurmBackend.states``/``cancel``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from xhelpers.backends.base import UNKNOWN_STATUS, JobState, JobStatus
from xhelpers.backends.slurm.refs import array_of, job_of
from xhelpers.errors import BackendError

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "cancel_jobs",
    "is_final",
    "job_states",
    "job_statuses",
    "normalize",
    "parse_sacct",
    "parse_squeue",
    "query_states",
    "queue_states",
    "slurm_cancel",
    "slurm_states",
]

logger = logging.getLogger(__name__)

_CALL_TIMEOUT_S = 120  # bound on every scontrol/sacct/scancel call

# Job states after which a job runs no more (anything else may still run: PENDING,
# RUNNING, REQUEUED, COMPLETING, SUSPENDED, ... or not yet known to sacct).
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING"})
# SLURM can put a job back in the queue after any of TERMINAL_STATES: NODE_FAIL and
# PREEMPTED (JobRequeue / --requeue, PreemptMode=REQUEUE), BOOT_FAIL, RequeueExit exit
# codes, `scontrol requeue` of a finished job. sacct then shows the old end until the
# requeued job's new record arrives (seen: NODE_FAIL for ~1.5 s, while squeue already
# said PENDING), so an end sacct shows is final only once squeue no longer holds the job
# in a state that may still run.


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=_CALL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{cmd[0]} failed: {exc}") from None


def _one_line(text: str) -> str:
    """SLURM's error output as one line: its ``error:`` lines (or, failing those, what
    is not a usage hint), prefixes dropped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    hints = ("Try ", "Usage:")
    telling = [line for line in lines if not line.split(": ", 1)[-1].startswith(hints)]
    errors = [line for line in telling if "error:" in line] or telling or lines[-1:]
    seen: list[str] = []
    for line in errors:
        line = re.sub(r"^\w+: error:\s*", "", line)
        if line not in seen:
            seen.append(line)
    return "; ".join(seen)


# A job SLURM cancelled because its dependency can never be satisfied (an upstream it
# waits for with afterok/aftercorr failed; --kill-on-invalid-dep=yes): squeue's reason
# for it. sacct says less: State ``CANCELLED`` (no "by <uid>": nobody asked) with
# Reason ``Dependency`` (seen on 22.05), while a job scancel-ed while it waited for its
# dependency reads ``CANCELLED by <uid>``. One cancelled at its submission, its upstream
# failed already, reads Reason ``None`` in sacct: only squeue tells it (for MinJobAge).
NEVER_SATISFIED = "DependencyNeverSatisfied"

Record = tuple[str, str]  # (SLURM's state, its reason), of one job or array task


def _parse_records(text: str, job_ids: Iterable[str], *, sacct: bool) -> dict[str, Record]:
    """``JobID|State|Reason`` lines (sacct -P, squeue -o '%i|%T|%r') as records; array
    ranges expanded, the reason optional.

    In sacct, an array none of whose tasks started is one record under its bare id
    (``123``): each of ``job_ids`` not listed on its own gets that record.
    """
    records: dict[str, Record] = {}
    for line in text.splitlines():
        job, _, rest = line.partition("|")
        job = job.strip()
        if not job or "." in job:
            continue
        state, _, reason = rest.partition("|")
        words = state.split()  # "CANCELLED by 0"
        state, reason = (words[0] if words else "UNKNOWN"), reason.strip()
        if sacct and state == "CANCELLED" and len(words) == 1 and reason == "Dependency":
            reason = NEVER_SATISFIED  # cancelled by SLURM itself while it waited: see above
        for one in _expand(job):
            records[one] = (state, reason)
    # Only then: once some tasks are listed on their own, the bare id is the array's
    # master record, which SLURM gives the state of one task (a COMPLETED one, say).
    split = {array_of(one) for one in records if "_" in one}
    for job_id in job_ids:
        base = array_of(job_id)
        if job_id not in records and base in records and base not in split:
            records[job_id] = records[base]
    return records


def parse_sacct(text: str, job_ids: Iterable[str] = ()) -> dict[str, str]:
    """``sacct -n -P -X -o JobID,State[,Reason]`` output as {job id: state}; array
    ranges expanded. An array none of whose tasks started is one record under its bare
    id (``123``); each of ``job_ids`` not listed on its own gets that record's state.
    """
    return {job: state for job, (state, _) in _parse_records(text, job_ids, sacct=True).items()}


def _bases(job_ids: Iterable[str]) -> list[str]:
    return sorted({array_of(j) for j in job_ids}, key=lambda b: (len(b), b))


def _sacct_records(job_ids: Iterable[str]) -> dict[str, Record]:
    """Records of the given jobs (``123`` or ``123_4``) from ONE ``sacct`` call; jobs it
    does not know (yet) are missing."""
    job_ids = list(job_ids)
    bases = _bases(job_ids)
    if not bases:
        return {}
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,Reason", "-j", ",".join(bases)]
    proc = _run(cmd)
    if proc.returncode != 0:
        raise BackendError(f"sacct: {_one_line(proc.stderr) or 'failed'}")
    return _parse_records(proc.stdout, job_ids, sacct=True)


def query_states(job_ids: Iterable[str]) -> dict[str, str]:
    """States of the given jobs (``123`` or ``123_4``) with ONE ``sacct`` call.

    Jobs sacct does not know (yet) are missing from the answer.
    """
    return {job: state for job, (state, _) in _sacct_records(job_ids).items()}


def parse_squeue(text: str) -> dict[str, str]:
    """``squeue -h -o '%i|%T[|%r]'`` output as {job id: state}; array ranges expanded."""
    return {job: state for job, (state, _) in _parse_records(text, (), sacct=False).items()}


def queue_states(job_ids: Iterable[str]) -> dict[str, str]:
    """States ``squeue`` holds for the given jobs (ONE call); jobs it does not hold are
    missing from the answer. BackendError when the controller cannot be asked."""
    return {job: state for job, (state, _) in _held(job_ids).items()}


def _held(job_ids: Iterable[str]) -> dict[str, Record]:
    """The records squeue holds of the given jobs (ONE call)."""
    job_ids = list(job_ids)
    by_job = _queue_records(job_ids)
    return {job_id: by_job[job_id] for job_id in job_ids if job_id in by_job}


def _queue_records(job_ids: Iterable[str]) -> dict[str, Record]:
    """Every job and array task squeue holds of the given jobs' arrays (ONE call)."""
    return _queue_listing(job_ids)[0]


def _queue_listing(job_ids: Iterable[str]) -> tuple[dict[str, Record], dict[str, str]]:
    """Every job and array task squeue holds of the given jobs' arrays, and the sbatch
    script each runs (``%o``: the path sbatch was given), from ONE call."""
    bases = _bases(job_ids)
    if not bases:
        return {}, {}
    # -t all: with -j, squeue still hides ended jobs otherwise; -r: one line per task.
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%o", "-j", ",".join(bases)]
    proc = _run(cmd)
    if proc.returncode != 0:
        # A single id the controller has forgotten (older than MinJobAge) is an error to
        # squeue, several are not: either way the job is not in the queue.
        if "Invalid job id specified" in proc.stderr:
            return {}, {}
        raise BackendError(f"squeue: {_one_line(proc.stderr) or 'failed'}")
    lines: list[str] = []
    scripts: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        job, state, reason, script = [*line.split("|", 3), "", "", ""][:4]
        lines.append(f"{job}|{state}|{reason}")
        for one in _expand(job.strip()):
            scripts[one] = script.strip()
    return _parse_records("\n".join(lines), (), sacct=False), scripts


def _merge_queue(records: dict[str, Record], queued: dict[str, Record]) -> None:
    """Put squeue's word over sacct's for every job squeue holds: the controller knows
    each job and task as it is, accounting lags behind it. A job sacct shows ended that
    squeue holds in a state that may still run was requeued; and while slurmdbd has not
    yet written an array's tasks one by one, sacct lists only the array's master record,
    whose state is another task's (``COMPLETED`` for a task that failed, or that SLURM
    cancelled because its dependency can never be satisfied)."""
    records.update(queued)


def job_statuses(job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """Where the given jobs stand: ONE ``sacct`` call and, only when it shows some of
    them ended, ONE ``squeue`` call for those.

    A job sacct shows ended that squeue still holds in a state that may run (PENDING
    after a node failure or preemption, ...) was requeued: it gets squeue's state. A job
    SLURM cancelled because its dependency failed is ``blocked``. Jobs sacct does not
    know (yet) are missing. BackendError when sacct cannot be asked, or squeue cannot be
    asked about jobs sacct shows ended: whether they end is not known.
    """
    job_ids = list(job_ids)
    records = _sacct_records(job_ids)
    ended = [job_id for job_id in job_ids if records.get(job_id, ("",))[0] in TERMINAL_STATES]
    if ended:
        _merge_queue(records, _held(ended))
    return {job_id: normalize(*record) for job_id, record in records.items()}


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """:func:`job_statuses` as SLURM's state words."""
    return {job_id: status.raw for job_id, status in job_statuses(job_ids).items()}


def is_final(state: str | None) -> bool:
    """Whether a state from :func:`job_states` means the job will not run (again)."""
    return state in TERMINAL_STATES


def cancel_jobs(job_ids: Iterable[str]) -> None:
    """``scancel`` the given jobs in one call (``123``: a whole array, ``123_4``: one task)."""
    ids = sorted(set(job_ids))
    if not ids:
        return
    proc = _run(["scancel", *ids])
    if proc.returncode != 0:
        raise BackendError(f"scancel: {_one_line(proc.stderr) or 'failed'}")


_ARRAY = re.compile(r"^(\d+)_\[([^\]]*)\]$")


def _expand(job: str) -> Iterator[str]:
    """A sacct JobID as job ids: ``123``, ``123_4``, or a pending range ``123_[4-9,12%2]``."""
    match = _ARRAY.match(job)
    if match is None:
        if re.fullmatch(r"\d+(_\d+)?", job):
            yield job
        return
    base, spec = match.group(1), match.group(2).split("%", 1)[0]
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            for index in range(int(first), int(last or first) + 1):
                yield f"{base}_{index}"


# -- SLURM's states in the seam's vocabulary (the one place they are mapped) ---------------
_NORMALIZED = {
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,  # its processes end; the epilog runs
    "CONFIGURING": JobState.RUNNING,  # nodes booting for it
    "STAGE_OUT": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,  # a federated sibling ran it
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,  # ended for good: a requeued one is PENDING in squeue
}


def normalize(raw: str, reason: str = "") -> JobStatus:
    """A state (and reason) from sacct or squeue as the seam's :class:`JobStatus` (raw
    word kept).

    Any state that is not an end may still run: PENDING, REQUEUED, SUSPENDED,
    REQUEUE_HOLD, ... are all pending. A job cancelled because its dependency can never
    be satisfied is ``blocked``: it never ran (a pending one still waits for the
    ``--kill-on-invalid-dep`` that every dependent array of the backend asks for).
    """
    state = _NORMALIZED.get(raw)
    if state is None:
        state = JobState.FAILED if raw in TERMINAL_STATES else JobState.PENDING
    if state is JobState.CANCELLED and reason == NEVER_SATISFIED:
        return JobStatus(state, raw, reason, blocked=True)
    return JobStatus(state, raw)  # other reasons (Dependency, BeginTime, ...) say nothing more


_REF = re.compile(r"\d+(_\d+)?")


def slurm_states(refs: Iterable[str]) -> dict[str, JobStatus]:
    """{ref: status} for job ids ``123`` / ``123_4``: ONE ``sacct`` call, and ONE
    ``squeue`` call for the jobs sacct shows ended (requeued?) or does not know (yet).

    When accounting is down, squeue alone answers (a job it does not hold is unknown).
    Garbage refs and jobs neither knows are unknown. BackendError when SLURM cannot be
    asked about jobs whose end is in question: then nothing is known.
    """
    asked = list(dict.fromkeys(refs))
    jobs = {ref: job_of(ref) for ref in asked if isinstance(ref, str)}
    valid = list(dict.fromkeys(job for job in jobs.values() if _REF.fullmatch(job)))
    found: dict[str, Record] = {}
    if valid:
        try:
            found = _sacct_records(valid)
        except BackendError as exc:
            logger.info("%s; asking squeue only", exc)
            found = _held(valid)
        else:
            ended = [ref for ref in valid if ref in found and found[ref][0] in TERMINAL_STATES]
            missing = [ref for ref in valid if ref not in found]
            if ended or missing:
                try:
                    queued = _held(ended + missing)
                except BackendError:
                    if ended:  # whether they end is not known
                        raise
                    queued = {}
                _merge_queue(found, queued)
    return {
        ref: normalize(*found[jobs[ref]]) if jobs.get(ref) in found else UNKNOWN_STATUS
        for ref in asked
    }


def slurm_cancel(
    refs: Iterable[str], unsettled: Callable[[Path, str], set[int] | None] | None = None
) -> dict[str, bool]:
    """``scancel`` those of the given jobs that may still run, in ONE call (a bare array
    id cancels the whole array); ONE ``squeue`` call first tells which these are.

    An experiment of a pack (``123_4/7``) is not its job: the pack honours the request
    the core left in its folder (xhelpers.core.packs) and runs on with the others. But
    when ``unsettled(folder, job)`` (the slots of the pack that may still run, known
    from the job's ``.slurm/`` folder, where its script is) are all among ``refs``,
    nothing is left for the job to run: it is scancelled too, its allocation freed.

    {ref: True if cancelled, False if it had ended (or SLURM never knew it)}.
    """
    asked = list(dict.fromkeys(refs))
    valid = [ref for ref in asked if isinstance(ref, str) and _REF.fullmatch(job_of(ref))]
    live: list[str] = []
    scripts: dict[str, str] = {}
    if valid:
        held, scripts = _queue_listing([job_of(ref) for ref in valid])
        for ref in valid:
            job = job_of(ref)
            states = [held[job][0]] if job in held else []
            if "_" not in job:  # an array by its base id: any of its tasks
                states += [s for one, (s, _) in held.items() if one.startswith(job + "_")]
            if any(state not in TERMINAL_STATES for state in states):
                live.append(ref)
    jobs = [ref for ref in live if "/" not in ref]
    if unsettled is not None:
        jobs += _whole_packs(live, scripts, unsettled)
    cancel_jobs(jobs)
    return {ref: ref in live for ref in asked}


def _whole_packs(
    refs: Iterable[str],
    scripts: dict[str, str],
    unsettled: Callable[[Path, str], set[int] | None],
) -> list[str]:
    """The pack jobs among ``refs`` (``<job>/<slot>``) that have nothing left to run but
    the slots named: see :func:`slurm_cancel`."""
    slots: dict[str, set[int]] = {}
    for ref in refs:
        job, _, slot = ref.partition("/")
        if slot.isdigit():
            slots.setdefault(job, set()).add(int(slot))
    whole = []
    for job, named in slots.items():
        script = scripts.get(job, "")
        if not os.path.isabs(script):  # a script named relative to who knows where
            continue
        left = unsettled(Path(script).parent, job)
        if left is not None and left <= named:
            whole.append(job)
    return whole
