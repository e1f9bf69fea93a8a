"""--diff A B and group.diff(a, b): how two experiments differ, section by section."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke, run_py, write_run_py
from experiments import TConfig

import xhelpers as xh
from xhelpers.errors import ResultsQueryError
from xhelpers.views.diff import ABSENT, SECTIONS, diff_text

A, B = "lr=0.1/seed=0", "lr=0.01/seed=0"


def train(*, lr: float, seed: int, config: TConfig | None = None) -> dict[str, float]:
    # NaN for the small rate: it differs from a number, and equals NaN on the other side
    return {"acc": round(1 - lr + seed / 100, 4), "loss": math.nan if lr < 0.05 else lr}


def fit(*, lr: float, seed: int, config: TConfig | None = None) -> dict[str, float]:
    # train's body under another name: to a fingerprint, another function
    return {"acc": round(1 - lr + seed / 100, 4), "loss": math.nan if lr < 0.05 else lr}


def sweep() -> xh.ParametrizedExperiments:
    experiments = xh.grid(train, "lr={lr}/seed={seed}", lr=[0.1, 0.01], seed=[0, 1])
    return xh.ParametrizedExperiments("main", experiments, configcls=TConfig)


def blocks(out: str) -> dict[str, list[list[str]]]:
    """The text output's tables by section: each row's cells (apart by 2 spaces or more)."""
    found = {}
    for block in out.split("\n\n"):
        lines = block.splitlines()
        if len(lines) > 2 and set(lines[1]) <= {"-", " "}:
            rows = [re.split(r"  +", line.strip()) for line in lines[2:] if "  " in line]
            found[lines[0].split()[0]] = rows
    return found


def counts(out: str) -> dict[str, str]:
    """The last line, "section: what; ...", as {section: what}."""
    return dict(part.split(": ", 1) for part in out.splitlines()[-1].split("; "))


def test_parameters_and_metrics_that_differ(tmp_path: Path) -> None:
    group = sweep()
    group(A, B, quiet=True)
    code, out, err = invoke("main", "--diff", A, B)
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"main: {A} vs {B}"
    tables = blocks(out)
    assert tables["parameters"] == [["lr", "0.1", "0.01"]]  # seed is the same: not listed
    assert tables["metrics"] == [["acc", "0.9", "0.99"], ["loss", "0.1", "nan"]]
    assert "config" not in tables
    shown = counts(out)
    assert list(shown) == list(SECTIONS)
    assert shown["parameters"] == "1 differs, 1 the same"
    assert shown["metrics"] == "2 differ, 0 the same"
    assert shown["config"] == "identical"
    # code: the fingerprints cover the arguments, and the output says so
    assert {row[0] for row in tables["code"]} == {"fingerprints.arguments", "fingerprints.code"}
    assert "covers the parameters too" in out
    statuses = {row[0]: row[1:] for row in tables["status"]}
    assert "status" not in statuses  # both done
    assert set(statuses) <= {"duration", "ended"}  # two runs; same host, one run each


def test_python_form_returns_the_dict(tmp_path: Path) -> None:
    group = sweep()
    group(quiet=True)
    found = group.diff(A, B)
    assert list(found) == list(SECTIONS)
    assert found["parameters"] == {"lr": (0.1, 0.01)}
    acc, loss = found["metrics"]["acc"], found["metrics"]["loss"]
    assert acc == (0.9, 0.99) and loss[0] == 0.1 and math.isnan(loss[1])
    assert found["config"] == {}
    # NaN against NaN is no difference; a pattern that matches one experiment names it
    same_lr = group.diff("lr=0.01/seed=0", "lr=0.01/*1")
    assert "loss" not in same_lr["metrics"]
    assert same_lr["parameters"] == {"seed": (0, 1)}


def test_json_and_csv(tmp_path: Path) -> None:
    sweep()(quiet=True)
    code, out, _ = invoke("main", "--diff", A, B, "--format", "json")
    assert code == 0
    data = json.loads(out)  # strict JSON: NaN is null
    assert data["a"] == A and data["b"] == B
    assert list(data["differences"]) == list(SECTIONS)
    assert data["differences"]["parameters"] == {"lr": [0.1, 0.01]}
    assert data["differences"]["metrics"]["loss"] == [0.1, None]
    code, out, _ = invoke("main", "--diff", A, B, "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "key", "a", "b"]
    assert ["parameters", "lr", "0.1", "0.01"] in rows
    assert ["metrics", "loss", "0.1", "nan"] in rows


def test_config_differences(tmp_path: Path) -> None:
    group = sweep()
    group(A, quiet=True)
    (tmp_path / "config.py").write_text("class Config:\n    user_message = 'from this machine'\n")
    group(B, quiet=True)
    assert group.diff(A, B)["config"] == {"user_message": ("Hello world!", "from this machine")}
    code, out, _ = invoke("main", "--diff", A, B)
    assert code == 0
    assert blocks(out)["config"] == [["user_message", "Hello world!", "from this machine"]]
    assert counts(out)["config"].startswith("1 differs, ")


def test_code_differences_with_the_same_parameters(tmp_path: Path) -> None:
    first = xh.ParametrizedExperiments(
        "code", {"a": partial(train, lr=0.1, seed=0), "b": partial(train, lr=0.1, seed=0)}
    )
    first("a", quiet=True)
    xh.framework.unregister("code")
    second = xh.ParametrizedExperiments(
        "code", {"a": partial(train, lr=0.1, seed=0), "b": partial(fit, lr=0.1, seed=0)}
    )
    second("b", quiet=True)
    found = second.diff("a", "b")
    assert found["parameters"] == {} and found["metrics"] == {}
    code = found["code"]
    assert code["function"] == ("test_diff.train", "test_diff.fit")
    assert {"fingerprints.arguments", "fingerprints.code"} <= set(code)
    assert not {"xhelpers", "python", "git.commit"} & set(code)  # the same on both sides
    exit_code, out, _ = invoke("code", "--diff", "a", "b")
    assert exit_code == 0
    assert ["function", "test_diff.train", "test_diff.fit"] in blocks(out)["code"]
    assert "covers the parameters" not in out  # they are the same: the code differs


def test_code_differences_after_an_edit_of_run_py(tmp_path: Path) -> None:
    body = """
    def train(*, lr):
        return {{"acc": {acc}}}

    xh.ParametrizedExperiments("m", {{"a": partial(train, lr=1), "b": partial(train, lr=1)}})
    """
    write_run_py(tmp_path, body.format(acc=0.5))
    assert run_py(tmp_path, "m", "a").returncode == 0
    write_run_py(tmp_path, body.format(acc=0.75))
    assert run_py(tmp_path, "m", "b").returncode == 0
    done = run_py(tmp_path, "m", "--diff", "a", "b", "--format", "json")
    assert done.returncode == 0, done.stderr
    differences = json.loads(done.stdout)["differences"]
    assert differences["parameters"] == {}
    assert differences["status"]["status"] == ["stale", "done"]  # a's code is gone
    assert set(differences["code"]) == {"fingerprints.code"}  # the source text, not the name
    assert differences["metrics"] == {"acc": [0.5, 0.75]}


def test_an_experiment_never_run(tmp_path: Path) -> None:
    group = sweep()
    group(A, quiet=True)
    never = "lr=0.01/seed=1"
    found = group.diff(A, never)
    assert found["parameters"] == {"lr": (0.1, 0.01), "seed": (0, 1)}  # current definition's
    assert found["status"]["status"] == ("done", "pending")
    assert found["status"]["duration"][1] is ABSENT
    for section in ("config", "code", "metrics"):
        assert found[section] and all(b is ABSENT for _, b in found[section].values())
    assert pickle.loads(pickle.dumps(ABSENT)) is ABSENT
    code, out, _ = invoke("main", "--diff", never, A)
    assert code == 0
    tables = blocks(out)
    assert tables["parameters"] == [["lr", "0.01", "0.1"], ["seed", "1", "0"]]
    assert ["status", "pending", "done"] in tables["status"]
    assert ["runs", "(absent)", "1"] in tables["status"]
    assert "config" not in tables  # not 30 rows of "(absent)": one line
    assert f"only in {A}: config (" in out and "code (" in out and "metrics (2 keys)" in out
    assert counts(out)["config"] == f"{A} only"
    data = json.loads(diff_text(group, never, A, fmt="json"))
    assert data["differences"]["metrics"]["acc"] == ["(absent)", 0.9]
    # two experiments never run differ only in their parameters
    both = group.diff("lr=0.1/seed=1", never)
    assert {s for s, d in both.items() if d} == {"parameters"}


def test_the_same_experiment_does_not_differ(tmp_path: Path) -> None:
    sweep()(A, quiet=True)
    code, out, _ = invoke("main", "--diff", A, A)
    assert code == 0 and "no differences" in out
    assert set(counts(out).values()) == {"identical"}


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (A, "lr=0.2/seed=0", "diff B: no experiment in group 'main' matches 'lr=0.2/seed=0'; "),
        ("lr=0.1/seed=9", B, "matches 'lr=0.1/seed=9'; did you mean 'lr=0.1/seed=1', "),
        ("lr=0.1/*", B, "diff A: 'lr=0.1/*' matches 2 experiments of group 'main' ("),
    ],
)
def test_bad_names_exit_2_with_one_line(tmp_path: Path, a: str, b: str, message: str) -> None:
    group = sweep()
    code, out, err = invoke("main", "--diff", a, b)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1
    with pytest.raises(ResultsQueryError, match=r"^diff [AB]: "):
        group.diff(a, b)
    assert not (tmp_path / "results").exists()


def test_the_real_script_exits_2_on_a_name_matching_several(tmp_path: Path) -> None:
    write_run_py(tmp_path, "xh.ParametrizedExperiments('m', {'x/1': ex.no_config, 'x/2': abs})")
    done = run_py(tmp_path, "m", "--diff", "x/*", "x/1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "Error: diff A: 'x/*' matches 2 experiments of group 'm' (x/1, x/2); "
        "A and B must each name one\n"
    )


def value(*, x: Any) -> dict[str, Any]:
    return {"m": x}


def test_values_that_look_alike_are_told_apart(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments(
        "alike",
        {
            "p": partial(value, x=0.1234561),
            "q": partial(value, x=0.1234562),
            "s": partial(value, x="1"),
            "i": partial(value, x=1),
            "f": partial(value, x=1.0),
        },
    )
    group(quiet=True)
    out = diff_text(group, "p", "q")
    assert blocks(out)["metrics"] == [["m", "0.1234561", "0.1234562"]]  # not 0.123456 twice
    assert blocks(diff_text(group, "s", "i"))["parameters"] == [["x", "'1'", "1"]]
    assert group.diff("i", "f")["metrics"] == {"m": (1, 1.0)}  # 1 and 1.0: not one parameter
    with pytest.raises(ResultsQueryError, match="unknown format 'yaml'"):
        diff_text(group, "p", "q", fmt="yaml")  # type: ignore[arg-type]
