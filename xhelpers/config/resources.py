"""What one experiment may ask for (``resources=``): the per-experiment SLURM settings
and ``gpus``, checked where they are given."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from xhelpers.config.model import BaseConfig
from xhelpers.errors import ConfigError

__all__ = ["RESOURCE_KEYS", "SLURM_RESOURCE_KEYS", "check_resources", "gpu_need"]

# Per-experiment SLURM settings: the ``slurm_<key>`` config fields, without prefix.
SLURM_RESOURCE_KEYS = (
    "partition",
    "timeout_min",
    "cpus_per_task",
    "gpus_per_node",
    "mem_gb",
    "array_parallelism",
    "additional_parameters",
    "setup",
    "max_requeues",
    "signal_delay_s",
    "experiments_per_task",
    "pack_target_min",
)
# Every per-experiment resource: the SLURM ones, and ``gpus``, what a local run gives it
# (no config field holds a default: an experiment asks for none unless it says so).
RESOURCE_KEYS = (*SLURM_RESOURCE_KEYS, "gpus")
_GPU_NEED_RANGE = (
    "0 (none, the default), a fraction between 0 and 1 shared with other experiments "
    "(0.5: half of one GPU), or a whole number of GPUs of its own (1, 2, ...)"
)


def check_resources(resources: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError for a per-experiment resource that does not exist, or for a
    ``gpus`` that is not a number of GPUs (the SLURM ones are typed by their fields)."""
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        defaults = BaseConfig.model_fields
        valid = ", ".join(
            [
                f"{k} (default: {defaults['slurm_' + k].get_default(call_default_factory=True)!r})"
                for k in SLURM_RESOURCE_KEYS
            ]
            + ["gpus (default: 0)"]
        )
        raise ConfigError(
            f"{where}: unknown resource {unknown[0]!r}; valid resources: {valid}",
            field=unknown[0],
        )
    if "gpus" in resources:
        gpu_need(resources["gpus"], where)


def gpu_need(value: object, where: str) -> float:
    """An experiment's ``gpus`` resource as a number: 0, a fraction in (0, 1), or whole.

    A fraction above 1 is refused rather than rounded: 1.5 GPUs cannot be given without
    sharing a device in a way nobody asked for.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0 and (number <= 1 or number.is_integer()):
            return number
    raise ConfigError(f"{where}: gpus must be {_GPU_NEED_RANGE}; got {value!r}", field="gpus")
