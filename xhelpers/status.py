"""Where each experiment stands, read from metafiles alone (``-l``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import results
from .config import BaseConfig, resolve_config

if TYPE_CHECKING:
    from .framework import ParametrizedExperiments

__all__ = ["STATUS_ORDER", "StatusRow", "collect_status", "format_counts", "format_status"]

# Statuses as a researcher reads them: the metafile's words, except that a success is
# "done", no metafile is "pending", and "running" with a free lock (its runner died)
# is "interrupted".
DONE, PENDING = "done", "pending"
STATUS_ORDER = (
    DONE,
    results.FAILED,
    results.INTERRUPTED,
    results.RUNNING,
    results.SUBMITTED,
    PENDING,
)


@dataclass(frozen=True, slots=True)
class StatusRow:
    name: str
    status: str
    duration: float | None = None
    ended: str | None = None
    where: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(name: str, folder: str) -> StatusRow:
    status = results.read_status(folder)
    if status is None:
        return StatusRow(name, PENDING)
    meta = results.read_metafile(folder) or {}
    shown = DONE if status == results.DONE else status
    if status == results.RUNNING and not results.is_locked(folder):
        shown = results.INTERRUPTED
    error = meta.get("error") or None
    message = None
    if isinstance(error, dict):
        text = str(error.get("message", "")).strip().splitlines()
        message = f"{error.get('type', 'error')}: {text[-1] if text else ''}"
    where = meta.get("slurm_job_id") or meta.get("host")
    return StatusRow(name, shown, meta.get("duration"), meta.get("ended"), where, message)


def collect_status(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
) -> list[StatusRow]:
    names = group.select(*patterns)
    resolved = resolve_config(group.configcls, config_file=config_file, config=config)
    base = os.path.join(os.path.abspath(resolved.output_directory), group.name)
    return [_row(name, os.path.join(base, name)) for name in names]


def format_status(rows: Sequence[StatusRow]) -> str:
    from tabulate import tabulate

    table = [
        (
            r.name,
            r.status,
            "" if r.duration is None else f"{r.duration:.2f}s",
            (r.ended or "")[:19].replace("T", " "),
            r.where or "",
            r.error or "",
        )
        for r in rows
    ]
    text: str = tabulate(
        table, headers=["name", "status", "duration", "finished", "where", "error"]
    )
    return text + "\n\n" + format_counts(rows)


def format_counts(rows: Sequence[StatusRow]) -> str:
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing selected"
