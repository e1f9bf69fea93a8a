from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from experiments import TConfig

import xhelpers as xh
from xhelpers.config import load_machine_values, resolve_config
from xhelpers.errors import ConfigError


def test_defaults_cover_the_framework_settings() -> None:
    config = xh.BaseConfig()
    for field in (
        "output_directory",
        "jobs",
        "workers",
        "slurm",
        "loglevel",
        "logger",
        "checkpoint_files",
        "slacktoken",
        "slackchannel",
    ):
        assert field in xh.BaseConfig.model_fields
    assert config.output_directory == Path("results") and config.jobs == 1


def test_with_updates_from_none_dict_and_instances() -> None:
    assert TConfig.with_updates() == TConfig()
    config = TConfig.with_updates({"user_number": 1}, {"user_message": "hi"})
    assert isinstance(config, TConfig)
    assert (config.user_number, config.user_message) == (1, "hi")
    assert TConfig.with_updates(config) == config
    # from a parent-class instance only what was set explicitly is taken
    base = xh.BaseConfig(jobs=3)
    updated = TConfig.with_updates(base)
    assert isinstance(updated, TConfig) and updated.jobs == 3 and updated.user_number == 42


def test_unknown_key_names_it_and_lists_valid_fields() -> None:
    with pytest.raises(ConfigError) as info:
        TConfig.with_updates({"user_nubmer": 1})
    message = str(info.value)
    assert "'user_nubmer'" in message and "user_number" in message and "output_directory" in message
    assert info.value.field == "user_nubmer"


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"'jobs'.*valid integer"):
        TConfig.with_updates({"jobs": "many"})
    with pytest.raises(ConfigError, match=r"'loglevel'.*must be one of"):
        TConfig.with_updates({"loglevel": "LOUD"})
    with pytest.raises(ConfigError, match="config must be None, a dict or a BaseConfig"):
        TConfig.with_updates(42)  # type: ignore[arg-type]


def test_unannotated_override_in_subclass_body() -> None:
    class Machine(TConfig):
        slurm = True
        user_number = 7

    assert Machine().slurm is True and Machine().user_number == 7
    assert Machine._xh_own_fields == {"slurm", "user_number"}


def test_secrets_are_redacted_everywhere() -> None:
    config = xh.BaseConfig(slacktoken="xoxb-secret-token", slackchannel="C1")
    assert "xoxb-secret-token" not in repr(config) and "xoxb-secret-token" not in str(config)
    assert config.redacted()["slacktoken"] == "***"
    assert config.redacted()["slackchannel"] == "C1"

    class WithKey(xh.BaseConfig):
        api_key: str = "plain-secret"

    assert WithKey().redacted()["api_key"] == "***"
    assert pickle.loads(pickle.dumps(config)).slacktoken.get_secret_value() == "xoxb-secret-token"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MACHINE = """
import xhelpers as xh
class Config(xh.BaseConfig):
    jobs = 2
    user_message: str = "from machine"
class Other:
    workers = 5
"""


def test_precedence_configcls_then_machine_then_flags(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text(MACHINE)
    config = resolve_config(TConfig, overrides={"workers": 3})
    assert isinstance(config, TConfig)
    assert (config.jobs, config.user_message, config.workers, config.user_number) == (
        2,
        "from machine",
        3,
        42,
    )
    assert resolve_config(TConfig, overrides={"jobs": 4}).jobs == 4
    other = resolve_config(TConfig, config_file="config.py:Other")
    assert other.workers == 5 and other.jobs == 1
    assert resolve_config(TConfig, config_file=False).jobs == 1


def test_machine_field_unknown_to_configcls(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("class Config:\n    not_a_field = 1\n")
    with pytest.raises(ConfigError, match=r"config.py:Config sets 'not_a_field'.*valid fields"):
        resolve_config(TConfig)


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        (None, "missing.py", "config file 'missing.py' not found"),
        ("class Other: pass\n", "c.py", "has no class 'Config'; classes there: Other"),
        (
            "x = 1\nraise RuntimeError('no cluster here')\n",
            "c.py",
            "raised RuntimeError: no cluster here \\(line 2\\)",
        ),
        ("def broken(:\n", "c.py", "raised SyntaxError"),
        ("class Config:\n    jobs = 'x'\n", "c.py", "field 'jobs'"),
        ("class Config: pass\n", "c.py:not-a-class", "is not a class name"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str | None, spec: str, message: str) -> None:
    if content is not None:
        (tmp_path / "c.py").write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve_config(TConfig, config_file=spec)


def test_no_config_file_is_fine(tmp_path: Path) -> None:
    assert load_machine_values(None) == ({}, None)


def test_an_edit_in_the_same_second_and_of_the_same_size_is_read(tmp_path: Path) -> None:
    import os
    import sys

    path = tmp_path / "config.py"
    path.write_text("class Config:\n    jobs = 2\n")
    stamp = path.stat().st_mtime_ns
    # Python's own import would cache the first version in __pycache__, keyed on the
    # file's mtime in seconds and size: both are kept equal here.
    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        assert load_machine_values(None)[0] == {"jobs": 2}
        path.write_text("class Config:\n    jobs = 3\n")
        os.utime(path, ns=(stamp, stamp))
        assert load_machine_values(None)[0] == {"jobs": 3}
    finally:
        sys.dont_write_bytecode = previous
