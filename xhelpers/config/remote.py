"""Remote machines (``--remote NAME``): the ``remote`` field's tables, one per machine."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xhelpers.errors import ConfigError

if TYPE_CHECKING:
    from xhelpers.config.model import BaseConfig

__all__ = ["RemoteSettings", "remote_named", "remote_table"]


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


def remote_table(value: Any) -> Any:
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


def remote_named(config: BaseConfig, name: str) -> RemoteSettings:
    """The remote ``--remote NAME`` names; ConfigError listing the configured ones."""
    if name in config.remote:
        return config.remote[name]
    known = ", ".join(sorted(config.remote)) or "none: set remote in config.py"
    raise ConfigError(f"no remote named {name!r}; remotes: {known}", field="remote")
