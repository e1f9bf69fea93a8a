"""SLURM's own command-line tools, for what the core asks of the queue.

``sacct`` (job states, one call for many jobs), ``scancel`` and ``scontrol``. Kept apart
from the SLURM backend so that a run or a listing that only has to ask about jobs
(``-l``, skipping queued experiments, ``--cancel``) does not import submitit.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from . import results
from .errors import BackendError

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "cancel_experiments",
    "cancel_jobs",
    "jobs_of",
    "parse_sacct",
    "query_states",
    "read_max_array_size",
    "still_queued",
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


def read_max_array_size() -> int:
    """The cluster's ``MaxArraySize`` from ``scontrol show config`` (0: arrays disabled)."""
    proc = _run(["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise BackendError(f"scontrol show config: {_one_line(proc.stderr) or 'failed'}")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    if match is None:
        raise BackendError("MaxArraySize not found in `scontrol show config`")
    return int(match.group(1))


def _base_id(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def parse_sacct(text: str, job_ids: Iterable[str] = ()) -> dict[str, str]:
    """``sacct -n -P -X -o JobID,State`` output as {job id: state}; array ranges expanded.

    An array none of whose tasks started is one record under its bare id (``123``);
    each of ``job_ids`` not listed on its own gets that record's state.
    """
    states: dict[str, str] = {}
    for line in text.splitlines():
        job, _, state = line.partition("|")
        job = job.strip()
        if not job or "." in job:
            continue
        state = state.split()[0] if state.split() else "UNKNOWN"  # "CANCELLED by 0"
        for one in _expand(job):
            states[one] = state
    for job_id in job_ids:
        if job_id not in states and _base_id(job_id) in states:
            states[job_id] = states[_base_id(job_id)]
    return states


def query_states(job_ids: Iterable[str]) -> dict[str, str]:
    """States of the given jobs (``123`` or ``123_4``) with ONE ``sacct`` call.

    Jobs sacct does not know (yet) are missing from the answer.
    """
    job_ids = list(job_ids)
    bases = sorted({_base_id(j) for j in job_ids}, key=lambda b: (len(b), b))
    if not bases:
        return {}
    proc = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(bases)])
    if proc.returncode != 0:
        raise BackendError(f"sacct: {_one_line(proc.stderr) or 'failed'}")
    return parse_sacct(proc.stdout, job_ids)


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


# -- what the core asks: the jobs behind experiments' metafiles ----------------------------
_GRACE_S = 120  # sacct may not know a just-submitted job yet


def jobs_of(folders: Mapping[str, str]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """{name: (job id, metafile)} for the given experiment folders whose metafile is
    ``submitted`` or ``running`` under a SLURM job."""
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for name, folder in folders.items():
        meta = results.read_metafile(folder)
        if meta and meta.get("status") in (results.SUBMITTED, results.RUNNING):
            job_id = meta.get("slurm_job_id")
            if isinstance(job_id, str) and job_id:
                found[name] = (job_id, meta)
    return found


def still_queued(jobs: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, str | None]:
    """{name: SLURM state} of the experiments whose job may still run (ONE sacct call).

    A job sacct does not know yet counts as queued for a while after its submission;
    when sacct cannot be asked at all, every job counts as queued, so nothing is run
    twice.
    """
    if not jobs:
        return {}
    try:
        states = query_states(job_id for job_id, _ in jobs.values())
    except BackendError as exc:
        logger.warning(
            "cannot ask SLURM about %d queued experiments (%s); leaving them alone", len(jobs), exc
        )
        return dict.fromkeys(jobs)
    now = time.time()
    queued: dict[str, str | None] = {}
    for name, (job_id, meta) in jobs.items():
        state = states.get(job_id)
        if state in ACTIVE_STATES or (state is None and _recent(meta.get("submitted"), now)):
            queued[name] = state
    return queued


def _recent(stamp: Any, now: float) -> bool:
    if not isinstance(stamp, str):
        return False
    try:
        return now - datetime.fromisoformat(stamp).timestamp() < _GRACE_S
    except ValueError:
        return False


def cancel_experiments(folders: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Cancel the SLURM jobs of these experiments and mark them ``interrupted``.

    Returns the job ids cancelled and the names marked. A running job's experiment is
    marked once its process has let go of the lock (SLURM kills it after KillWait).
    """
    from .records import record_ended

    jobs = jobs_of(folders)
    if not jobs:
        return [], []
    cancel_jobs(job_id for job_id, _ in jobs.values())
    marked = []
    for name, (job_id, _) in jobs.items():
        error = {
            "type": "Cancelled",
            "message": f"SLURM job {job_id} cancelled",
            "state": "CANCELLED",
        }
        if record_ended(folders[name], results.INTERRUPTED, error, job_id=job_id, wait_s=60):
            marked.append(name)
    return sorted({job_id for job_id, _ in jobs.values()}), marked
