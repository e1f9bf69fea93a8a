"""What the SLURM backend leaves in ``<group>/.slurm/``, and its removal once it has served.

submitit writes, for each task (job id ``J``: ``123`` for a plain job, ``123_4`` for an
array task; one task per job, so submitit's ``%t`` is always 0):

- ``J_submitted.pkl``: what the job runs; a job that is requeued loads it again;
- ``J_0_result.pkl``: what it returned, read by a runner that waits;
- ``J_0_log.out``, ``J_0_log.err``: the job's stdout and stderr;

and for each ``sbatch`` (array id ``A``) ``A_submission.sh``, with a link
``.submission_file_<uuid>.sh`` to it. The backend adds ``A_experiments.json``:
``{job id: the task's folder, relative to .slurm/}``, the one thing that ties a job in
this folder to the metafile that can say it succeeded.

A task's files go once its experiment succeeded (its stdout and stderr only when they
hold nothing but submitit's own lines: what the experiment printed stays): by the runner
that waits for it, as it reports it, or else by the group's next SLURM run
(:func:`tidy`), which removes the files of every indexed job whose experiment's metafile
says ``success`` *with that job's id*. The job writes that metafile at the end of its
run, so it has nothing left to load; it still writes its result file just after, so a
job whose pickle is there without its result is left for a later run (its result would
appear after the tidy, with no index left to find it). A job that is pending, running,
requeued, failed, lost or blocked has a metafile that says otherwise (or names another
job) and keeps everything. No SLURM query is needed, so a purged accounting record
cannot make a live job's files look removable. An array's script, link and index go once
every task of it succeeded; until then the index keeps the tasks not known to have
succeeded, so later runs read only their metafiles.

The index is also how any process knows who is in a pack (:func:`unsettled_slots`):
``--cancel`` of every experiment a pack has left to run cancels its job. Runs with
``slurm_keep_job_files`` index their packs only, as ``A_experiments.kept.json``, which
no tidy reads: what they submit is never removed.

No submitit import: a run with nothing to submit tidies without paying for it. The names
are submitit's ``JobPaths`` (a test pins them to it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xhelpers.backends.slurm.refs import array_of, pack_ref
from xhelpers.core import results

__all__ = [
    "INDEX_SUFFIX",
    "KEPT_INDEX_SUFFIX",
    "index_name",
    "pickle_files",
    "recorded_success",
    "remove",
    "remove_array",
    "script_name",
    "served_files",
    "task_files",
    "tidy",
    "unsettled_slots",
    "write_index",
]

logger = logging.getLogger(__name__)

INDEX_SUFFIX = "_experiments.json"
KEPT_INDEX_SUFFIX = "_experiments.kept.json"  # slurm_keep_job_files: never tidied
_LINK_PREFIX = ".submission_file_"
_ARRAY_ID = re.compile(r"\d+")


def task_files(job_id: str) -> tuple[str, ...]:
    """Every file submitit keeps for the task of job ``job_id``."""
    return (*pickle_files(job_id), f"{job_id}_0_log.out", f"{job_id}_0_log.err")


def served_files(folder: Path, job_id: str) -> list[str]:
    """What a succeeded task leaves that nothing needs: its pickles, and its stdout and
    stderr unless they hold more than submitit's own lines. Logging goes to the
    experiment's experiment.log, but a ``print`` (or a library writing to the streams)
    reaches only these files: that output is kept, not lost to tidiness. Lines of
    submitit's and of SLURM's own (a requeue's) are not output."""
    names = list(pickle_files(job_id))
    logs = [f"{job_id}_0_log.out", f"{job_id}_0_log.err"]
    if all(_only_submitit(folder / name) for name in logs):
        names += logs
    return names


# What submitit and SLURM themselves write to a task's streams (a requeue adds
# slurmstepd's and srun's lines): anything else is the experiment's own output.
_SUBMITIT_LINE = re.compile(rb"submitit (DEBUG|INFO|WARNING|ERROR) \(|slurmstepd(-\S+)?: |srun: ")
_LOG_LIMIT = 64 * 1024  # longer than submitit ever writes for one task: output


def _only_submitit(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(_LOG_LIMIT + 1)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if len(data) > _LOG_LIMIT:
        return False
    return all(_SUBMITIT_LINE.match(line) for line in data.splitlines() if line.strip())


def pickle_files(job_id: str) -> tuple[str, str]:
    """The task's pickles: what it runs, and what it returned."""
    return f"{job_id}_submitted.pkl", f"{job_id}_0_result.pkl"


def script_name(array: str) -> str:
    """The sbatch script of array (or plain job) ``array``."""
    return f"{array}_submission.sh"


def index_name(array: str, kept: bool = False) -> str:
    return f"{array}{KEPT_INDEX_SUFFIX if kept else INDEX_SUFFIX}"


def write_index(
    folder: Path, array: str, tasks: Mapping[str, str | list[str]], kept: bool = False
) -> None:
    """Record which experiment each job of ``array`` runs: ``{job id: folder}`` (a
    pack's job: the folders of its experiments, by slot). ``kept``: under the name no
    tidy reads (``slurm_keep_job_files``).

    Relative to ``folder``, so a result tree that moves as a whole stays tidied. Written
    to a temporary name first: a tidy that reads it meanwhile reads all of it or none.
    """
    relative = {job: _relative(folder, path) for job, path in tasks.items()}
    path = folder / index_name(array, kept)
    temporary = path.with_name(path.name + ".tmp")  # named by the job: withdraw() takes it
    temporary.write_text(json.dumps(relative, indent=0))
    os.replace(temporary, path)


def _read_index(path: Path, array: str) -> dict[str, str | list[str]] | None:
    """The index of ``array``; None unless every entry is a job of that array: the
    names of the files removed are made from these ids."""
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for job, rel in data.items():
        listed = isinstance(rel, list) and all(isinstance(r, str) for r in rel)
        if not (
            (isinstance(rel, str) or listed)
            and (job == array or re.fullmatch(rf"{array}_\d+", job))
        ):
            return None
    return data


def _absolute(folder: Path, rel: str | list[str]) -> str | list[str]:
    return [str(folder / r) for r in rel] if isinstance(rel, list) else str(folder / rel)


def _relative(folder: Path, path: str | list[str]) -> str | list[str]:
    if isinstance(path, list):
        return [os.path.relpath(p, folder) for p in path]
    return os.path.relpath(path, folder)


def _succeeded(folder: Path, job: str, rel: str | list[str]) -> bool:
    """Whether the experiment of job ``job`` (or, for a pack, each of its experiments,
    ref ``<job>/<slot>``) recorded success under that job."""
    if isinstance(rel, list):
        return all(
            recorded_success(os.path.normpath(folder / one), pack_ref(job, slot)) is not None
            for slot, one in enumerate(rel)
        )
    return recorded_success(os.path.normpath(folder / rel), job) is not None


def unsettled_slots(folder: Path, job_id: str) -> set[int] | None:
    """The slots of the pack run by job ``job_id`` whose experiment may still run in it:
    its metafile says ``submitted`` or ``running`` under the slot's ref. ``folder``:
    the ``.slurm/`` of the job. None when no index there (tidied or kept) lists the job
    as a pack: who is in it is not known.

    An entry of a pack stays whole in its index until all of it succeeded (see
    :func:`tidy`), so every slot that can still run is named by it."""
    array = array_of(job_id)
    members = None
    if _ARRAY_ID.fullmatch(array):
        for kept in (False, True):
            members = (_read_index(folder / index_name(array, kept), array) or {}).get(job_id)
            if members is not None:
                break
    if not isinstance(members, list):
        return None
    left = set()
    for slot, rel in enumerate(members):
        meta = results.read_metafile(os.path.normpath(folder / rel))
        if (
            meta is not None
            and meta.get("status") in (results.SUBMITTED, results.RUNNING)
            and (meta.get("ref") or meta.get("slurm_job_id")) == pack_ref(job_id, slot)
        ):
            left.add(slot)
    return left


def recorded_success(folder: str, job_id: str) -> dict[str, Any] | None:
    """The metafile in ``folder`` if it says that job ``job_id`` ran it to success.

    Compared by job id: a success of an earlier or later job (the experiment rerun, or
    run locally since) says nothing about this one, which may still be queued.
    """
    if results.read_status(folder) != results.DONE:  # the head only: cheap for the many
        return None
    meta = results.read_metafile(folder)
    if meta is None or meta.get("status") != results.DONE:
        return None
    if (meta.get("ref") or meta.get("slurm_job_id")) != job_id:
        return None
    return meta


def remove(folder: Path, names: Iterable[str]) -> int:
    """Delete what exists of ``names`` in ``folder``; how many files went."""
    gone = 0
    for name in names:
        with contextlib.suppress(OSError):  # absent, or taken by another run meanwhile
            (folder / name).unlink()
            gone += 1
    return gone


def remove_array(folder: Path, array: str, names: Iterable[str] | None = None) -> int:
    """Delete the script of ``array``, submitit's links to it, and its index.

    ``names``: the folder's listing, when the caller has one."""
    script = script_name(array)
    if names is None:
        try:
            names = os.listdir(folder)
        except OSError:
            names = []
    links = []
    for name in names:
        if name.startswith(_LINK_PREFIX):
            # A regular file under that name is a script submitit has not sbatched yet.
            with contextlib.suppress(OSError):
                if os.path.basename(os.readlink(folder / name)) == script:
                    links.append(name)
    return remove(folder, [script, *links, index_name(array)])


def _settled(job_id: str, present: set[str]) -> bool:
    """Whether the job wrote all it will (were it done): its result, unless a runner
    that read it took its pickles already."""
    submitted, result = pickle_files(job_id)
    return result in present or submitted not in present


def tidy(folder: Path) -> int:
    """Remove the files of every indexed job whose experiment succeeded; how many went.

    One listing when nothing is indexed; otherwise one metafile per job an index still
    holds. Arrays whose index cannot be read are left alone.
    """
    try:
        names = os.listdir(folder)
    except OSError:  # no SLURM run of the group yet
        return 0
    present = set(names)
    gone = 0
    for index in sorted(n for n in names if n.endswith(INDEX_SUFFIX)):
        array = index[: -len(INDEX_SUFFIX)]
        tasks = _read_index(folder / index, array) if _ARRAY_ID.fullmatch(array) else None
        if tasks is None:
            logger.debug("%s: unreadable, left alone", folder / index)
            continue
        left = {
            job: rel
            for job, rel in tasks.items()
            if not _settled(job, present) or not _succeeded(folder, job, rel)
        }
        for job in tasks.keys() - left.keys():
            gone += remove(folder, [n for n in served_files(folder, job) if n in present])
        if not left:
            gone += remove_array(folder, array, names)
        elif len(left) < len(tasks):
            with contextlib.suppress(OSError):  # the next run tries again
                write_index(
                    folder, array, {job: _absolute(folder, rel) for job, rel in left.items()}
                )
    if gone:
        logger.info("removed %d files of succeeded SLURM jobs from %s", gone, folder)
    return gone
