"""The config model: :class:`BaseConfig`, its fields and their checks."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from xhelpers.config.remote import RemoteSettings, remote_table
from xhelpers.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FINGERPRINT_SCOPES", "BaseConfig", "FingerprintScope", "is_secret_name", "parse_gpus"]

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_SECRET_NAME = re.compile(r"token|secret|password|passwd|api_?key", re.IGNORECASE)


def is_secret_name(key: str) -> bool:
    """Whether a field or key named ``key`` holds a secret (a token, a password...):
    its value is shown as ``'***'`` wherever a config is shown."""
    return _SECRET_NAME.search(key) is not None


# What a result's fingerprint covers, narrowest first (xhelpers.core.fingerprints).
FingerprintScope = Literal["arguments", "code", "module", "git"]
FINGERPRINT_SCOPES: tuple[FingerprintScope, ...] = ("arguments", "code", "module", "git")

# A device as CUDA_VISIBLE_DEVICES names it: an index, or a GPU or MIG UUID.
_GPU_ID = re.compile(r"\d+|(?:GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/\-]*")


class _ConfigMeta(type(BaseModel)):  # type: ignore[misc]
    """Lets subclasses override an inherited field without repeating its type.

    ``slurm = True`` in a subclass body is what researchers write; pydantic v2 alone
    rejects it. We also remember which fields a class body sets itself, because a
    machine config contributes exactly those.
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        annotations = ns.get("__annotations__")
        inherited: dict[str, Any] = {}
        for base in bases:
            for key, info in getattr(base, "__pydantic_fields__", {}).items():
                inherited.setdefault(key, info.annotation)
        own = set(annotations or ())
        for key in list(ns):
            if key in inherited and key not in own:
                if annotations is None:
                    annotations = ns["__annotations__"] = {}
                annotations[key] = inherited[key]
                own.add(key)
        cls = super().__new__(mcs, name, bases, ns, **kw)
        cls._xh_own_fields = frozenset(own)
        return cls


class BaseConfig(BaseModel, metaclass=_ConfigMeta):
    """The framework's settings; subclass it to add your own.

    Use ``MyConfig.with_updates(config)`` inside experiments to get a ``MyConfig``
    whatever the caller passed (None, a dict, or any config instance).
    """

    # defer_build: a CLI that only shows --help never validates a config, so it need not
    # pay for building the schema of every field at import.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)
    _xh_own_fields: ClassVar[frozenset[str]] = frozenset()

    output_directory: Path = Field(
        Path("results"), description="Root of the result tree: <output_directory>/<group>/<name>/."
    )
    jobs: int = Field(1, ge=1, description="Experiments run at once (1: in the main process).")
    workers: int = Field(1, ge=1, description="Processes each experiment may use itself.")
    gpus: list[str] | None = Field(
        None,
        description="GPUs a local run hands to the experiments that ask for some (--gpus 0,1), "
        "named as CUDA_VISIBLE_DEVICES names them (None: the CUDA_VISIBLE_DEVICES the run "
        "started with, else the GPUs `nvidia-smi -L` lists, else none).",
    )
    slurm: bool = Field(False, description="Send experiments to SLURM instead of running here.")
    slurm_partition: str | None = Field(
        None, description="SLURM partition (None: the cluster's default partition)."
    )
    slurm_timeout_min: int = Field(60, ge=1, description="SLURM time limit per run, in minutes.")
    slurm_cpus_per_task: int = Field(1, ge=1, description="CPUs per experiment on SLURM.")
    slurm_gpus_per_node: int = Field(0, ge=0, description="GPUs per experiment on SLURM.")
    slurm_mem_gb: float | None = Field(
        None,
        gt=0,
        description="Memory per experiment on SLURM, in GB (None: the cluster's default).",
    )
    slurm_array_parallelism: int = Field(
        256, ge=1, description="Tasks of one SLURM job array running at once (the %N throttle)."
    )
    slurm_additional_parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra sbatch options, e.g. {'account': 'lab', 'qos': 'high'}.",
    )
    slurm_setup: list[str] = Field(
        default_factory=list,
        description="Shell lines run on the node before the experiment (module load, venv).",
    )
    slurm_max_requeues: int = Field(
        3, ge=0, description="Requeues after timeouts/preemptions before an experiment fails."
    )
    slurm_signal_delay_s: int = Field(
        90, ge=1, description="Seconds before the time limit that SLURM signals a checkpoint."
    )
    slurm_experiments_per_task: int | None = Field(
        None,
        ge=1,
        description="Experiments one SLURM array task runs, in a pool of its CPUs (None: "
        "chosen from recorded durations to fill slurm_pack_target_min; 1: one task each).",
    )
    slurm_pack_target_min: float = Field(
        10.0,
        gt=0,
        description="How long a packed SLURM task should run, in minutes, when "
        "slurm_experiments_per_task is None (at most slurm_timeout_min).",
    )
    slurm_poll_interval_s: float = Field(
        5.0, gt=0, description="Seconds between job-state queries (one sacct call) while waiting."
    )
    slurm_max_array_size: int | None = Field(
        None, ge=1, description="Largest job array to submit (None: the cluster's MaxArraySize)."
    )
    slurm_keep_job_files: bool = Field(
        False,
        description="Keep submitit's files in <group>/.slurm/ of experiments that succeeded "
        "(pickles, stdout/stderr, sbatch scripts), for debugging; by default they are removed.",
    )
    loglevel: str = Field("WARNING", description="Console log level: " + ", ".join(_LEVELS) + ".")
    logger: str = Field(
        "", description="Logger whose records are captured per experiment ('' = all)."
    )
    checkpoint_files: list[str] = Field(
        default_factory=lambda: ["*checkpoint*"],
        description="Patterns of files an experiment resumes from; listed in the metafile.",
    )
    fingerprint: FingerprintScope = Field(
        "code",
        description="What a result's fingerprint covers beyond function name and arguments: "
        "'code' (the function's source, a command's {here} files), 'module' (its whole "
        "file), 'git' (the repository's commit and uncommitted changes), 'arguments' (none).",
    )
    progress_interval_s: float = Field(
        30.0, gt=0, description="Seconds between progress lines when stderr is no terminal."
    )
    start_method: Literal["fork", "forkserver", "spawn"] | None = Field(
        None, description="multiprocessing start method for -jN (None: Python's default)."
    )
    slacktoken: SecretStr | None = Field(None, description="Slack bot token (secret).")
    slackchannel: str | None = Field(None, description="Slack channel id.")
    slack_base_url: str | None = Field(
        None, description="Slack Web API base URL (None: https://slack.com/api/)."
    )
    slack_loglevel: str = Field(
        "WARNING", description="Experiments' log records posted to Slack from this level up."
    )

    remote: dict[str, RemoteSettings] = Field(
        default_factory=dict,
        description="Remotes for --remote/--pull NAME: 'host:folder' (named by its host), or "
        "{name: {'host': ..., 'folder': ..., 'setup': [...], ...}} (see RemoteSettings).",
    )

    @field_validator("remote", mode="before")
    @classmethod
    def _remotes(cls, value: Any) -> Any:
        return remote_table(value)

    @field_validator("output_directory")
    @classmethod
    def _not_empty(cls, value: Path) -> Path:
        if str(value) in ("", "."):
            raise ValueError("must name a folder (results go to <output_directory>/<group>/)")
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value: Any) -> Any:
        return None if value is None else parse_gpus(value)

    @field_validator("loglevel", "slack_loglevel", mode="before")
    @classmethod
    def _normalize_level(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = logging.getLevelName(value)
        if isinstance(value, str) and value.upper() in _LEVELS:
            return value.upper()
        raise ValueError(f"must be one of {', '.join(_LEVELS)}, not {value!r}")

    @classmethod
    def with_updates(
        cls,
        config: BaseConfig | Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Self:
        """Return a ``cls`` instance: defaults, updated from ``config``, then ``overrides``.

        From an instance of ``cls`` (or a subclass) every value is taken; from another
        config class, only the values set explicitly on it, so its class defaults do not
        shadow ours.
        """
        values: dict[str, Any]
        if config is None:
            values = {}
        elif isinstance(config, cls):
            values = {k: getattr(config, k) for k in cls.model_fields}
        elif isinstance(config, BaseConfig):
            values = {k: getattr(config, k) for k in config.model_fields_set}
        elif isinstance(config, Mapping):
            values = dict(config)
        else:
            raise ConfigError(
                f"config must be None, a dict or a BaseConfig, not {type(config).__name__}"
            )
        if overrides:
            values.update(overrides)
        return cls._build(values, source="config")

    @classmethod
    def _build(cls, values: Mapping[str, Any], *, source: str) -> Self:
        unknown = [k for k in values if k not in cls.model_fields]
        if unknown:
            raise ConfigError(
                f"{source}: unknown field {unknown[0]!r} for {cls.__name__}; "
                f"valid fields: {', '.join(sorted(cls.model_fields))}",
                field=unknown[0],
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            raise ConfigError(
                f"{source}: field {field!r}: {err['msg']} (got {err.get('input')!r}); "
                f"valid fields: {', '.join(sorted(cls.model_fields))}",
                field=field,
            ) from None

    def redacted(self) -> dict[str, Any]:
        """The config as JSON-ready data, with every secret replaced by ``'***'``."""
        data = self.model_dump(mode="json")
        for key, value in data.items():
            if value is not None and (
                isinstance(getattr(self, key), SecretStr) or _SECRET_NAME.search(key)
            ):
                data[key] = "***"
        return data


def parse_gpus(value: object) -> list[str]:
    """Device ids from ``"0,1"``, ``[0, 1]`` or ``["GPU-…"]``, each once, as
    CUDA_VISIBLE_DEVICES takes them (``""``: none). ValueError names the first bad one."""
    items: list[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if value.strip() else []
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"must list device ids, as '0,1' or [0, 1], not a {type(value).__name__}")
    out: list[str] = []
    for item in items:
        text = str(item).strip() if isinstance(item, (int, str)) else ""
        if isinstance(item, bool) or not _GPU_ID.fullmatch(text):
            raise ValueError(
                f"{item!r} is not a device id: give indices (0,1) or GPU-/MIG- UUIDs, "
                "comma-separated"
            )
        text = str(int(text)) if text.isdigit() else text  # "01" is device 1
        if text in out:
            raise ValueError(f"device {text} is given twice: name each device once")
        out.append(text)
    return out
