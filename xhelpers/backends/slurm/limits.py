"""What the cluster allows a submission: its ``MaxArraySize`` (``scontrol``), and a
partition's CPUs and time limit (``sinfo``), which size the packs
(:mod:`.packing`). Asked once per backend; SLURM's tools are run as in :mod:`.queue`.
"""

from __future__ import annotations

import re

from xhelpers.backends.slurm.queue import _one_line, _run
from xhelpers.errors import BackendError

__all__ = ["partition_capacity", "read_max_array_size"]


def read_max_array_size() -> int:
    """The cluster's ``MaxArraySize`` from ``scontrol show config`` (0: arrays disabled)."""
    proc = _run(["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise BackendError(f"scontrol show config: {_one_line(proc.stderr) or 'failed'}")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    if match is None:
        raise BackendError("MaxArraySize not found in `scontrol show config`")
    return int(match.group(1))


def partition_capacity(partition: str | None) -> tuple[int | None, float | None]:
    """(CPUs, time limit in minutes) of ``partition`` (None: the default one) from ONE
    ``sinfo`` call; either None when SLURM does not say (``infinite``, no such
    partition, sinfo failing: packing then falls back on its other limits)."""
    cmd = ["sinfo", "-h", "-o", "%P|%C|%l"]
    try:
        proc = _run(cmd)
    except BackendError:
        return None, None
    if proc.returncode != 0:
        return None, None
    cpus: int | None = None
    limit: float | None = None
    for line in proc.stdout.splitlines():
        name, _, rest = line.strip().partition("|")
        counts, _, time_limit = rest.partition("|")
        default = name.endswith("*")
        if (partition is None and not default) or (
            partition is not None and name.rstrip("*") != partition
        ):
            continue
        total = counts.split("/")[-1]
        if total.isdigit():
            cpus = (cpus or 0) + int(total)
        limit = _minutes(time_limit.strip())
    return cpus, limit


def _minutes(text: str) -> float | None:
    """SLURM's time (``[days-]hours:minutes:seconds``, ``minutes``, ...) in minutes;
    None for ``infinite`` or what does not parse."""
    days, _, clock = text.rpartition("-") if "-" in text else ("", "", text)
    parts = clock.split(":")
    if (
        not all(p.isdigit() for p in parts)
        or not 1 <= len(parts) <= 3
        or (days and not days.isdigit())
    ):
        return None
    numbers = [int(p) for p in parts]
    if len(numbers) == 1:
        seconds = numbers[0] * 60
    elif len(numbers) == 2:
        seconds = numbers[0] * 60 + numbers[1]
    else:
        seconds = numbers[0] * 3600 + numbers[1] * 60 + numbers[2]
    return (int(days or 0) * 86400 + seconds) / 60
