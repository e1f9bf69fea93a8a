"""Experiment files: groups of command experiments defined in TOML.

Each top-level table is a group::

    [sweep]
    command = "python {here}/train.py --lr {lr} --seed {seed} --epochs {epochs} --out {cwd}"
    name = "lr={lr}/seed={seed}"          # name template (grid rows, unnamed batch rows)
    default_args = { epochs = 3 }          # every experiment's arguments, unless overridden
    grid = { lr = [0.1, 0.01], seed = [0, 1, 2] }   # the Cartesian product (or [[sweep.grid]])
    batch_args = [ { name = "long", lr = 0.1, seed = 0, epochs = 30 } ]  # one experiment each
    env = { OMP_NUM_THREADS = 1 }
    timeout = 3600                         # seconds
    description = "shown in --help"

Keys: ``command`` (required), ``name``, ``default_args``, ``grid`` (a table of arrays,
or an array of such tables), ``batch_args`` (an array of tables; a row's ``name`` is
its own name template), ``env``, ``timeout``, ``shell``, ``description``. With
neither ``grid`` nor ``batch_args`` the group is one experiment named by ``name``.
``{here}`` in the command is the file's folder. Errors name the file, line and key.
"""

from __future__ import annotations

import os

from xhelpers.define.commands import Command
from xhelpers.define.toml.file import ExperimentFile
from xhelpers.define.toml.groups import GROUP_KEYS, read_groups

# Formerly defined here; tests import it from here.
from xhelpers.define.toml.locations import key_lines as _key_lines  # noqa: F401
from xhelpers.errors import ExperimentDefinitionError
from xhelpers.framework import ParametrizedExperiments, groups, unregister

__all__ = ["GROUP_KEYS", "load_experiments", "read_experiments"]


def load_experiments(
    path: str | os.PathLike[str], *, register: bool = True
) -> dict[str, ParametrizedExperiments]:
    """Define the groups of a TOML experiment file; ``{group name: group}``.

    ``run.py`` can be one line and the CLI: ``xh.load_experiments("experiments.toml")``
    then ``xh.experiment_cli()``. Raises :class:`~xhelpers.errors.ExperimentFileError`
    (a ``ValueError``) naming the file, line and key of a mistake.
    """
    file = ExperimentFile(path)
    definitions = read_groups(file)
    taken = groups() if register else {}
    for name in definitions:
        if name in taken:
            raise file.error((name,), f"a group named {name!r} is already registered")
    made: dict[str, ParametrizedExperiments] = {}
    for name, (experiments, description) in definitions.items():
        try:
            made[name] = ParametrizedExperiments(
                name, experiments, description=description, register=register
            )
        except ExperimentDefinitionError as exc:
            for done in made if register else ():
                unregister(done)
            raise file.error((name,), str(exc)) from None
    return made


def read_experiments(path: str | os.PathLike[str]) -> dict[str, dict[str, Command]]:
    """The experiments of each group of a TOML file, without registering anything."""
    return {name: exps for name, (exps, _) in read_groups(ExperimentFile(path)).items()}
