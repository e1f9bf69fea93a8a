"""What the dashboard knows of the result tree: one row per experiment, kept current.

The tree is scanned once at start-up, each metafile read as ``-l`` reads it (the same
:func:`~xhelpers.views.status.experiment_row`). After that a sweep stats every experiment
folder (and, for a tree without its run.py, every folder above one) and re-reads only
the metafiles of folders whose modification time changed: a metafile is only ever
replaced by a rename inside its folder, which always moves the folder's time. Rows seen
running are re-read at every sweep, as their lock (not their metafile) says when their
runner died. A folder changed less than a second before it was read is read again at
the next sweep too: two writes within one tick of the file system's clock leave the
same time behind, and the second must not go unseen.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from xhelpers.core import jobs, results
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.views.results import metrics_of_experiment, parameters_of_experiment
from xhelpers.views.status import WAITING, StatusRow, experiment_row, job_to_ask, settled

__all__ = ["JOBS_INTERVAL_S", "GroupIndex", "Row", "TreeIndex", "TreeSource"]

logger = logging.getLogger(__name__)

_RECENT_NS = 1_000_000_000  # a folder changed this recently is read again next sweep
_FORCE = -2  # the stamp of a row to read again whatever its folder's time
_MISSING = -1  # the stamp of a row whose folder does not exist
# States that move without anyone opening the folder: read at every quick sweep too.
_MOVING = (results.RUNNING, results.SUBMITTED, WAITING)
# How often the backends are asked about the jobs of queued rows, as -l asks them: a
# job cancelled or lost behind its metafile's back shows as -l shows it. sacct on a busy
# cluster is not free, so not at every sweep.
JOBS_INTERVAL_S = 15.0

Job = tuple[str | None, str]  # (backend, ref), as a metafile names its job


@dataclass(slots=True)
class _Asked:
    """A row whose job decides its state: the job, the row as its metafile alone reads,
    its metafile when it waits for upstreams, and what the backends last said."""

    job: Job
    read: StatusRow
    meta: Mapping[str, Any] | None
    answers: jobs.Answers | None = None


@dataclass(slots=True)
class Row:
    """One experiment as the table shows it (``status`` in ``-l``'s words)."""

    name: str
    status: str
    duration: float | None
    ended: str | None
    where: str | None
    error: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    stamp: int = _FORCE


class _Current:
    """Stands in for Fingerprints where no definition is known (a tree without its
    run.py): a success is then done, as nothing says it is stale."""

    def is_current(self, fn: Any, meta: Any) -> bool:
        return True


@dataclass
class TreeSource:
    """Where one group's experiments are, and (for a registered group) their definitions."""

    name: str
    folder: str  # the group's folder: <output_directory>/<group>
    experiments: Mapping[str, Any] | None = None  # name -> definition; None: discover
    fingerprint: str = "code"


@dataclass
class GroupIndex:
    """The rows of one group, and which columns they have."""

    source: TreeSource
    rows: dict[str, Row] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)  # discovered: folder above -> time
    params: dict[str, None] = field(default_factory=dict)
    metrics: dict[str, None] = field(default_factory=dict)
    version: int = 0  # moves whenever a row does
    asked: dict[str, _Asked] = field(default_factory=dict)  # name -> its job, see _Asked
    sorts: dict[tuple[str, bool], tuple[int, list[Row]]] = field(default_factory=dict)
    _fps: Any = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def base(self) -> str:
        return self.source.folder.rstrip(os.sep) + os.sep

    def fps(self) -> Fingerprints | _Current:
        if self.source.experiments is None:
            return _Current()
        if self._fps is None:
            self._fps = Fingerprints(cast(Any, self.source.fingerprint))
        return cast("Fingerprints | _Current", self._fps)

    def read_row(self, name: str, stamp: int) -> Row:
        """The row of ``name`` as its folder holds it now (and, for a row whose job
        decides it, as the backends last said)."""
        folder = self.base + name
        meta = results.read_metafile(folder)
        fn = self.source.experiments.get(name) if self.source.experiments else None
        status: StatusRow = experiment_row(name, folder, meta, cast(Fingerprints, self.fps()), fn)
        job = job_to_ask(status, meta)
        if job is None:
            self.asked.pop(name, None)
        else:
            before = self.asked.get(name)
            waits = meta if meta is not None and "waits_for" in meta else None
            asked = _Asked(job, status, waits)
            if before is not None and before.job == job:  # the same job: what it said holds
                asked.answers = before.answers
            self.asked[name] = asked
            if asked.answers is not None:
                status = settled(status, asked.answers, waits, self.base)
        return Row(
            name,
            status.status,
            status.duration,
            status.ended,
            status.where,
            status.error,
            parameters_of_experiment(fn, meta),
            metrics_of_experiment(folder, meta),
            stamp,
        )

    def ask_jobs(self, lock: threading.RLock) -> int:
        """Ask the backends about the jobs of rows they decide (one call per backend, as
        ``-l`` does) and apply what they say, under the index's ``lock``; how many rows
        changed."""
        pending = dict(self.asked)
        if not pending:
            return 0
        answers = jobs.ask({name: asked.job for name, asked in pending.items()})
        changed = 0
        moved: list[tuple[str, StatusRow]] = []
        for name, asked in pending.items():
            asked.answers = answers
            now = settled(asked.read, answers, asked.meta, self.base)
            row = self.rows.get(name)
            if row is not None and (row.status, row.error) != (now.status, now.error):
                moved.append((name, now))
        if moved:
            with lock:
                for name, now in moved:
                    row = self.rows.get(name)
                    if row is not None and self.asked.get(name) is pending[name]:
                        row.status, row.error = now.status, now.error
                        changed += 1
                self.version += 1
        return changed


def _stamp(path: str, now_ns: int) -> int:
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return _MISSING
    return _FORCE if now_ns - mtime < _RECENT_NS else mtime


def _is_experiment(path: str) -> bool:
    return os.path.lexists(f"{path}/{results.METAFILE}") or os.path.lexists(
        f"{path}/{results.LOCKFILE}"
    )


class TreeIndex:
    """Every group's rows; :meth:`sweep` brings them up to date, :meth:`start` keeps
    doing so in a thread, pausing several times as long as a sweep took (at least
    ``interval`` seconds), so that watching 100,000 folders costs a fraction of a core."""

    def __init__(
        self,
        sources: Iterable[TreeSource],
        *,
        root: str | None = None,
        interval: float = 1.0,
        jobs_interval: float = JOBS_INTERVAL_S,
    ) -> None:
        self.lock = threading.RLock()
        self.groups: dict[str, GroupIndex] = {s.name: GroupIndex(s) for s in sources}
        self.root = root  # a tree without its run.py: its groups are its folders
        self.root_stamp = _FORCE
        self.interval = interval
        self.jobs_interval = jobs_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- scanning ---------------------------------------------------------------------
    def sweep(self, full: bool = True) -> int:
        """Read what changed since the last sweep; how many rows changed. A sweep that
        is not ``full`` looks only for new experiments (in the folders above them) and
        at the rows whose state moves by itself (queued, running)."""
        now_ns = time.time_ns()
        if self.root is not None:
            self._discover_groups(now_ns)
        changed = 0
        for group in list(self.groups.values()):
            changed += self._sweep_group(group, now_ns, full)
        return changed

    def ask_jobs(self) -> int:
        """Bring the rows whose jobs decide them up to date (see GroupIndex.ask_jobs)."""
        return sum(group.ask_jobs(self.lock) for group in list(self.groups.values()))

    def _discover_groups(self, now_ns: int) -> None:
        assert self.root is not None
        stamp = _stamp(self.root, now_ns)
        if stamp == self.root_stamp and stamp != _FORCE:
            return
        self.root_stamp = stamp
        try:
            names = sorted(
                e.name
                for e in os.scandir(self.root)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            )
        except OSError:
            names = []
        with self.lock:
            for name in names:
                if name not in self.groups:
                    source = TreeSource(name, os.path.join(self.root, name))
                    self.groups[name] = GroupIndex(source)
            for gone in set(self.groups) - set(names):
                del self.groups[gone]

    def _sweep_group(self, group: GroupIndex, now_ns: int, full: bool = True) -> int:
        base = group.base
        experiments = group.source.experiments
        if experiments is not None:
            names = list(experiments)
        else:
            names = self._discover_names(group, now_ns)
        if not full:
            known = group.rows
            names = [
                n
                for n in names
                if n not in known or known[n].status in _MOVING or known[n].stamp == _FORCE
            ]
        updates: list[Row] = []
        gone: list[str] = []
        rows = group.rows
        for name in names:
            old = rows.get(name)
            stamp = _stamp(base + name, now_ns)
            if stamp == _MISSING and experiments is None:  # removed: no definition keeps it
                if old is not None:
                    gone.append(name)
                continue
            if (
                old is not None
                and stamp == old.stamp
                and stamp != _FORCE
                and old.status != results.RUNNING
            ):
                continue
            row = group.read_row(name, stamp)
            if old is None or _differs(old, row):
                updates.append(row)
            else:
                old.stamp = stamp
        if updates or gone:
            with self.lock:
                for row in updates:
                    rows[row.name] = row
                    group.params.update(dict.fromkeys(row.params))
                    group.metrics.update(dict.fromkeys(row.metrics))
                for name in gone:
                    del rows[name]
                group.version += 1
        return len(updates) + len(gone)

    def _discover_names(self, group: GroupIndex, now_ns: int) -> list[str]:
        """The experiments of a group folder without definitions: folders holding a
        metafile or a lock, found below folders that hold neither (name parts). A
        folder above experiments is listed again only when its time moved."""
        base = group.base
        dirs = group.dirs
        if not dirs:
            dirs[""] = _FORCE
        found: list[str] = []
        for rel in list(dirs):
            stamp = _stamp(base + rel if rel else base, now_ns)
            if stamp == dirs.get(rel) and stamp != _FORCE:
                continue
            if stamp == _MISSING:
                dirs.pop(rel, None)
                continue
            if rel and _is_experiment(base + rel):  # made empty, then its run began
                del dirs[rel]
                found.append(rel)
                continue
            dirs[rel] = stamp
            found += self._scan_below(group, rel, now_ns)
        return [*group.rows, *(n for n in found if n not in group.rows)]

    def _scan_below(self, group: GroupIndex, rel: str, now_ns: int) -> list[str]:
        base = group.base
        try:
            entries = [
                e.name
                for e in os.scandir(base + rel if rel else base)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            ]
        except OSError:
            return []
        found = []
        for entry in sorted(entries):
            child = f"{rel}/{entry}" if rel else entry
            if child in group.rows:
                continue
            if _is_experiment(base + child):
                found.append(child)
            elif child not in group.dirs:
                group.dirs[child] = _stamp(base + child, now_ns)
                found += self._scan_below(group, child, now_ns)
        return found

    # -- the thread -------------------------------------------------------------------
    def start(self) -> None:
        """Keep sweeping in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="xhelpers-serve-index", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A full sweep stats every folder: it waits several times as long as it took,
        # so that 100,000 folders cost a fraction of a core; quick ones run in between.
        next_full = next_jobs = 0.0
        while not self._stop.is_set():
            began = time.monotonic()
            full = began >= next_full
            try:
                self.sweep(full)
                if began >= next_jobs:
                    next_jobs = began + self.jobs_interval
                    self.ask_jobs()
            except Exception:  # a sweep must never end the dashboard: the next one retries
                logger.exception("sweeping the result tree failed")
            took = time.monotonic() - began
            if full:
                next_full = began + max(self.interval, 4 * took)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _differs(a: Row, b: Row) -> bool:
    x = (a.status, a.duration, a.ended, a.where, a.error, a.params, a.metrics)
    y = (b.status, b.duration, b.ended, b.where, b.error, b.params, b.metrics)
    # NaN is not equal to itself, and a metric that is NaN is no change: the reprs say so
    return x != y and repr(x) != repr(y)
