"""How many experiments go in one SLURM array task (a pack), and which.

A pack runs its experiments in a pool of its task's CPUs (``cpus_per_task`` over each
experiment's ``workers``: ``running`` at once). Its size, per resource set:

* ``experiments_per_task`` when set (1: one experiment per task, no pack);
* otherwise enough to keep the task busy for ``pack_target_min`` (at most the time
  limit less the checkpoint signal's delay), from the durations the experiments'
  metafiles recorded (their mean; :data:`~xhelpers.core.packs.DEFAULT_ESTIMATE_S` each
  while none is), but no more than leaves a task for every slot the cluster can run
  at once (the partition's CPUs over ``cpus_per_task``, at most
  ``array_parallelism``): packing never makes an array run on fewer CPUs than it could.

No SLURM call here but through the ``capacity`` the backend reads once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from xhelpers.backends.slurm.resources import at_once
from xhelpers.core import results
from xhelpers.core.execution import Task
from xhelpers.core.packs import DEFAULT_ESTIMATE_S
from xhelpers.errors import ConfigError

__all__ = ["pack_limit_s", "pack_size", "recorded_durations", "split", "target_s"]


def recorded_durations(tasks: Sequence[Task]) -> dict[str, float]:
    """{folder: duration} of the tasks whose metafile recorded one (a run that ended)."""
    out: dict[str, float] = {}
    for task in tasks:
        meta = results.read_metafile(task.folder)
        duration = (meta or {}).get("duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration >= 0:
            out[task.folder] = float(duration)
    return out


def pack_limit_s(res: Mapping[str, Any]) -> float:
    """How long into its job a pack may still start experiments that fit: the time
    limit less the delay of submitit's checkpoint signal."""
    return max(1.0, 60.0 * float(res["timeout_min"]) - float(res["signal_delay_s"]))


def target_s(res: Mapping[str, Any], partition_limit_min: float | None) -> float:
    """The length a pack aims at, in seconds. ConfigError for a ``pack_target_min``
    longer than the partition's time limit (exit 2: nothing is submitted)."""
    target = float(res["pack_target_min"])
    if partition_limit_min is not None and target > partition_limit_min:
        raise ConfigError(
            f"slurm_pack_target_min={target:g} is longer than the time limit of partition "
            f"{res['partition'] or '(default)'} ({partition_limit_min:g} min): give 0 < "
            f"slurm_pack_target_min <= {partition_limit_min:g}",
            field="slurm_pack_target_min",
        )
    return min(60.0 * target, pack_limit_s(res))


def pack_size(
    count: int,
    res: Mapping[str, Any],
    workers: int,
    durations: Sequence[float],
    capacity: int | None,
    partition_limit_min: float | None = None,
) -> int:
    """Experiments per array task for ``count`` experiments of resource set ``res``
    (see the module); ``capacity``: the partition's CPUs, None if unknown."""
    fixed = res.get("experiments_per_task")
    if fixed is not None:
        return max(1, int(fixed))
    if count <= 1:
        return 1
    running = at_once(res, workers)
    mean = sum(durations) / len(durations) if durations else DEFAULT_ESTIMATE_S
    by_time = max(1, int(target_s(res, partition_limit_min) * running / max(mean, 1e-3)))
    slots = int(res["array_parallelism"])
    if capacity:
        slots = min(slots, max(1, capacity // int(res["cpus_per_task"])))
    by_spread = math.ceil(count / max(1, slots))
    return max(1, min(by_time, by_spread))


def split(tasks: Sequence[Task], size: int) -> list[list[Task]]:
    """``tasks`` in packs of at most ``size``, as even as they go (in order)."""
    if not tasks:
        return []
    count = math.ceil(len(tasks) / max(1, size))
    base, extra = divmod(len(tasks), count)
    out: list[list[Task]] = []
    start = 0
    for number in range(count):
        end = start + base + (number < extra)
        out.append(list(tasks[start:end]))
        start = end
    return out
