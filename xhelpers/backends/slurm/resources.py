"""SLURM settings of an experiment: the ``slurm_*`` config fields, per-experiment
overrides on top, and their translation into submitit's ``SlurmExecutor`` parameters.

No submitit import here: definitions and planning use it without paying for one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from xhelpers.backends.threads import export_line
from xhelpers.config import (
    RESOURCE_KEYS,
    SLURM_RESOURCE_KEYS,
    BaseConfig,
    check_resources,
    gpu_need,
)
from xhelpers.errors import ConfigError

__all__ = [
    "at_once",
    "gpus_asked",
    "resource_defaults",
    "resources_for",
    "sbatch_parameters",
    "with_dependency",
]


def resource_defaults(config: BaseConfig) -> dict[str, Any]:
    """The resource settings ``config`` gives every experiment (``slurm_<key>`` fields)."""
    return {key: getattr(config, "slurm_" + key) for key in SLURM_RESOURCE_KEYS}


def resources_for(config: BaseConfig, override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One experiment's resources: ``config``'s, updated by ``override`` (keys without
    ``slurm_``). An unknown key is a ConfigError listing the valid ones with defaults.

    ``gpus`` (default 0) is what the experiment itself needs: SLURM is asked for it (see
    :func:`gpus_asked`), and experiments needing different numbers go in different arrays.
    """
    res = resource_defaults(config)
    res["gpus"] = 0.0
    if override:
        check_resources(override, "SLURM resources")
        res.update((k, v) for k, v in override.items() if k in RESOURCE_KEYS)
        res["gpus"] = gpu_need(res["gpus"], "SLURM resources")
    return res


def at_once(res: Mapping[str, Any], workers: int) -> int:
    """How many experiments a packed task runs at once: its CPUs over each one's
    ``workers`` (threads), at least one."""
    return max(1, int(res["cpus_per_task"]) // max(1, workers))


def gpus_asked(res: Mapping[str, Any], running: int = 1) -> int:
    """The GPUs one array task asks SLURM for: what ``running`` experiments at once need
    (``gpus`` each: fractions share a device, so 4 x 0.5 is 2), and at least the
    ``gpus_per_node`` set by hand."""
    need = float(res.get("gpus") or 0) * running
    return max(int(res["gpus_per_node"] or 0), math.ceil(need - 1e-9))


def sbatch_parameters(
    res: Mapping[str, Any],
    job_name: str,
    running: int = 1,
    threads: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Resources as submitit ``SlurmExecutor.update_parameters`` arguments, for array
    tasks that run ``running`` experiments at once (a pack's pool; 1 unpacked).

    ``threads``: thread-count variables the job script exports before the task's Python
    starts (an unpacked task's, at ``cpus_per_task``; a pack's pool sets its workers'
    own), ahead of the user's ``setup`` lines, which may change them."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": int(res["timeout_min"]),
        "cpus_per_task": int(res["cpus_per_task"]),
        "array_parallelism": int(res["array_parallelism"]),
        "signal_delay_s": int(res["signal_delay_s"]),
    }
    if res["partition"]:
        params["partition"] = res["partition"]
    gpus = gpus_asked(res, running)
    if gpus:
        params["gpus_per_node"] = gpus
    if res["mem_gb"] is not None:
        params["mem"] = _sbatch_memory(float(res["mem_gb"]))
    setup = [export_line(threads)] if threads else []
    setup += res["setup"] or []
    if setup:
        params["setup"] = setup
    if res["additional_parameters"]:
        params["additional_parameters"] = dict(res["additional_parameters"])
    return params


def with_dependency(params: Mapping[str, Any], dependency: str) -> dict[str, Any]:
    """``params`` for an array held by ``dependency`` (a ``--dependency`` value), which
    SLURM cancels once that can never be satisfied (``--kill-on-invalid-dep=yes``: a
    failed upstream never leaves it pending forever).

    A ``dependency`` of the user's own (``slurm_additional_parameters``) is kept: both
    must hold. One with ``?`` (any of them) cannot be joined to ours: ConfigError.
    """
    out = dict(params)
    extra = dict(out.get("additional_parameters") or {})
    own = extra.pop("dependency", None)
    if own:
        if "?" in str(own):
            raise ConfigError(
                f"slurm_additional_parameters dependency={own!r} uses '?' (any of): it cannot "
                "be combined with the dependencies of a pipeline's stages (all of)"
            )
        dependency = f"{dependency},{own}"
    for key in ("kill_on_invalid_dep", "kill-on-invalid-dep"):
        extra.pop(key, None)
    extra["kill-on-invalid-dep"] = "yes"
    out["additional_parameters"] = extra
    out["dependency"] = dependency
    return out


def _sbatch_memory(gb: float) -> str:
    """``--mem`` for ``gb`` gigabytes: whole GB as such, fractions in MB (sbatch wants ints)."""
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"
