"""Configuration: a pydantic model of settings, updated from machine files and flags.

Precedence, lowest first: the group's ``configcls`` defaults < the values a machine
config class (``Config`` in ``./config.py``, or ``--config FILE[:Class]``) sets in its
own class body < command-line flags or keyword arguments.

Its parts: :mod:`.model` (``BaseConfig``), :mod:`.machine` (machine files and the
resolved config), :mod:`.resources` (what one experiment may ask for), :mod:`.remote`
(``--remote`` machines).
"""

from xhelpers.config.machine import DEFAULT_CONFIG_FILE, load_machine_values, resolve_config
from xhelpers.config.model import (
    FINGERPRINT_SCOPES,
    BaseConfig,
    FingerprintScope,
    is_secret_name,
    parse_gpus,
)
from xhelpers.config.remote import RemoteSettings, remote_named
from xhelpers.config.resources import (
    RESOURCE_KEYS,
    SLURM_RESOURCE_KEYS,
    check_resources,
    gpu_need,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "FINGERPRINT_SCOPES",
    "RESOURCE_KEYS",
    "SLURM_RESOURCE_KEYS",
    "BaseConfig",
    "FingerprintScope",
    "RemoteSettings",
    "check_resources",
    "gpu_need",
    "is_secret_name",
    "load_machine_values",
    "parse_gpus",
    "remote_named",
    "resolve_config",
]
