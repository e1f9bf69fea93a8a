"""Pipelines on SLURM: the tasks of one submission as job arrays held by dependencies.

A task's ``after`` names tasks of the same submission that must succeed before it
starts. The tasks are ordered into stages (the longest path over ``after``); a stage's
arrays are planned once every array they wait for is submitted, so its job ids are
known. All tasks of one array share one ``--dependency``, so tasks go into arrays by
the pattern of what they wait for, never waiting for more than they need:

* ``aftercorr:A``: task *i* of the array waits for task *i* of array ``A`` alone
  (element-wise stages: evaluate *i* after train *i*). A downstream task takes the
  array index of its upstream, so such an array may be sparse (``--array=0,2,5``);
* ``afterok:A``: waits for every task of ``A`` (many-to-one: pick the best after all
  evaluations), also for a plain job ``A``;
* ``afterok:A_3:A_7``: waits for some tasks of ``A``, named one by one (a task of its
  own pattern: an array of the tasks that share exactly that set).

The number of arrays: per stage and resource set, one per distinct pattern (times the
``MaxArraySize`` splits); element-wise stages add one array per task waiting for the
*same* upstream task, when several do (evaluate_a *i* and evaluate_b *i*). Tasks that
each wait for their own subset of an array are one array each: SLURM has no pattern
that holds them together without making each wait for the others' upstreams too.

No SLURM call here: :class:`Planner` says what to submit; the backend submits it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xhelpers.backends.slurm.refs import array_of
from xhelpers.core.execution import Task
from xhelpers.errors import BackendError

__all__ = ["Batch", "Planner", "dependency_string", "stages_of"]


@dataclass(slots=True)
class Batch:
    """One ``sbatch``: tasks sharing a resource set and a dependency.

    ``indices``: the array index of each task, for an array aligned with an upstream
    one (``aftercorr``); None: ``0 .. n-1`` (or a plain job for one task).
    """

    key: str  # the resource set's key
    tasks: list[Task]
    indices: list[int] | None = None
    dependency: str = ""  # the --dependency value; "" for none


def dependency_string(
    corr: Sequence[str] = (), whole: Sequence[str] = (), tasks: Sequence[str] = ()
) -> str:
    """One ``--dependency`` value: ``aftercorr`` on the ``corr`` arrays, ``afterok`` on
    the ``whole`` jobs/arrays and the array ``tasks`` (``123_4``); "" when none.

    ``,`` joins them: every part must be satisfied (``?``, any of them, cannot mix in).
    """
    parts = []
    if corr:
        parts.append("aftercorr:" + ":".join(corr))
    if whole or tasks:
        parts.append("afterok:" + ":".join([*whole, *tasks]))
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class _Placed:
    array: str  # base job id of its array (or of its plain job)
    index: int  # its index in that array (0 for a plain job)
    job_id: str  # "123_4", or "123" for a plain job


_Singles = tuple[_Placed, ...]
_Key = tuple[str, tuple[str, ...], tuple[str, ...]]  # resource set, whole arrays, some tasks


class Planner:
    """Plans the submission of ``tasks``: :attr:`stages` in order; for each, call
    :meth:`batches` (after every earlier batch was submitted and :meth:`place`-d with
    its job ids) and submit what it returns.

    ``key`` gives a task's resource set (tasks of different sets never share an array),
    ``limit`` the most tasks per array. An ``after`` folder that is not a task of this
    submission is not waited for (done already, or settled by the core).
    """

    def __init__(self, tasks: Sequence[Task], key: Callable[[Task], str], limit: int) -> None:
        self.key = key
        self.limit = max(1, limit)
        self._placed: dict[str, _Placed] = {}  # folder -> where its task was submitted
        self._sizes: dict[str, int] = {}  # array base id -> its number of tasks
        self._order: dict[str, int] = {}  # array base id -> submission order
        self.stages = _stages(tasks)

    def place(self, batch: Batch, job_ids: Sequence[str]) -> None:
        """Record where ``batch``'s tasks went: their job ids, in task order."""
        if not job_ids:
            return
        base = array_of(job_ids[0])
        self._order.setdefault(base, len(self._order))
        self._sizes[base] = len(job_ids)
        for task, job_id in zip(batch.tasks, job_ids, strict=True):
            _, _, index = job_id.partition("_")
            self._placed[task.folder] = _Placed(base, int(index or 0), job_id)

    def batches(self, stage: Sequence[Task]) -> list[Batch]:
        """The arrays of one stage, by resource set and dependency pattern."""
        plain: dict[_Key, list[Task]] = {}
        aligned: dict[tuple[_Key, tuple[str, ...]], list[tuple[Task, _Singles]]] = {}
        for task in stage:
            wholes, somes, singles = self._upstreams(task)
            key = (self.key(task), tuple(wholes), tuple(somes))
            if singles:
                arrays = tuple(p.array for p in singles)
                aligned.setdefault((key, arrays), []).append((task, singles))
            else:
                plain.setdefault(key, []).append(task)
        out: list[Batch] = []
        for (res, whole, some), tasks in plain.items():
            out += self._split(res, tasks, dependency_string((), whole, some))
        for ((res, whole, some), _), members in aligned.items():
            out += self._aligned(res, whole, some, members)
        return out

    # -- one task's upstreams ---------------------------------------------------------
    def _upstreams(self, task: Task) -> tuple[list[str], list[str], _Singles]:
        """What ``task`` waits for: whole arrays, some tasks of arrays (job ids), and
        single tasks of arrays it may align with ((array, index, job id), arrays in
        submission order)."""
        by_array: dict[str, list[_Placed]] = {}
        for folder in dict.fromkeys(task.after):
            placed = self._placed.get(folder)
            if placed is not None:
                by_array.setdefault(placed.array, []).append(placed)
        whole: list[str] = []
        some: list[str] = []
        singles: list[_Placed] = []
        for array in sorted(by_array, key=self._order.__getitem__):
            ups = by_array[array]
            if len(ups) == self._sizes[array]:  # all of it (a plain job: itself)
                whole.append(array)
            elif len(ups) == 1:
                singles.append(ups[0])
            else:
                some += sorted((p.job_id for p in ups), key=_id_order)
        return whole, some, tuple(singles)

    # -- arrays -------------------------------------------------------------------------
    def _split(self, res: str, tasks: list[Task], dependency: str) -> list[Batch]:
        step = self.limit
        return [
            Batch(res, tasks[i : i + step], None, dependency) for i in range(0, len(tasks), step)
        ]

    def _aligned(
        self,
        res: str,
        whole: tuple[str, ...],
        some: tuple[str, ...],
        members: list[tuple[Task, _Singles]],
    ) -> list[Batch]:
        """Tasks that each wait for one task of the same arrays: aligned (``aftercorr``)
        on the array where their upstreams spread the most, or ``afterok`` on those
        tasks by name when aligning would take more arrays (many tasks after the same
        few upstream tasks)."""
        spread = [
            len({singles[k].index for _, singles in members}) for k in range(len(members[0][1]))
        ]
        primary = spread.index(max(spread))
        # Other arrays are aligned too where every task's upstream has the same index
        # there (train i and featurize i); the rest are named.
        together = [
            k
            for k in range(len(spread))
            if all(singles[k].index == singles[primary].index for _, singles in members)
        ]
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[int, Task]]] = {}
        for task, singles in members:
            corr = tuple(singles[k].array for k in together)
            named = tuple(p.job_id for k, p in enumerate(singles) if k not in together)
            groups.setdefault((corr, named), []).append((singles[primary].index, task))
        out: list[Batch] = []
        for (corr, named), indexed in groups.items():
            tasks_named = tuple(sorted({*some, *named}, key=_id_order))
            counts = Counter(index for index, _ in indexed)
            layers = max(counts.values())
            if len(counts) < 2 or layers > len(counts):
                # Aligned: one array per task sharing an upstream task; named: one per
                # upstream task. The fewer sbatch calls win.
                by_upstream: dict[int, list[Task]] = {}
                for index, task in indexed:
                    by_upstream.setdefault(index, []).append(task)
                for index, tasks in by_upstream.items():
                    ids = tuple(f"{array}_{index}" for array in corr)
                    dependency = dependency_string(
                        (), whole, sorted({*tasks_named, *ids}, key=_id_order)
                    )
                    out += self._split(res, tasks, dependency)
                continue
            dependency = dependency_string(corr, whole, tasks_named)
            pending = list(indexed)
            while pending:  # layer by layer: each index at most once per array
                seen: set[int] = set()
                layer: list[tuple[int, Task]] = []
                rest: list[tuple[int, Task]] = []
                for index, task in pending:
                    (rest if index in seen else layer).append((index, task))
                    seen.add(index)
                pending = rest
                layer.sort(key=lambda item: item[0])
                if len(layer) == 1:  # a plain job: aftercorr has no task to match
                    index, task = layer[0]
                    ids = tuple(f"{array}_{index}" for array in corr)
                    single = dependency_string(
                        (), whole, sorted({*tasks_named, *ids}, key=_id_order)
                    )
                    out.append(Batch(res, [task], None, single))
                    continue
                indices = [index for index, _ in layer]
                dense = indices == list(range(len(indices)))
                out.append(
                    Batch(res, [t for _, t in layer], None if dense else indices, dependency)
                )
        return out


def _id_order(job_id: str) -> tuple[int, int]:
    base, _, index = job_id.partition("_")
    return int(base), int(index or -1)


def _stages(tasks: Sequence[Task]) -> list[list[Task]]:
    """Tasks by stage: 0 waits for nothing of this submission, stage n for some task of
    stage n-1 (and maybe earlier ones). BackendError on a cycle."""
    index = {task.folder: i for i, task in enumerate(tasks)}
    needs = [
        [index[f] for f in dict.fromkeys(task.after) if f in index and index[f] != i]
        for i, task in enumerate(tasks)
    ]
    level: list[int | None] = [None] * len(tasks)
    for root in range(len(tasks)):
        if level[root] is not None:
            continue
        stack = [(root, 0)]
        on_path = {root}
        while stack:  # depth first without recursion: pipelines may be deep
            node, k = stack[-1]
            if k < len(needs[node]):
                stack[-1] = (node, k + 1)
                up = needs[node][k]
                if level[up] is None:
                    if up in on_path:
                        raise BackendError(
                            f"pipeline cycle: {tasks[node].name} waits for {tasks[up].name}, "
                            "which waits for it"
                        )
                    on_path.add(up)
                    stack.append((up, 0))
                continue
            level[node] = 1 + max((level[u] or 0 for u in needs[node]), default=-1)
            on_path.discard(node)
            stack.pop()
    stages: list[list[Task]] = [[] for _ in range(1 + max((lv or 0 for lv in level), default=-1))]
    for task, lv in zip(tasks, level, strict=True):
        stages[lv or 0].append(task)
    return stages


def stages_of(tasks: Sequence[Task]) -> list[list[Task]]:
    """Tasks by stage (see :class:`Planner`); BackendError on a cycle."""
    return _stages(tasks)
