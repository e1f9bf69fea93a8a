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

Which packs go in which ``sbatch`` (:func:`plan`) is decided here too, once for
:meth:`~xhelpers.backends.slurm.backend.SlurmBackend.submit` and its ``--dry-run``
preview alike: arrays of packs, split at ``MaxArraySize``, a later stage's waiting
(``afterany``) for the arrays that run what it uses.

No SLURM call here but through the ``capacity`` the backend reads once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xhelpers.backends.slurm.resources import at_once
from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.execution import Task
from xhelpers.core.packs import DEFAULT_ESTIMATE_S
from xhelpers.errors import ConfigError

__all__ = [
    "Group",
    "PackArray",
    "PackSize",
    "afterany",
    "pack_limit_s",
    "plan",
    "recorded_durations",
    "running_in",
    "sizing",
    "split",
    "target_s",
    "workers_of",
]

Group = tuple[int, str]  # (stage, resource set key)


@dataclass(frozen=True, slots=True)
class PackSize:
    """Experiments per array task of one stage and resource set, and why so many."""

    size: int
    why: str


@dataclass(frozen=True, slots=True)
class PackArray:
    """One ``sbatch`` of a packed submission: an array of ``packs`` (one pack: a job).

    ``after``: the positions, in the :func:`plan`, of the arrays it waits for."""

    stage: int
    key: str
    packs: list[list[Task]]
    after: tuple[int, ...]


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


def sizing(
    count: int,
    res: Mapping[str, Any],
    workers: int,
    durations: Sequence[float],
    capacity: int | None,
    partition_limit_min: float | None = None,
) -> PackSize:
    """Experiments per array task for ``count`` experiments of resource set ``res``
    (see the module), with the reason in words (``--dry-run`` shows it); ``capacity``:
    the partition's CPUs, None if unknown."""
    fixed = res.get("experiments_per_task")
    if fixed is not None:
        size = max(1, int(fixed))
        return PackSize(size, f"fixed by slurm_experiments_per_task={size}")
    if count <= 1:
        return PackSize(1, "one experiment")
    running = at_once(res, workers)
    if durations:
        mean = sum(durations) / len(durations)
        estimate = f"{mean:.3g} s each, the mean of {len(durations)} recorded"
    else:
        mean = DEFAULT_ESTIMATE_S
        estimate = f"{mean:g} s each, the default estimate (none recorded)"
    target = target_s(res, partition_limit_min)
    by_time = max(1, int(target * running / max(mean, 1e-3)))
    parallelism = int(res["array_parallelism"])
    slots = parallelism
    cpus = int(res["cpus_per_task"])
    if capacity:
        slots = min(slots, max(1, capacity // cpus))
    by_spread = math.ceil(count / max(1, slots))
    size = max(1, min(by_time, by_spread))
    if target < 60.0 * float(res["pack_target_min"]):
        aim = f"the time limit less slurm_signal_delay_s ({target:g} s)"
    else:
        aim = f"slurm_pack_target_min={float(res['pack_target_min']):g}"
    why = f"auto: {by_time} fill {aim} at {estimate}, {running} at once"
    if by_spread < by_time:
        if capacity and slots < parallelism:
            source = f"the partition's {capacity} CPUs, {cpus} per task"
        else:
            source = f"slurm_array_parallelism={parallelism}"
        why += f"; capped at {by_spread} to spread {count} over {slots} tasks at once ({source})"
    return PackSize(size, why)


def plan(
    groups: Mapping[Group, Sequence[Task]],
    sizes: Mapping[Group, int],
    max_array_size: int,
) -> list[PackArray]:
    """The sbatch calls of a packed submission, in order: ``groups`` (by stage and
    resource set, stages in order) in packs of ``sizes``, at most ``max_array_size``
    packs per array; each array waits for those that run its tasks' ``after``."""
    placed: dict[str, int] = {}  # folder -> position of the array that runs it
    arrays: list[PackArray] = []
    step = max(1, max_array_size)
    for (stage, key), members in groups.items():
        after = tuple(sorted({placed[f] for t in members for f in t.after if f in placed}))
        packs = split(members, sizes[stage, key])
        for start in range(0, len(packs), step):
            chunk = packs[start : start + step]
            placed.update((task.folder, len(arrays)) for pack in chunk for task in pack)
            arrays.append(PackArray(stage, key, chunk, after))
    return arrays


def afterany(arrays: Iterable[str]) -> str:
    """The ``--dependency`` of an array of packs on ``arrays`` (a pack's tasks end
    together: ``aftercorr`` cannot pair them); "" for none."""
    waits = list(arrays)
    return "afterany:" + ":".join(waits) if waits else ""


def workers_of(task: Task, config: BaseConfig) -> int:
    """The threads one experiment uses (its own config's ``workers``, else the run's)."""
    return int((task.config or config).workers)


def running_in(res: Mapping[str, Any], packs: Sequence[Sequence[Task]], config: BaseConfig) -> int:
    """How many experiments each task of one array of ``packs`` runs at once: what its
    CPUs allow, and no more than its biggest pack holds (a pack of 2 on 8 CPUs asks
    GPUs for 2, not 8)."""
    pool = at_once(res, workers_of(packs[0][0], config))
    return max(1, min(pool, max(len(pack) for pack in packs)))


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
