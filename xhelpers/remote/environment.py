"""The remote's virtual environment: made once from the project's dependency files.

The environment is keyed by a hash of what it is made from (the dependency files, the
Python, the installer and its options, the setup lines). Each key gets its own folder,
``.xhelpers/venvs/<key>``, and ``.venv`` is a symlink to the ready one. Making one
happens under a lock, step by step into ``.xhelpers/env.log``; the folder is marked
ready last and ``.venv`` switched by an atomic rename, so a set-up interrupted halfway
leaves the old environment in use and an unmarked folder, which the next call removes
and makes anew. The check and the run are one remote shell script: with nothing to set
up, a run costs one round trip.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from xhelpers.config import RemoteSettings
from xhelpers.errors import RemoteError
from xhelpers.remote.ssh import remote_path

__all__ = ["SETUP_FAILED", "Environment", "plan_environment", "remote_script"]

SETUP_FAILED = 97  # the script's exit code when the set-up failed (it said where)
_LOCKS = ("requirements.lock", "requirements.txt")
_PROJECTS = ("pyproject.toml", "setup.py", "setup.cfg")
_LAUNCHER = Path(__file__).with_name("launcher.py")


@dataclass(frozen=True)
class Environment:
    """How the remote environment is made, and the key of what it is made from."""

    key: str
    install: tuple[str, ...]  # the arguments after `pip install` / `uv pip install`
    files: tuple[str, ...]  # the dependency files it depends on, relative to the project


def plan_environment(root: Path, settings: RemoteSettings, name: str) -> Environment:
    """The environment the project at ``root`` needs on the remote ``settings``."""
    if settings.requirements:
        chosen = settings.requirements
        if not (root / chosen).is_file():
            raise RemoteError(
                f"remote {name!r}: requirements file {chosen!r} is not in the project",
                remote=name,
            )
        files, install = [chosen], ["-r", chosen]
    else:
        found = [f for f in _LOCKS if (root / f).is_file()]
        project = [f for f in _PROJECTS if (root / f).is_file()]
        if found:
            files, install = found[:1], ["-r", found[0]]
        elif project:
            files, install = project, ["-e", "."]
        else:
            raise RemoteError(
                f"remote {name!r}: the project has no dependency file to make the remote "
                f"environment from ({', '.join(_LOCKS + _PROJECTS[:2])}); add one naming "
                "xhelpers and your other dependencies",
                remote=name,
            )
    digest = hashlib.sha256()
    for part in (
        settings.python,
        settings.installer,
        *settings.setup,
        "\0",
        *settings.venv_options,
        "\0",
        *settings.install_options,
    ):
        digest.update(part.encode() + b"\0")
    for file in files:
        digest.update(file.encode() + b"\0" + (root / file).read_bytes() + b"\0")
    return Environment(digest.hexdigest()[:16], tuple(install), tuple(files))


# The remote side, in POSIX sh: it must run before any Python of ours exists there.
# Values are substituted already quoted; `fail` names the step that failed.
_SCRIPT = """\
{setup}
cd -- {folder} || exit {failed}
want={key}
log={state}/env.log
fail() {{
    tail -n 15 "$log" >&2
    printf 'Error: remote %s: environment set-up failed at step %s (%s); its log: %s\\n' \\
        {name} "$1" "$2" "$PWD/$log" >&2
    exit {failed}
}}
step() {{
    what=$1; shift
    printf '== %s: %s\\n' "$what" "$*" >>"$log"
    "$@" >>"$log" 2>&1 </dev/null || fail "$what" "$*"
}}
if [ "$(cat .venv/.xhelpers-env 2>/dev/null)" != "$want" ]; then
    mkdir -p {state}/venvs || exit {failed}
    # Held by every step's process too: a set-up whose shell died with its connection
    # keeps the lock until its last step ends, so the next call never races it.
    exec 8>{state}/env.lock
    if command -v flock >/dev/null 2>&1; then flock 8; fi
    if [ "$(cat .venv/.xhelpers-env 2>/dev/null)" != "$want" ]; then
        if [ -e .venv ] && [ ! -L .venv ]; then
            printf 'Error: remote %s: %s/.venv exists and is no environment xhelpers made: \
move it away\\n' {name} "$PWD" >&2
            exit {failed}
        fi
        printf 'xhelpers: setting up the environment of remote %s (log: %s)\\n' \\
            {name} "$PWD/$log" >&2
        target={state}/venvs/$want
        : >"$log"
        rm -rf -- "$target"
        {create}
        {install}
        printf %s "$want" >"$target/.xhelpers-env" || fail mark "$target/.xhelpers-env"
        before=$(readlink .venv 2>/dev/null || true)
        rm -f .venv.xhelpers-new
        step switch ln -s "$target" .venv.xhelpers-new
        step switch "$target/bin/python" -c \\
            'import os; os.replace(".venv.xhelpers-new", ".venv")'
        for old in {state}/venvs/*; do
            case "$old" in "$target"|"$before") ;; *) rm -rf -- "$old" ;; esac
        done
    fi
    exec 8>&-
fi
python="$PWD/.venv/bin/python"
cd -- {cwd} || exit {failed}
exec "$python" -c {launcher} {command}
"""


def _create(settings: RemoteSettings) -> str:
    if settings.installer == "uv":
        words = ["uv", "venv", "--quiet", "--python", settings.python, *settings.venv_options]
    else:
        words = [settings.python, "-m", "venv", *settings.venv_options]
    return "step venv " + shlex.join(words) + ' "$target"'


def _install(settings: RemoteSettings, env: Environment) -> str:
    if settings.installer == "uv":
        head = 'step install uv pip install --python "$target/bin/python"'
    else:
        head = 'step install "$target/bin/python" -m pip install --disable-pip-version-check'
    return f"{head} {shlex.join([*settings.install_options, *env.install])}"


def remote_script(
    name: str,
    settings: RemoteSettings,
    env: Environment,
    cwd: str,
    command: list[str],
) -> str:
    """The remote shell script that readies the environment in the remote's folder,
    then runs ``command`` (the script and its arguments) in ``cwd`` (relative to the
    folder) under the launcher."""
    return _SCRIPT.format(
        setup="\n".join(settings.setup),
        folder=remote_path(settings.folder),
        key=shlex.quote(env.key),
        state=".xhelpers",
        name=shlex.quote(name),
        failed=SETUP_FAILED,
        create=_create(settings),
        install=_install(settings, env),
        cwd=shlex.quote(cwd or "."),
        launcher=shlex.quote(_LAUNCHER.read_text() + "\nmain()\n"),
        command=shlex.join(command),
    )
