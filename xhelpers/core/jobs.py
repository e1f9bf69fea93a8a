"""What backends say about the jobs that metafiles name, asked through the seam.

A metafile names its job by backend and ref (:func:`~xhelpers.core.records.ref_of`).
Whoever wants to know whether that job still runs (``-l``, skipping queued
experiments, ``--retry-failed``, ``--cancel``) asks ``registry[backend].states(refs)``
here: one batched call per backend, from any process, and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from xhelpers.backends import UNKNOWN_STATUS, Backend, JobState, JobStatus, find_backend
from xhelpers.core import results
from xhelpers.core.packs import request_cancel
from xhelpers.core.records import record_ended, ref_of
from xhelpers.errors import BackendError

__all__ = ["Answers", "CancelOutcome", "ask", "cancel", "still_queued"]

logger = logging.getLogger(__name__)

_GRACE_S = 120  # a backend may not know a just-submitted job yet (sacct lags sbatch)


@dataclass(slots=True)
class Answers:
    """What the backends said of the jobs of some experiments, by experiment name."""

    states: dict[str, JobStatus] = field(default_factory=dict)
    backends: dict[str, type[Backend]] = field(default_factory=dict)  # name -> who answered
    unregistered: dict[str, str] = field(default_factory=dict)  # name -> backend not installed
    unreachable: dict[str, str] = field(default_factory=dict)  # name -> why it was not answered


def ask(jobs: Mapping[str, tuple[str | None, str]]) -> Answers:
    """States of the jobs ``{experiment: (backend, ref)}``: one call per backend."""
    answers = Answers()
    by_backend: dict[str | None, dict[str, str]] = {}
    for name, (backend, ref) in jobs.items():
        by_backend.setdefault(backend, {})[name] = ref
    for backend, refs in by_backend.items():
        cls = find_backend(backend)
        if cls is None:
            answers.unregistered.update(dict.fromkeys(refs, str(backend)))
            continue
        try:
            states = cls.states(list(refs.values()))
        except BackendError as exc:
            answers.unreachable.update(dict.fromkeys(refs, f"cannot ask {cls.label}: {exc}"))
            continue
        for name, ref in refs.items():
            answers.states[name] = states.get(ref, UNKNOWN_STATUS)
            answers.backends[name] = cls
    return answers


def still_queued(metas: Mapping[str, Mapping[str, Any]]) -> dict[str, JobStatus | None]:
    """{experiment: status} of those whose job may still run, from their metafiles.

    A job the backend holds pending or running counts, and so does one it does not
    know (yet) for a while after its submission. When a backend cannot be asked (down,
    or not installed here), its jobs count as queued: nothing is run twice.
    """
    jobs: dict[str, tuple[str | None, str]] = {}
    for name, meta in metas.items():
        named = ref_of(meta)
        if named is not None and meta.get("status") in (results.SUBMITTED, results.RUNNING):
            jobs[name] = named
    if not jobs:
        return {}
    answers = ask(jobs)
    for why in sorted(set(answers.unreachable.values())):
        logger.warning("%s; leaving their queued experiments alone", why)
    for backend in sorted(set(answers.unregistered.values())):
        logger.warning(
            "backend %r (named by queued experiments) is not installed; leaving them alone",
            backend,
        )
    queued: dict[str, JobStatus | None] = dict.fromkeys(
        [*answers.unreachable, *answers.unregistered]
    )
    now = time.time()
    for name, status in answers.states.items():
        if status.state is JobState.UNKNOWN:
            if _recent(metas[name].get("submitted"), now):
                queued[name] = status
        elif not status.final:
            queued[name] = status
    return queued


def _recent(stamp: Any, now: float) -> bool:
    if not isinstance(stamp, str):
        return False
    try:
        return now - datetime.fromisoformat(stamp).timestamp() < _GRACE_S
    except ValueError:
        return False


@dataclass(slots=True)
class CancelOutcome:
    """What ``--cancel`` did: refs by backend label, and the experiments marked."""

    cancelled: dict[str, list[str]] = field(default_factory=dict)  # label -> refs
    ended: dict[str, list[str]] = field(default_factory=dict)  # label -> refs ended already
    marked: list[str] = field(default_factory=list)  # experiments marked interrupted
    unregistered: list[str] = field(default_factory=list)  # backends not installed here


def cancel(folders: Mapping[str, str]) -> CancelOutcome:
    """Cancel the jobs of these experiments (one call per backend), mark them
    ``interrupted``; jobs that had ended already are reported so, and left alone.

    A running job's experiment is marked once its process has let go of the lock.
    BackendError when a backend cannot be asked.
    """
    jobs: dict[str, dict[str, str]] = {}  # backend -> {experiment: ref}
    for name, folder in folders.items():
        meta = results.read_metafile(folder)
        if meta and meta.get("status") in (results.SUBMITTED, results.RUNNING):
            named = ref_of(meta)
            if named is not None:
                jobs.setdefault(str(named[0]), {})[name] = named[1]
    outcome = CancelOutcome()
    for backend, refs in jobs.items():
        cls = find_backend(backend)
        if cls is None:
            outcome.unregistered.append(backend)
            continue
        for name, ref in refs.items():  # for a runner that cannot be reached otherwise
            request_cancel(folders[name], ref)
        done = cls.cancel(list(refs.values()))
        live = sorted({ref for ref in refs.values() if done.get(ref)})
        gone = sorted({ref for ref in refs.values() if not done.get(ref)})
        if live:
            outcome.cancelled.setdefault(cls.label, []).extend(live)
        if gone:
            outcome.ended.setdefault(cls.label, []).extend(gone)
        for name, ref in refs.items():
            if not done.get(ref):
                continue
            error = {
                "type": "Cancelled",
                "message": f"{cls.label} job {ref} cancelled",
                "state": "CANCELLED",
            }
            if record_ended(folders[name], results.INTERRUPTED, error, job_id=ref, wait_s=60):
                outcome.marked.append(name)
            elif results.read_status(folders[name]) == results.INTERRUPTED:
                outcome.marked.append(name)  # its own process recorded it so (local jobs do)
    return outcome
