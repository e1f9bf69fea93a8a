"""xh.grid, xh.zipped, xh.fixed: names, values, constants, and the errors they raise."""

from __future__ import annotations

import enum
import functools
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import meta
from experiments import write_param

import xhelpers as xh
from xhelpers.core.fingerprints import fingerprint
from xhelpers.define.grids import render_value
from xhelpers.errors import ExperimentDefinitionError


def train(*, lr: float, seed: int = 0, epochs: int = 1, layers: Any = None) -> dict[str, Any]:
    return {"lr": lr, "seed": seed, "epochs": epochs, "layers": layers}


def test_grid_is_the_cartesian_product_first_parameter_slowest() -> None:
    g = xh.grid(train, "lr={lr}/seed={seed}", lr=[0.1, 0.01], seed=range(3))
    assert list(g) == [
        "lr=0.1/seed=0",
        "lr=0.1/seed=1",
        "lr=0.1/seed=2",
        "lr=0.01/seed=0",
        "lr=0.01/seed=1",
        "lr=0.01/seed=2",
    ]
    p = g["lr=0.01/seed=2"]
    assert isinstance(p, functools.partial)
    assert p.func is train and p.args == () and p.keywords == {"lr": 0.01, "seed": 2}
    assert p() == {"lr": 0.01, "seed": 2, "epochs": 1, "layers": None}


def test_tuples_vary_other_values_are_constants_and_fixed_passes_a_list() -> None:
    g = xh.grid(
        train, "lr={lr}-seed={seed}", lr=(0.1, 0.2), seed=7, epochs=3, layers=xh.fixed([64, 64])
    )
    assert list(g) == ["lr=0.1-seed=7", "lr=0.2-seed=7"]
    for p in g.values():
        assert p.keywords["epochs"] == 3 and p.keywords["seed"] == 7
        assert p.keywords["layers"] == [64, 64]
    varied = xh.grid(train, "layers={layers}", lr=0.1, layers=[[64], [64, 64]])
    assert [p.keywords["layers"] for p in varied.values()] == [[64], [64, 64]]
    assert list(varied) == ["layers=[64]", "layers=[64, 64]"]


def test_zipped_pairs_values() -> None:
    z = xh.zipped(train, "run{seed}", lr=[0.1, 0.2, 0.3], seed=range(3), epochs=5)
    assert list(z) == ["run0", "run1", "run2"]
    assert [(p.keywords["lr"], p.keywords["seed"]) for p in z.values()] == [
        (0.1, 0),
        (0.2, 1),
        (0.3, 2),
    ]
    assert all(p.keywords["epochs"] == 5 for p in z.values())


def test_zipped_unequal_lengths_name_the_lengths() -> None:
    with pytest.raises(ExperimentDefinitionError, match="lr has 3, seed has 2"):
        xh.zipped(train, "{lr}-{seed}", lr=[0.1, 0.2, 0.3], seed=[0, 1])


class Opt(enum.Enum):
    SGD = "sgd"
    ADAM = "adam"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (1e-5, "1e-05"),
        (1.0, "1.0"),
        (0.1 + 0.2, "0.3"),
        (1 / 3, "0.333333333333"),
        (2.5e20, "2.5e+20"),
        (-0.0, "-0.0"),
        (float("inf"), "inf"),
        (float("nan"), "nan"),
        (3, "3"),
        (-12, "-12"),
        (True, "True"),
        (False, "False"),
        (None, "None"),
        ("adam", "adam"),
        ("with space", "with space"),
        (Opt.ADAM, "ADAM"),
        (train, "train"),
        (dict, "dict"),
        ((1, 2), "(1, 2)"),
    ],
)
def test_values_render_stably(value: Any, shown: str) -> None:
    assert render_value(value) == shown


def test_format_spec_and_conversion_apply_pythons_formatting() -> None:
    g = xh.grid(train, "lr={lr:.0e}/tag={layers!r}", lr=[0.001, 0.0001], layers="x")
    assert list(g) == ["lr=1e-03/tag='x'", "lr=1e-04/tag='x'"]


def test_template_omitting_a_varying_parameter_names_colliding_names() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:
        xh.grid(train, "lr={lr}", lr=[0.1, 0.01], seed=range(3))
    message = str(info.value)
    assert "'lr=0.1'" in message and "'lr=0.01'" in message
    assert "seed=0; seed=1; seed=2" in message
    assert "omits the varying parameter 'seed'" in message and "{seed}" in message
    assert info.value.offending == ["lr=0.1", "lr=0.01"]


def test_values_that_render_alike_collide() -> None:
    with pytest.raises(ExperimentDefinitionError, match="render alike"):
        xh.grid(train, "lr={lr}", lr=[0.3, 0.1 + 0.2])


def test_template_errors() -> None:
    with pytest.raises(ExperimentDefinitionError, match=r"uses \{sede\}, not a parameter"):
        xh.grid(train, "lr={lr}/{sede}", lr=[0.1], seed=[1])
    with pytest.raises(ExperimentDefinitionError, match="positional field"):
        xh.grid(train, "lr={}", lr=[0.1])
    with pytest.raises(ExperimentDefinitionError, match="has no values"):
        xh.grid(train, "lr={lr}", lr=[])
    with pytest.raises(ExperimentDefinitionError, match="no stable order"):
        xh.grid(train, "lr={lr}", lr={0.1, 0.2})
    with pytest.raises(
        ExperimentDefinitionError, match=r"train\(\) takes no keyword argument 'lrr'"
    ):
        xh.grid(train, "lr={lrr}", lrr=[0.1])


def test_rendered_names_follow_the_name_rules() -> None:
    with pytest.raises(ExperimentDefinitionError, match=r"invalid name '\.\./x' \(segment"):
        xh.grid(train, "{layers}", lr=0.1, layers=["ok", "../x"])
    with pytest.raises(ExperimentDefinitionError, match="'a' a folder of 'a/b'"):
        xh.grid(train, "{layers}", lr=0.1, layers=["a", "a/b"])
    # a '/' in a value is a folder level, as anywhere in a name
    g = xh.grid(train, "{layers}/lr={lr}", lr=[0.1], layers=["cifar/10", "mnist"])
    assert list(g) == ["cifar/10/lr=0.1", "mnist/lr=0.1"]


def test_grids_merge_run_and_record_their_arguments(tmp_path: Path) -> None:
    a = xh.grid(write_param, "a/param={param}", param=[1, 2])
    b = xh.zipped(write_param, "b/{param}", param=["x y", "z"])
    group = xh.ParametrizedExperiments("merged", {**a, **b})
    summary = group(quiet=True)
    assert summary.exit_code == 0 and len(summary) == 4
    folder = tmp_path / "results/merged/b/x y"
    assert (folder / "result.txt").read_text() == "x y"
    data = meta(folder)
    assert data["function"] == "experiments.write_param"
    assert data["arguments"] == {"args": [], "kwargs": {"param": "'x y'"}}
    fps = {meta(tmp_path / "results/merged" / n)["fingerprint"] for n in group.experiments}
    assert len(fps) == 4
    again = xh.grid(write_param, "a/param={param}", param=[1, 2])
    assert fingerprint(again["a/param=1"]) == fingerprint(a["a/param=1"])


def test_grid_partials_pickle() -> None:
    g = xh.grid(write_param, "p={param}", param=[0.5])
    p = pickle.loads(pickle.dumps(g["p=0.5"]))
    assert p.func is write_param and p.keywords == {"param": 0.5}


def test_grid_of_a_command_template_or_command() -> None:
    g = xh.grid("echo {lr} {seed}", "lr={lr}/seed={seed}", lr=[0.1, 1e-5], seed=range(2))
    assert list(g) == ["lr=0.1/seed=0", "lr=0.1/seed=1", "lr=1e-05/seed=0", "lr=1e-05/seed=1"]
    cmd = g["lr=1e-05/seed=1"]
    assert cmd.params == {"lr": 1e-05, "seed": 1} and cmd.template == "echo {lr} {seed}"
    base = xh.command("echo {lr} {seed}", env={"A": "1"}, timeout=9)
    g2 = xh.grid(base, "{lr}", lr=[1, 2], seed=0)
    assert [c.params for c in g2.values()] == [{"lr": 1, "seed": 0}, {"lr": 2, "seed": 0}]
    assert all(c.env == {"A": "1"} and c.timeout == 9 for c in g2.values())
    with pytest.raises(ExperimentDefinitionError, match=r"does not use \{seed\}"):
        xh.grid("echo {lr}", "lr={lr}/seed={seed}", lr=[1], seed=[1, 2])
    with pytest.raises(ExperimentDefinitionError, match=r"uses \{seed\}, which no parameter"):
        xh.grid("echo {lr} {seed}", "lr={lr}", lr=[1])
