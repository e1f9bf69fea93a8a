"""Configuration: a pydantic model of settings, updated from machine files and flags.

Precedence, lowest first: the group's ``configcls`` defaults < the values a machine
config class (``Config`` in ``./config.py``, or ``--config FILE[:Class]``) sets in its
own class body < command-line flags or keyword arguments.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from xhelpers.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

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

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "config.py"
DEFAULT_CONFIG_CLASS = "Config"
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_SECRET_NAME = re.compile(r"token|secret|password|passwd|api_?key", re.IGNORECASE)

_ConfigT = TypeVar("_ConfigT", bound="BaseConfig")


def is_secret_name(key: str) -> bool:
    """Whether a field or key named ``key`` holds a secret (a token, a password...):
    its value is shown as ``'***'`` wherever a config is shown."""
    return _SECRET_NAME.search(key) is not None


# What a result's fingerprint covers, narrowest first (xhelpers.core.fingerprints).
FingerprintScope = Literal["arguments", "code", "module", "git"]
FINGERPRINT_SCOPES: tuple[FingerprintScope, ...] = ("arguments", "code", "module", "git")

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


class RemoteSettings(BaseModel):
    """One remote machine (``--remote NAME``): where the project goes, how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    host: str = Field(description="SSH host: a name, user@name, or an alias of ~/.ssh/config.")
    folder: str = Field(description="The project's folder there (~/ is the remote home).")
    setup: list[str] = Field(
        default_factory=list,
        description="Shell lines run there first, each time (module load python/3.11).",
    )
    python: str = Field("python3", description="The remote Python the environment is made from.")
    installer: Literal["pip", "uv"] = Field(
        "pip", description="Creates the environment: python -m venv + pip, or uv (on PATH)."
    )
    requirements: str | None = Field(
        None,
        description="Dependency file to install (None: requirements.lock, requirements.txt, "
        "else pyproject.toml/setup.py as `install -e .`).",
    )
    venv_options: list[str] = Field(default_factory=list, description="Extra venv arguments.")
    install_options: list[str] = Field(
        default_factory=list, description="Extra install arguments (--no-index, --offline)."
    )
    config: str | None = Field(
        None, description="The remote's machine config file, relative to the folder (--config)."
    )
    output_directory: str | None = Field(
        None, description="The remote's result tree (None: this machine's, if relative)."
    )
    ssh_config: str | None = Field(None, description="SSH config file for this remote (ssh -F).")
    ssh_options: list[str] = Field(
        default_factory=list, description="Extra ssh options, each Key=Value (ProxyJump=gw)."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or value.startswith("-") or re.search(r"[\s'\"\\$`;|&<>]", value):
            raise ValueError("must be an SSH host name (user@name or an alias), no spaces")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip() or "\0" in value or "\n" in value:
            raise ValueError("must name a folder on the remote (absolute, or under ~/)")
        return value

    @field_validator("ssh_options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z]+=\S.*", item):
                raise ValueError(f"{item!r} is not Key=Value (each is passed as ssh -o Key=Value)")
        return value


def _remote_table(value: Any) -> Any:
    """``"host:folder"``, one table, or ``{name: table}`` as ``{name: table}``."""
    if value is None:
        return {}
    if isinstance(value, str):
        host, sep, folder = value.partition(":")
        if value.startswith("["):  # [::1]:folder
            end = value.find("]:")
            host, sep, folder = value[1:end], ":", value[end + 2 :] if end > 0 else ""
        if not sep or not host or not folder:
            raise ValueError(f"{value!r} is not 'host:folder' (login.cluster.org:~/study)")
        return {host: {"host": host, "folder": folder}}
    if isinstance(value, Mapping) and "host" in value and not isinstance(value["host"], Mapping):
        return {str(value["host"]): value}
    return value


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
        return _remote_table(value)

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


def remote_named(config: BaseConfig, name: str) -> RemoteSettings:
    """The remote ``--remote NAME`` names; ConfigError listing the configured ones."""
    if name in config.remote:
        return config.remote[name]
    known = ", ".join(sorted(config.remote)) or "none: set remote in config.py"
    raise ConfigError(f"no remote named {name!r}; remotes: {known}", field="remote")


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


def _class_body_values(klass: type, where: str) -> dict[str, Any]:
    if isinstance(klass, type) and issubclass(klass, BaseConfig):
        values = {}
        for key in klass._xh_own_fields:
            info = klass.model_fields[key]
            values[key] = info.get_default(call_default_factory=True)
        return values
    return {
        k: v
        for k, v in vars(klass).items()
        if not k.startswith("_")
        and not callable(v)
        and not isinstance(v, (classmethod, staticmethod, property))
    }


def load_machine_values(spec: str | None) -> tuple[dict[str, Any], str | None]:
    """Values a machine config class sets in its own body, and where they came from.

    ``spec`` is ``FILE`` or ``FILE:Class``; ``None`` means ``./config.py`` if it exists.
    """
    if spec is None:
        if not os.path.isfile(DEFAULT_CONFIG_FILE):
            return {}, None
        spec = DEFAULT_CONFIG_FILE
    path, _, class_name = spec.partition(":")
    class_name = class_name or DEFAULT_CONFIG_CLASS
    if not class_name.isidentifier():
        raise ConfigError(f"--config {spec!r}: {class_name!r} is not a class name (FILE[:Class])")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found (expected FILE or FILE:Class)")
    module_name = "_xhelpers_machine_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    # Loaded afresh each time (never cached in sys.modules): the file may have changed.
    importer = importlib.util.spec_from_file_location(module_name, path)
    assert importer is not None and importer.loader is not None
    module = importlib.util.module_from_spec(importer)
    try:
        # Compiled from its source, never from __pycache__: a .pyc is matched by the
        # file's mtime in whole seconds and its size, so an edit within the same second
        # that keeps the size would load the old values (and record them in metafiles).
        with open(path, "rb") as f:
            exec(compile(f.read(), path, "exec"), module.__dict__)
    except SystemExit as exc:  # a config file is read, not run: exiting is an error
        line = _error_line(exc, path)
        raise ConfigError(
            f"config file {path!r} called sys.exit({exc.code!r}){line} while being loaded; "
            "a config file only defines its class"
        ) from None
    except Exception as exc:
        line = _error_line(exc, path)
        raise ConfigError(
            f"config file {path!r} raised {type(exc).__name__}: {exc}{line}"
        ) from None
    klass = getattr(module, class_name, None)
    if not isinstance(klass, type):
        found = sorted(
            k
            for k, v in vars(module).items()
            if isinstance(v, type) and v.__module__ == module_name
        )
        raise ConfigError(
            f"config file {path!r} has no class {class_name!r}"
            + (f"; classes there: {', '.join(found)}" if found else "")
        )
    return _class_body_values(klass, f"{path}:{class_name}"), f"{path}:{class_name}"


def _error_line(exc: BaseException, path: str) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    tb = exc.__traceback__
    line = None
    target = os.path.abspath(path)
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def resolve_config(
    configcls: type[_ConfigT],
    *,
    config_file: str | Literal[False] | None = None,
    config: BaseConfig | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> _ConfigT:
    """The config a run uses: ``configcls`` < machine file < ``config`` < ``overrides``.

    ``config_file=None`` loads ``./config.py`` when present; ``False`` loads nothing.
    """
    values: dict[str, Any] = {}
    if config_file is not False:
        machine, source = load_machine_values(config_file)
        for key in machine:
            if key not in configcls.model_fields:
                raise ConfigError(
                    f"{source} sets {key!r}, which {configcls.__name__} has no field for; "
                    f"valid fields: {', '.join(sorted(configcls.model_fields))}",
                    field=key,
                )
        if machine:
            logger.debug("machine config %s sets %s", source, sorted(machine))
        values.update(machine)
        if machine:
            configcls._build(values, source=str(source))
    if config is not None:
        values.update(configcls.with_updates(config).model_dump(include=_set_fields(config)))
    if overrides:
        values.update({k: v for k, v in overrides.items() if v is not None})
    return configcls._build(values, source="options")


def _set_fields(config: BaseConfig | Mapping[str, Any]) -> set[str]:
    if isinstance(config, BaseConfig):
        return set(config.model_fields_set)
    return set(config)
