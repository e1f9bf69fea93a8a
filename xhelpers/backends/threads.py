"""CPU threads of an experiment's process: its thread-count variables and thread pools.

BLAS and OpenMP libraries start one thread per core unless told otherwise, so ``-j2``
on two cores would run four. An experiment's process starts with each of the usual
thread-count variables at its share of the CPUs, except the ones the user set in the
runner's environment: those it gets as the user set them. One the user did not set
follows the user's ``OMP_NUM_THREADS`` when that is set, since it is the variable each
of these libraries falls back on: ``OMP_NUM_THREADS=4`` alone means four threads for
OpenBLAS too, not the share.

The share: ``config.workers`` (``-w``) in the local pool and in a SLURM pack's pool;
``cpus_per_task`` for an unpacked SLURM task, whose job script exports the variables
(:func:`export_line`) before its Python starts.

A library reads them when it loads. One loaded before the experiment's process had them
keeps the pool it started with: loaded in the runner that forked the worker (``run.py``
imported numpy at its top), in the forkserver (which imports ``run.py``), or in the
runner itself (``-j1`` runs experiments there). threadpoolctl, when installed, resizes
those pools at runtime; without it only a spawned worker, which imports everything
after it has the variables, holds them to the share.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "THREAD_VARIABLES",
    "ThreadLimits",
    "ThreadPolicy",
    "export_line",
    "threads_member",
    "unheld_pools",
]

# joblib's (loky's) list, but for NUMBA_NUM_THREADS: numba raises when it changes after
# its threads started, which a forked worker's change would be.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# threadpoolctl's name of each library a variable sizes.
_VARIABLE_OF = {
    "openmp": "OMP_NUM_THREADS",
    "openblas": "OPENBLAS_NUM_THREADS",
    "mkl": "MKL_NUM_THREADS",
    "blis": "BLIS_NUM_THREADS",
}
_BLAS_MODULES = ("numpy", "scipy", "torch", "sklearn")

_warned = False


@dataclass(frozen=True)
class ThreadPolicy:
    """The thread-count variables the user set in the runner's environment; every
    other one is the experiment's share. Made in the runner, sent to its workers."""

    user: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> ThreadPolicy:
        return cls(tuple((name, environ[name]) for name in THREAD_VARIABLES if name in environ))

    @property
    def generic(self) -> str | None:
        """The user's OMP_NUM_THREADS when it is a count (not a nested list like 4,2)."""
        value = dict(self.user).get("OMP_NUM_THREADS", "")
        return value if value.isdigit() and int(value) > 0 else None

    @property
    def decided_by_user(self) -> bool:
        """Whether the user's environment decides every variable: then a library loaded
        in the runner was sized as the experiments would size it."""
        return self.generic is not None or len(self.user) == len(THREAD_VARIABLES)

    def variables(self, workers: int) -> dict[str, str]:
        """Each variable's value for an experiment with ``config.workers == workers``."""
        share = self.generic or str(workers)
        user = dict(self.user)
        return {name: user.get(name, share) for name in THREAD_VARIABLES}


def export_line(variables: Mapping[str, str]) -> str:
    """The shell line of a job script that sets ``variables`` for what it starts."""
    return "export " + " ".join(f"{name}={shlex.quote(v)}" for name, v in variables.items())


def threads_member(environ: Mapping[str, str]) -> str:
    """The metafile member ``"threads": {variable: value}`` of the variables a process
    has (those it has: a SLURM task's come from its job script and the user's setup)."""
    values = {name: environ[name] for name in THREAD_VARIABLES if name in environ}
    return '"threads": ' + json.dumps(values)


class ThreadLimits:
    """This process' thread-count variables and loaded thread pools, at the share of
    the experiment it runs; :meth:`restore` undoes it (``-j1``: in the runner)."""

    def __init__(self, policy: ThreadPolicy) -> None:
        self.policy = policy
        self.workers: int | None = None
        self.member = ""  # the metafile member: "threads": {variable: value}
        self._saved: dict[str, str | None] = {}
        self._limiter: Any = None  # threadpoolctl's first, which knows the sizes before

    def apply(self, workers: int) -> str:
        """Set everything for an experiment with ``workers``; its metafile member. Done
        once per process unless an experiment's own config changes ``workers``."""
        if workers != self.workers:
            values = self.policy.variables(workers)
            for name, value in values.items():
                self._saved.setdefault(name, os.environ.get(name))
                os.environ[name] = value
            self._resize(values)
            self.workers = workers
            self.member = threads_member(values)
        return self.member

    def _resize(self, values: Mapping[str, str]) -> None:
        # Only pools already loaded need resizing: one loaded later reads the variables.
        # (threadpoolctl's import and scan cost ~50 ms a process: a sweep of tiny
        # experiments that imports no BLAS does not pay them.)
        if not any(name in sys.modules for name in _BLAS_MODULES):
            return
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: see the module's docstring
            return
        controller = ThreadpoolController()
        limits: dict[str, int] = {}
        for lib in controller.lib_controllers:
            variable = _VARIABLE_OF.get(lib.internal_api)
            if variable is not None and values[variable].isdigit():
                limits[lib.filepath] = int(values[variable])
        if limits:
            limiter = controller.limit(limits=limits)
            if self._limiter is None:
                self._limiter = limiter

    def restore(self) -> None:
        """The variables and pools as they were before the first :meth:`apply`."""
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        self.workers = None


def unheld_pools(policy: ThreadPolicy, start_method: str) -> str | None:
    """The warning for pools this run cannot hold to their share, once per process:
    a BLAS loaded here before forking, without threadpoolctl to resize it. None if all
    is well (spawn, nothing loaded, threadpoolctl installed, or the user decided)."""
    global _warned
    if _warned or start_method == "spawn" or policy.decided_by_user:
        return None
    loaded = [name for name in _BLAS_MODULES if name in sys.modules]
    if not loaded or importlib.util.find_spec("threadpoolctl") is not None:
        return None
    _warned = True
    return (
        f"{loaded[0]} was imported before the workers started ({start_method}), so its "
        "threads were counted already and each experiment may use every core: install "
        "threadpoolctl (pip install threadpoolctl) to hold each one to its -w share, or "
        "use start_method 'spawn'"
    )
