"""Where each experiment stands and what it produced, read from metafiles alone.

Backs ``-l`` (status table), ``--results`` (results table) and ``--failed``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from xhelpers.backends import JobState, JobStatus
from xhelpers.config import BaseConfig, resolve_config
from xhelpers.core import jobs, results
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.core.logs import EXPERIMENT_LOG
from xhelpers.core.planning import upstreams_changed
from xhelpers.core.records import ref_of
from xhelpers.core.summary import show_path

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = [
    "FORMATS",
    "STATUS_ORDER",
    "UNKNOWN",
    "WAITING",
    "StatusRow",
    "collect_status",
    "experiment_row",
    "failed_report",
    "format_counts",
    "format_rows",
    "format_status",
    "group_base",
    "job_to_ask",
    "resolved_config",
    "settled",
    "text_table",
]

# Statuses as a researcher reads them: the metafile's words, except that a success is
# "done" (or "stale" when the experiment's definition changed since), no metafile is
# "pending", and "running" with a free lock (its runner died) is "interrupted".
DONE, PENDING, STALE = "done", "pending", "stale"
UNREADABLE = "unreadable"  # a metafile that is there but not JSON: a run redoes it
UNKNOWN = "unknown"  # its job's backend is not installed here: nobody can say
WAITING = "waiting"  # submitted, held by its backend until its upstreams succeed
STATUS_ORDER = (
    DONE,
    STALE,
    results.FAILED,
    results.INTERRUPTED,
    results.BLOCKED,
    results.RUNNING,
    results.SUBMITTED,
    WAITING,
    PENDING,
    UNREADABLE,
    UNKNOWN,
)
FORMATS = ("table", "csv", "json")  # the CLI offers the same (cli.FORMATS)
Format = Literal["table", "csv", "json"]


@dataclass(frozen=True, slots=True)
class StatusRow:
    name: str
    status: str
    duration: float | None = None
    ended: str | None = None
    where: str | None = None  # its job's ref (SLURM job id), or its host
    error: str | None = None  # last line of the error

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def group_base(group: ParametrizedExperiments, config: BaseConfig) -> str:
    return results.group_prefix(config.output_directory, group.name)


def _error_line(meta: Mapping[str, Any]) -> str | None:
    error = meta.get("error")
    if not isinstance(error, dict):
        return None
    # The first line of the message, as the run's summary shows it: the last line of
    # a command's failure is its output, not what went wrong.
    lines = str(error.get("message", "")).strip().splitlines()
    kind = str(error.get("type", "error")).rsplit(".", 1)[-1]
    return f"{kind}: {lines[0] if lines else ''}".rstrip(": ")


def experiment_row(
    name: str,
    folder: str,
    meta: Mapping[str, Any] | None,
    fps: Fingerprints,
    fn: Any,
    seen: dict[str, dict[str, Any] | None] | None = None,
) -> StatusRow:
    if meta is None:
        if os.path.exists(f"{folder}/{results.METAFILE}"):  # there, but not JSON we can read
            return StatusRow(name, UNREADABLE, error="metafile.json is not readable JSON")
        if results.standing(None, folder) == results.RUNNING:  # its first moments
            return StatusRow(name, results.RUNNING)
        return StatusRow(name, PENDING)
    status = str(results.standing(meta, folder))
    if status == results.DONE:
        status = DONE if fps.is_current(fn, meta) else STALE
        if (
            status == DONE
            and "upstreams" in meta
            and upstreams_changed(folder, None, seen, meta, (str(meta.get("group")), name))
        ):
            status = STALE  # an upstream was rerun (or is gone) since this result
    named = ref_of(meta)
    where = named[1] if named else meta.get("host")
    return StatusRow(
        name,
        status,
        meta.get("duration"),
        meta.get("ended"),
        str(where) if where else None,
        _error_line(meta),
    )


def resolved_config(group: ParametrizedExperiments, config: Any, config_file: Any) -> BaseConfig:
    return resolve_config(group.configcls, config_file=config_file, config=config)


def collect_status(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
) -> list[StatusRow]:
    """One row per selected experiment, in selection order; runs nothing."""
    names = group.select(*patterns)
    resolved = resolved_config(group, config, config_file)
    base = group_base(group, resolved)
    fps = Fingerprints(resolved.fingerprint)  # as a run with this config compares them
    experiments = group.experiments
    rows = []
    seen: dict[str, dict[str, Any] | None] = {}  # upstream metafiles, each read once
    keep = bool(group.upstreams)  # (only a pipeline's: 100,000 metafiles weigh)
    metas: dict[str, Mapping[str, Any]] = {}  # markers of asked jobs held for upstreams
    asked: dict[str, tuple[str | None, str]] = {}  # name -> (backend, ref) of its job
    for name in names:
        folder = base + name
        meta = results.read_metafile(folder)
        if keep:  # an upstream's too, maybe: read once
            seen[folder] = meta
        row = experiment_row(name, folder, meta, fps, experiments[name], seen)
        job = job_to_ask(row, meta)
        if job is not None:
            asked[name] = job
            if meta is not None and "waits_for" in meta:
                metas[name] = meta
        rows.append(row)
    if not asked:
        return rows
    answers = jobs.ask(asked)  # one query per backend: started, ended, or requeued?
    return [settled(row, answers, metas.get(row.name), base) for row in rows]


def job_to_ask(row: StatusRow, meta: Mapping[str, Any] | None) -> tuple[str | None, str] | None:
    """The ``(backend, ref)`` of the job whose state decides ``row``, or None when its
    metafile alone does: a ``submitted`` row, or a ``running`` one whose lock is free
    (its node may have died under it and SLURM requeued the job: queued, not
    interrupted)."""
    named = ref_of(meta) if meta else None
    if named is None or meta is None:
        return None
    if row.status == results.SUBMITTED or (
        row.status == results.INTERRUPTED and meta.get("status") == results.RUNNING
    ):
        return named
    return None


def settled(
    row: StatusRow, answers: jobs.Answers, meta: Mapping[str, Any] | None, base: str
) -> StatusRow:
    """``row`` as the backends' ``answers`` see its job (see :func:`job_to_ask`);
    ``meta`` its metafile when it waits for upstreams, ``base`` its group's folder."""
    if row.name in answers.unregistered:
        backend = answers.unregistered[row.name]
        why = f"backend {backend!r} is not installed or registered here"
        return replace(row, status=UNKNOWN, error=why)
    if row.name not in answers.states:
        return row
    label = answers.backends[row.name].label
    row = _with_job_state(row, answers.states[row.name], label)
    if row.status in (results.INTERRUPTED, results.FAILED):
        return _blocked_if_upstream_failed(row, meta, base)
    if row.status == results.SUBMITTED and meta is not None and "waits_for" in meta:
        return _waiting_if_upstreams_not_done(row, meta)
    return row


def _blocked_if_upstream_failed(
    row: StatusRow, meta: Mapping[str, Any] | None, base: str
) -> StatusRow:
    """A job that ended without running, held for upstreams one of which did not
    succeed: SLURM cancelled it for its dependency (kill-on-invalid-dep), so blocked."""
    waits = meta.get("waits_for") if meta else None
    if not isinstance(waits, list):
        return row
    failed = [str(f) for f in waits if results.read_status(str(f)) != results.DONE]
    if not failed:
        return row
    root = os.path.dirname(base.rstrip(os.sep))
    names = [
        f[len(base) :] if f.startswith(base) else os.path.relpath(f, root).replace(os.sep, ":", 1)
        for f in failed
    ]
    why = f"Blocked: not run: its upstream {', '.join(names[:3])} did not succeed"
    return replace(row, status=results.BLOCKED, error=why)


def _waiting_if_upstreams_not_done(row: StatusRow, meta: Mapping[str, Any]) -> StatusRow:
    """A queued job held for upstreams that have not all succeeded yet: waiting."""
    waits = meta.get("waits_for")
    if isinstance(waits, list) and any(results.read_status(str(f)) != results.DONE for f in waits):
        return replace(row, status=WAITING)
    return row


def _with_job_state(row: StatusRow, job: JobStatus, label: str) -> StatusRow:
    """A ``submitted`` row, or an ``interrupted`` one whose metafile says ``running``,
    as the backend sees its job now (SLURM: a requeued job is pending again)."""
    if job.state is JobState.UNKNOWN:
        return row
    if job.state is JobState.RUNNING:
        return replace(row, status=results.RUNNING)
    if not job.final:  # pending (also after a requeue), held, suspended, ...
        return replace(row, status=results.SUBMITTED)
    if row.status != results.SUBMITTED:  # its runner or node died, and the job is gone
        return row
    if job.blocked:  # never ran: a job it waited for did not succeed
        why = f"Blocked: not run: an upstream did not succeed ({label}: {job.reason or job.word})"
        return replace(row, status=results.BLOCKED, error=why)
    status = results.INTERRUPTED if job.state is JobState.CANCELLED else results.FAILED
    return replace(row, status=status, error=f"{label} job ended {job.word}")


def failed_report(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
    lines: int = 10,
) -> tuple[str, int]:
    """Text about every failed or interrupted experiment, and how many there are."""
    rows = collect_status(group, patterns, config=config, config_file=config_file)
    base = group_base(group, resolved_config(group, config, config_file))
    parts = []
    bad = [r for r in rows if r.status in (results.FAILED, results.INTERRUPTED)]
    for row in bad:
        folder = base + row.name
        parts.append(f"== {row.name}: {row.status}: {row.error or row.status}")
        log = os.path.join(folder, EXPERIMENT_LOG)
        if os.path.exists(log):
            parts.extend(f"   | {line}" for line in _tail(log, lines))
        meta = results.read_metafile(folder) or {}
        if isinstance(meta.get("error"), dict) and meta["error"].get("traceback"):
            where = show_path(os.path.join(folder, results.METAFILE))
            parts.append(f"   traceback: {where} (error.traceback)")
        if os.path.exists(log):
            parts.append(f"   log:       {show_path(log)}")
        for key in ("slurm_stderr",):  # a job that died outside the experiment: its stderr
            if isinstance(meta.get(key), str) and os.path.exists(meta[key]):
                parts.append(f"   stderr:    {show_path(meta[key])}")
    parts.append(
        f"{len(bad)} failed or interrupted of {len(rows)} selected"
        + ("; rerun them with --retry-failed" if bad else "")
    )
    return "\n".join(parts), len(bad)


def _tail(path: str, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ["(no experiment.log)"]
    return text.splitlines()[-lines:]


def format_rows(rows: Sequence[Mapping[str, Any]], fmt: Format = "table") -> str:
    """Rows of dicts (all with the same keys) as a table, CSV (with header) or JSON."""
    if fmt == "json":
        return json.dumps(list(rows), indent=1, default=str)
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if r[c] is None else r[c] for c in columns] for r in rows])
        return out.getvalue().rstrip("\n")
    return text_table(columns, [["" if r[c] is None else str(r[c]) for c in columns] for r in rows])


def text_table(columns: Sequence[str], table: Sequence[Sequence[str]]) -> str:
    """Cells (strings) under their column names, aligned (tabulate's "simple" layout)."""
    if len(table) > _BIG_TABLE:
        return _simple_table(columns, table)
    from tabulate import tabulate  # only for tables: it is not needed otherwise

    text: str = tabulate(table, headers=columns, disable_numparse=True)
    return text


# tabulate spends ~20 us a row detecting cell types; past this many rows of strings
# (the status table of a big sweep) the same "simple" layout is drawn directly.
_BIG_TABLE = 2000


def _simple_table(columns: Sequence[str], table: Sequence[Sequence[str]]) -> str:
    widths = [len(c) + 2 for c in columns]  # tabulate pads headers by two
    for row in table:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    last = len(columns) - 1

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < last else c
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in table]
    return "\n".join(out)


def format_status(rows: Sequence[StatusRow], fmt: Format = "table") -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in rows], indent=1)
    data = [
        {
            "name": r.name,
            "status": r.status,
            "duration": "" if r.duration is None else f"{r.duration:.2f}s",
            "finished": (r.ended or "")[:19].replace("T", " "),
            "where": r.where or "",
            "error": r.error or "",
        }
        for r in rows
    ]
    if fmt == "csv":  # machine-readable: raw values, under the JSON output's names
        raw = [{k: v if v is not None else "" for k, v in r.as_dict().items()} for r in rows]
        return format_rows(raw, "csv") if raw else ",".join(StatusRow.__dataclass_fields__)
    if not data:
        return "(no experiments selected)"
    return format_rows(data, "table")


def format_counts(statuses: Iterable[str]) -> str:
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing selected"
