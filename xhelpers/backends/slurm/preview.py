"""What ``--dry-run`` with ``--slurm`` shows: the ``sbatch`` calls a submission would make.

One line per call, stage by stage: how many array tasks, how many experiments each and
why (:class:`~xhelpers.backends.slurm.packing.PackSize`), what each task asks of SLURM,
the resources, and the ``--dependency``. The lines are made from the plans the backend
submits by (:class:`~xhelpers.backends.slurm.chains.Planner`,
:func:`~xhelpers.backends.slurm.packing.plan`), never from a second copy of them. Job
ids are not known before submitting: arrays are named by their order (A1, A2, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from xhelpers.backends.slurm.chains import Batch, Planner
from xhelpers.backends.slurm.packing import Group, PackArray, PackSize, afterany, running_in
from xhelpers.backends.slurm.resources import gpus_asked
from xhelpers.config import BaseConfig
from xhelpers.core.execution import Task

__all__ = ["packed_lines", "unpacked_lines"]


def unpacked_lines(
    planner: Planner, resources: Mapping[str, Mapping[str, Any]], sizes: Mapping[Group, PackSize]
) -> list[str]:
    """The sbatch calls of ``planner``'s plan: one experiment per task."""
    lines = []
    for number, batch, stage in _previewed(planner):
        size = len(batch.tasks)
        what = "a job" if size == 1 and batch.indices is None else f"an array of {size}"
        why = sizes[stage, batch.key].why
        named = re.sub(r"(?<=:)(\d+)", r"A\1", batch.dependency)
        lines.append(
            f"sbatch A{number} (stage {stage}): {what}: {_names(batch.tasks)}; "
            f"1 per task ({why}); {_shown(resources[batch.key])}{_depends(named)}"
        )
    return lines


def packed_lines(
    arrays: Sequence[PackArray],
    resources: Mapping[str, Mapping[str, Any]],
    sizes: Mapping[Group, PackSize],
    config: BaseConfig,
) -> list[str]:
    """The sbatch calls of a packed submission's ``arrays`` (``config``: the run's)."""
    lines = []
    for number, array in enumerate(arrays, start=1):
        res = resources[array.key]
        members = [task for pack in array.packs for task in pack]
        running = running_in(res, array.packs, config)
        counts = sorted({len(pack) for pack in array.packs})
        each = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        plural = "s" if counts[-1] > 1 else ""
        what = "a job" if len(array.packs) == 1 else f"an array of {len(array.packs)} tasks"
        asks = (
            f"each task asks cpus_per_task={int(res['cpus_per_task'])}, "
            f"gpus_per_node={gpus_asked(res, running)} and runs {running} at once"
        )
        size = sizes[array.stage, array.key]
        depends = afterany(f"A{i + 1}" for i in array.after)
        lines.append(
            f"sbatch A{number} (stage {array.stage}): {what} of {each} experiment{plural}: "
            f"{_names(members)}; {size.size} per task ({size.why}); {asks}; "
            f"{_shown(res)}{_depends(depends)}"
        )
    return lines


def _previewed(planner: Planner) -> Iterator[tuple[int, Batch, int]]:
    """(number, batch, stage) of each sbatch the planner would have made, placed under
    made-up job ids (1, 2_0, ...: shown as A1, A2_0) so later stages' dependencies can
    name them."""
    number = 0
    for stage, tasks in enumerate(planner.stages):
        for batch in planner.batches(tasks):
            number += 1
            if len(batch.tasks) == 1 and batch.indices is None:
                planner.place(batch, [str(number)])
            else:
                indices = batch.indices or list(range(len(batch.tasks)))
                planner.place(batch, [f"{number}_{i}" for i in indices])
            yield number, batch, stage


def _names(tasks: Sequence[Task]) -> str:
    return tasks[0].name + (f" ... {tasks[-1].name}" if len(tasks) > 1 else "")


def _shown(res: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(res.items()))


def _depends(dependency: str) -> str:
    return f"; --dependency={dependency}" if dependency else ""
