"""Command experiments: run an existing script, unchanged, as an experiment.

``xh.command("python {here}/train.py --lr {lr} --out {cwd}", lr=0.1)`` is an
experiment that runs that shell command in the experiment's folder. Placeholders are
``str.format`` fields: ``{cwd}`` (the experiment's folder), ``{name}``, ``{group}``,
``{time}`` (when the command starts, ``2026-01-31T14-05-09``), ``{here}`` (the working
directory when the command was defined; for a TOML file, the file's folder) and the
given parameters. Every value is formatted as by ``str.format`` (a format spec such as
``{lr:.0e}`` works) and then shell-quoted, so spaces, quotes and ``$`` reach the
program intact; ``{{`` and ``}}`` are literal braces.

Output: stdout and stderr are read line by line as they come (``\\r`` ends a line too,
for progress bars) and logged at INFO to ``xhelpers.command.stdout`` and
``xhelpers.command.stderr`` (under ``<config.logger>.command`` when ``config.logger``
names another logger), so they land in ``experiment.log`` and on the console at ``-v``.
``PYTHONUNBUFFERED=1`` is set unless the environment sets it, so Python scripts stream.

Ends: exit code 0 is success; anything else raises :class:`~xhelpers.errors.CommandError`
with the exit code and the last lines of output. The command runs in a process group
of its own, and every way it can be stopped ends that whole group, so nothing it
started outlives it: ``timeout`` (SIGTERM, then SIGKILL after ``STOP_GRACE_S``), Ctrl-C
(``KeyboardInterrupt`` in the experiment: SIGINT, then SIGKILL), and any other exception
in the experiment while it waits (SIGTERM, then SIGKILL), such as the ``SystemExit`` of
a SLURM requeue. Processes it leaves running in the background when it exits are ended
the same way. If the process running the experiment is killed outright, the command's
first process gets SIGKILL (Linux), and the others get SIGPIPE when they next write.

Signals: while a command runs in the main thread, SIGTERM and SIGUSR2 sent to the
experiment's process are forwarded to the command's group, then handled as before
(submitit's requeue handler on SLURM; with the default action, the command group is
stopped first, then the process ends by that signal). The command starts with SIGUSR2
ignored unless it installs a handler of its own, so SLURM's early-warning signal does
not kill a program that knows nothing of it: xhelpers stops it when the job requeues.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shlex
import signal
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from xhelpers.core.execution import current_experiment
from xhelpers.define.commands.templates import (
    PLACEHOLDERS,
    braced,
    check_params,
    check_splits,
    named_files,
    render_command,
)
from xhelpers.define.placeholders import template_fields
from xhelpers.errors import CommandError, ExperimentDefinitionError

__all__ = ["ENV_VALUE_TYPES", "PLACEHOLDERS", "STOP_GRACE_S", "Command", "bad_timeout", "command"]

# Read when a command runs, so that setting them here takes effect.
STOP_GRACE_S = 5.0  # between the polite signal and SIGKILL when a command is stopped
LAST_LINES = 20  # lines of output kept for the error message
_SHOWN_COMMAND = 300  # characters of the command line in an error's first line

ENV_VALUE_TYPES = (str, int, float, bool)  # what an env value may be (passed as str())


def bad_timeout(value: object) -> bool:
    """Whether ``value`` is no timeout: not a positive, finite number of seconds (a bool
    is not; NaN would silently mean "never")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return not 0 < value < math.inf


class Command(functools.partial):  # type: ignore[type-arg]
    """A shell command as an experiment; create it with :func:`command`.

    It is a ``functools.partial`` of :func:`command` with the template and parameters,
    so the metafile's ``function``/``arguments`` and the fingerprint describe it like
    any experiment (the fingerprint depends on the template and the parameters, not on
    ``env``, ``timeout`` or ``shell``, and on the files it names through ``{here}``:
    :meth:`xh_code_files`); calling it runs the command. It pickles (for ``-jN`` under
    any start method and for SLURM).
    """

    template: str
    env: dict[str, str]
    timeout: float | None
    shell: bool
    here: str

    def __new__(
        cls,
        template: str,
        /,
        *,
        env: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        shell: bool = True,
        here: str | None = None,
        **params: Any,
    ) -> Command:
        check_params(template, params)
        if timeout is not None and bad_timeout(timeout):
            raise ExperimentDefinitionError(
                f"command {template!r}: timeout must be a positive number of seconds or "
                f"None, not {timeout!r}"
            )
        if not isinstance(shell, bool):
            raise ExperimentDefinitionError(f"command {template!r}: shell must be True or False")
        if not shell:
            check_splits(template)
        self = super().__new__(cls, command, template, **params)
        self.template = template
        self.env = _env(template, env)
        self.timeout = None if timeout is None else float(timeout)
        self.shell = shell
        self.here = os.path.abspath(here if here is not None else os.getcwd())
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The parameters filled into the template (not the placeholders)."""
        return dict(self.keywords)

    def _options(self) -> dict[str, Any]:
        return {"env": self.env, "timeout": self.timeout, "shell": self.shell, "here": self.here}

    def with_params(self, **params: Any) -> Command:
        """The same command with more (or other) parameter values."""
        return Command(self.template, **self._options(), **{**self.keywords, **params})

    def unbound(self) -> list[str]:
        """Fields of the template that neither a parameter nor a placeholder fills."""
        fields = template_fields(self.template, "command template")
        return [f for f in fields if f not in self.keywords and f not in PLACEHOLDERS]

    def checked(self) -> Command:
        """Itself, once every field of the template has a value (else an error)."""
        missing = self.unbound()
        if missing:
            raise ExperimentDefinitionError(
                f"command {self.template!r} uses {braced(missing)}, which no parameter sets",
                offending=missing,
            )
        return self

    def xh_code_files(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Its code, for fingerprints: the folder whose git repository holds it, and
        (word, path) of the files its template names through ``{here}``."""
        return self.here, named_files(self.template, self.here)

    def xh_validate(self) -> None:
        """Called when a group is defined: every field must be filled by then."""
        self.checked()

    def render(self, **placeholders: Any) -> str | list[str]:
        """The command line (``shell=True``) or argv (``shell=False``) to run."""
        self.checked()
        return render_command(self.template, {**placeholders, **self.keywords}, self.shell)

    def __repr__(self) -> str:
        parts = [repr(self.template)] + [f"{k}={v!r}" for k, v in self.keywords.items()]
        if self.env:
            parts.append(f"env={self.env!r}")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout!r}")
        if not self.shell:
            parts.append("shell=False")
        return f"command({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.template, dict(self.keywords), self._options()))

    def __call__(self) -> None:  # type: ignore[override]
        """Run the command in the current directory (the experiment's folder)."""
        from xhelpers.define.commands.process_group import (
            run_command,  # (subprocess and selectors: only to run)
        )

        info = current_experiment()
        cwd = os.getcwd()
        line = self.render(
            cwd=cwd,
            name=info.name if info else "",
            group=info.group if info else "",
            time=datetime.now().strftime("%Y-%m-%dT%H-%M-%S"),
            here=self.here,
        )
        shown = line if isinstance(line, str) else shlex.join(line)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        base = _logger_base(info.config.logger if info else "")
        log = logging.getLogger(base)
        log.info("$ %s", shown)
        start = time.monotonic()
        code, timed_out, last = run_command(
            line,
            shell=self.shell,
            cwd=cwd,
            env=env,
            timeout=self.timeout,
            grace=STOP_GRACE_S,
            out=logging.getLogger(base + ".stdout"),
            err=logging.getLogger(base + ".stderr"),
            keep=LAST_LINES,
        )
        duration = time.monotonic() - start
        if code == 0 and not timed_out:
            log.info("exited with code 0 (%.1fs)", duration)
            return
        brief = shown.replace("\n", "\\n")
        if len(brief) > _SHOWN_COMMAND:
            brief = brief[: _SHOWN_COMMAND - 3] + "..."
        if timed_out:
            head = f"command timed out after {self.timeout:g}s and was killed: {brief}"
        elif code < 0:
            head = f"command killed by {_signal_name(-code)} (exit code {code}): {brief}"
        else:
            head = f"command exited with code {code}: {brief}"
        tail = (
            f"\nlast {len(last)} line{'s' if len(last) != 1 else ''} of output:\n"
            + "\n".join("  " + x for x in last)
            if last
            else "\n(no output)"
        )
        raise CommandError(
            head + tail,
            exit_code=None if timed_out else code,
            last_lines=last,
            command=shown,
            timed_out=timed_out,
        )


def command(
    template: str,
    /,
    *,
    env: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    shell: bool = True,
    **params: Any,
) -> Command:
    """An experiment that runs a shell command in the experiment's folder.

    ``template`` is filled with the placeholders ``{cwd}``, ``{name}``, ``{group}``,
    ``{time}``, ``{here}`` and ``params``, each value shell-quoted. ``env`` adds to
    (or overrides) the environment; ``timeout`` (seconds) kills the command and fails
    the experiment; ``shell=False`` splits the template into arguments with
    ``shlex.split`` and runs it without a shell (values are then not quoted: each fills
    its argument). Parameters may be left for :func:`xhelpers.grid` to fill:
    ``xh.grid(xh.command("python t.py --lr {lr}", env=...), "lr={lr}", lr=[0.1, 0.2])``.
    """
    return Command(template, env=env, timeout=timeout, shell=shell, **params)


def _restore(template: str, params: dict[str, Any], options: dict[str, Any]) -> Command:
    return Command(template, **options, **params)


def _env(template: str, env: Mapping[str, Any] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ExperimentDefinitionError(f"command {template!r}: env must be a mapping")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ExperimentDefinitionError(
                f"command {template!r}: invalid environment variable name {key!r}"
            )
        if not isinstance(value, ENV_VALUE_TYPES):
            raise ExperimentDefinitionError(
                f"command {template!r}: env[{key!r}] must be a string or number, not {value!r}"
            )
        out[key] = str(value)
    return out


def _logger_base(capture: str) -> str:
    base = "xhelpers.command"
    if capture and base != capture and not base.startswith(capture + "."):
        return capture + ".command"
    return base


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
