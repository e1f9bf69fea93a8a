"""GPU slots of a local run: which GPUs it has, and which experiments hold them.

The run's GPUs are ``config.gpus`` (``--gpus 0,1``); else the ``CUDA_VISIBLE_DEVICES``
this process has, read as CUDA reads it (up to its first entry that names no device);
else the GPUs ``nvidia-smi -L`` lists, when it is on ``PATH``; else none. They are named
as ``CUDA_VISIBLE_DEVICES`` names them (indices, or UUIDs), and that is what each
experiment gets.

An experiment asks for ``gpus`` in its resources: a fraction (0.5) is a share of one GPU,
held with others whose shares add up to at most a whole; a whole number is that many
GPUs of its own. Shares are exact fractions (``Fraction("0.1")``), so ten 0.1s fill one
GPU and three 1/3s fit on one. A share goes to the GPU with the least room that still
fits it, so fractions pack together and whole GPUs stay free for those that need them.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import shutil
import subprocess
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from xhelpers.config import BaseConfig, parse_gpus
from xhelpers.core.execution import Task

__all__ = [
    "NO_GPUS",
    "Allocation",
    "GpuQueue",
    "GpuSlots",
    "asks_for_gpus",
    "detect_gpus",
    "need_of",
    "run_gpus",
]

logger = logging.getLogger(__name__)

_NVIDIA_SMI_TIMEOUT_S = 20.0
_NVIDIA_SMI_GPU = re.compile(r"^GPU (\d+):", re.MULTILINE)  # not its MIG lines, indented

_ONE = Fraction(1)
_ZERO = Fraction(0)

# What nvidia-smi listed, once per process (it takes a tenth of a second and more).
_smi_listed: list[str] | None = None


def run_gpus(config: BaseConfig) -> list[str]:
    """The GPUs a local run with ``config`` hands out (see the module's docstring)."""
    return list(config.gpus) if config.gpus is not None else detect_gpus()


def detect_gpus() -> list[str]:
    """This machine's GPUs for a run that names none: never an error, at worst none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return _visible(visible)
    global _smi_listed
    if _smi_listed is None:
        _smi_listed = _from_nvidia_smi()
    return list(_smi_listed)


def _visible(value: str) -> list[str]:
    """The devices of a CUDA_VISIBLE_DEVICES value: CUDA stops at the first entry that
    names none (``-1``, ``NoDevFiles``, a repeat), and so do we."""
    found: list[str] = []
    for part in value.split(","):
        try:
            (device,) = parse_gpus(part)
        except ValueError:
            break
        if device in found:
            break
        found.append(device)
    return found


def _from_nvidia_smi() -> list[str]:
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        done = subprocess.run(
            [program, "-L"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi -L failed: %s; no GPUs", exc)
        return []
    if done.returncode != 0:  # a driver without devices, a broken install
        logger.debug("nvidia-smi -L exited %d; no GPUs", done.returncode)
        return []
    return list(dict.fromkeys(_NVIDIA_SMI_GPU.findall(done.stdout)))


def asks_for_gpus(task: Task) -> bool:
    """Cheap, for every task of a run: most have no resources at all."""
    return bool(task.resources and task.resources.get("gpus"))


def need_of(task: Task) -> Fraction:
    """How much GPU ``task`` asks for (its ``gpus`` resource, checked when defined)."""
    value = task.resources.get("gpus") if task.resources else None
    if not value:
        return _ZERO
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    # Through its text: Fraction(0.1) would be 3602879701896397/36028797018963968.
    return Fraction(str(value))


@dataclass(frozen=True, slots=True)
class Allocation:
    """The GPUs one experiment holds, and its share of each."""

    devices: tuple[str, ...]
    share: Fraction


NO_GPUS = Allocation((), _ZERO)


class GpuSlots:
    """The run's GPUs and what is free on each; taken and given back by the pool."""

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = list(devices)
        self._free = dict.fromkeys(self.devices, _ONE)

    def possible(self, need: Fraction) -> bool:
        """Whether the run could ever give ``need`` (with every GPU free)."""
        if need == 0:
            return True
        return bool(self.devices) if need < 1 else need <= len(self.devices)

    def full(self) -> bool:
        """Nothing free on any GPU: no experiment that needs one can start."""
        return not any(self._free.values())

    def take(self, need: Fraction) -> Allocation | None:
        """Hold ``need`` for one experiment; None while that much is not free."""
        if need == 0:
            return NO_GPUS
        if need < 1:
            fits = [d for d in self.devices if self._free[d] >= need]
            if not fits:
                return None
            device = min(fits, key=lambda d: self._free[d])  # the fullest that fits
            self._free[device] -= need
            return Allocation((device,), need)
        whole = [d for d in self.devices if self._free[d] == 1][: int(need)]
        if len(whole) < need:
            return None
        for device in whole:
            self._free[device] = _ZERO
        return Allocation(tuple(whole), _ONE)

    def give_back(self, held: Allocation) -> None:
        for device in held.devices:
            self._free[device] += held.share


class GpuQueue:
    """The experiments that wait for GPU slots, in order, and which of them can start.

    Each starts as soon as its slots are free, in order; one that needs more than is
    free waits while later ones that fit go first (a finite run: it gets its turn once
    what is left fits). The queue is looked at again only once something changed (an
    experiment added, a job or slots freed: ``dirty``), and a look stops as soon as
    nothing left can fit, so a long queue costs nothing while it waits.
    """

    def __init__(self) -> None:
        self.waiting: deque[tuple[Task, Fraction]] = deque()
        self._needs: Counter[Fraction] = Counter()  # how many wait with each need
        # Set by the pool when a job or slots were freed: what waits may start now. An
        # attribute, not a method: the pool sets it at every experiment's end.
        self.dirty = False

    def __len__(self) -> int:
        return len(self.waiting)

    def append(self, task: Task, need: Fraction) -> None:
        self.waiting.append((task, need))
        self._needs[need] += 1
        self.dirty = True

    def clear(self) -> None:
        self.waiting.clear()
        self._needs.clear()

    def ready(self, slots: GpuSlots, room: int) -> list[tuple[Task, Allocation]]:
        """Up to ``room`` experiments that can start now, in order, their slots taken
        (the caller starts each, or gives its slots back)."""
        if not self.dirty or room <= 0:
            return []
        self.dirty = False
        started: list[tuple[Task, Allocation]] = []
        passed: list[tuple[Task, Fraction]] = []
        refused: Fraction | None = None  # the least that did not fit: more cannot either
        while self.waiting and len(started) < room and not slots.full():
            if refused is not None and refused <= min(self._needs):
                break  # every need left is at least one that did not fit
            task, need = self.waiting.popleft()
            held = None if refused is not None and need >= refused else slots.take(need)
            if held is None:
                refused = need if refused is None else min(refused, need)
                passed.append((task, need))
                continue
            self._needs[need] -= 1
            if not self._needs[need]:
                del self._needs[need]
            started.append((task, held))
        self.waiting.extendleft(reversed(passed))
        return started
