"""The refs of the SLURM backend: a job (``123``), an array task (``123_4``), an
experiment of a pack (``123_4/7``: slot 7 of the pack task ``123_4``).

A module of its own, without SLURM's tools: a task on its node names its refs, and
imports nothing of the submitting side for it.
"""

from __future__ import annotations

__all__ = ["array_of", "job_of", "pack_ref"]


def array_of(job_id: str) -> str:
    """The array (or plain job) of a job id: ``123`` of ``123_4``."""
    return job_id.split("_", 1)[0]


def pack_ref(job_id: str, slot: int) -> str:
    """The ref of the experiment in ``slot`` of the pack run by job ``job_id``."""
    return f"{job_id}/{slot}"


def job_of(ref: str) -> str:
    """The job of a ref: itself, or for an experiment of a pack (``123_4/7``) its job."""
    return ref.split("/", 1)[0]
