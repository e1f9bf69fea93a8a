"""From results to answers: the results table, DataFrames, aggregates and the best."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke
from experiments import svc, svc_accuracy

import xhelpers as xh
from xhelpers.errors import FileFormatError, MissingDependencyError

pd = pytest.importorskip("pandas")

CS, GAMMAS, FOLDS = [1, 4], [0.001, 0.1], [0, 1, 2]
BAD = [4, 0.1, 1]  # the one experiment that fails, after writing result.json


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def study(tmp_path: Path) -> Iterator[xh.ParametrizedExperiments]:
    grid = xh.grid(
        partial(svc, fail_on=BAD), "C={C}/gamma={gamma}/fold={fold}", C=CS, gamma=GAMMAS, fold=FOLDS
    )
    never = {"C=9/gamma=0.1/fold=0": partial(svc, C=9, gamma=0.1, fold=0)}
    group = xh.ParametrizedExperiments("svc", {**grid, **never})
    group("C=1/*", "C=4/*", quiet=True)
    yield group


def test_rows_hold_parameters_status_duration_and_every_kind_of_metric(
    study: xh.ParametrizedExperiments,
) -> None:
    rows = {r["name"]: r for r in study.results()}
    assert isinstance(study.results(), list)  # the type never depends on what is installed
    row = rows["C=1/gamma=0.001/fold=0"]
    acc = svc_accuracy(1, 0.001, 0)
    assert row["status"] == "done" and row["duration"] > 0
    assert (row["C"], row["gamma"], row["fold"], row["fail_on"]) == (1, 0.001, 0, BAD)
    assert row["acc"] == acc and row["f1"] == pytest.approx(acc - 0.1)  # returned, marked file
    assert row["per_class"] == [acc, pytest.approx(1 - acc)]  # structures stay structures
    assert math.isnan(rows["C=1/gamma=0.001/fold=2"]["loss"])
    assert rows["C=9/gamma=0.1/fold=0"]["status"] == "pending"  # from its definition
    assert rows["C=9/gamma=0.1/fold=0"]["C"] == 9 and rows["C=9/gamma=0.1/fold=0"]["acc"] is None
    failed = rows["C=4/gamma=0.1/fold=1"]
    assert failed["status"] == "failed" and failed["acc"] == 0.0  # kept, and said failed
    meta = json.loads((Path("results/svc/C=1/gamma=0.001/fold=0/metafile.json")).read_text())
    assert meta["result_files"] == ["scores.json"]


def test_the_data_frame_is_the_same_table_with_nan_as_float(
    study: xh.ParametrizedExperiments,
) -> None:
    frame = study.results(as_frame=True)
    rows = study.results()
    assert list(frame.columns) == list(rows[0])
    assert list(frame["name"]) == [r["name"] for r in rows]
    assert frame["loss"].dtype == float and frame["loss"].isna().sum() == 4 + 1 + 1
    assert frame["C"].dtype.kind == "i" and frame["gamma"].dtype == float
    assert frame.loc[0, "per_class"] == rows[0]["per_class"]
    assert frame.attrs["xhelpers"]["parameters"] == ["fail_on", "C", "gamma", "fold"]


def test_stale_rows_show_the_parameters_their_result_was_made_with(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("s", {"a": partial(svc, C=1, gamma=0.1, fold=0)})
    group(quiet=True)
    xh.framework.unregister("s")
    group = xh.ParametrizedExperiments("s", {"a": partial(svc, C=16, gamma=0.1, fold=0)})
    (row,) = group.results()
    assert row["status"] == "stale" and row["C"] == 1 and row["acc"] == svc_accuracy(1, 0.1, 0)


def test_json_csv_and_table_outputs(study: xh.ParametrizedExperiments) -> None:
    code, out, _ = invoke("svc", "--results", "--format", "json")
    data = {r["name"]: r for r in strict_json(out)}  # NaN is null, never bare NaN
    assert code == 0 and data["C=1/gamma=0.001/fold=2"]["loss"] is None
    assert data["C=1/gamma=0.001/fold=0"]["per_class"][0] == svc_accuracy(1, 0.001, 0)
    code, out, _ = invoke("svc", "--results", "--format", "csv", "C=1/gamma=0.001/*")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert json.loads(parsed[0]["per_class"])[0] == svc_accuracy(1, 0.001, 0)
    assert parsed[2]["loss"] == "nan" and parsed[0]["fail_on"] == "[4,0.1,1]"
    code, out, _ = invoke("svc", "--results", "C=4/gamma=0.1/*")
    line = next(x for x in out.splitlines() if x.startswith("C=4/gamma=0.1/fold=1"))
    assert "failed" in line and "[0.0]" in line  # a failed run's values are marked
    assert "left out of --by and --best" in out


def test_aggregates_match_an_independent_computation(study: xh.ParametrizedExperiments) -> None:
    table = study.aggregate("C=1/*", "C=4/*", by=["C", "gamma"])
    assert len(table) == 4 and list(table.columns[:6]) == [
        "C",
        "gamma",
        "experiments",
        "used",
        "failed",
        "missing",
    ]
    for _, agg in table.iterrows():
        c, gamma = agg["C"], agg["gamma"]
        folds = [f for f in FOLDS if [c, gamma, f] != BAD]
        accs = [svc_accuracy(c, gamma, f) for f in folds]
        assert agg["used"] == len(folds) and agg["failed"] == 3 - len(folds)
        assert agg["acc.count"] == len(accs)
        assert agg["acc.mean"] == pytest.approx(statistics.mean(accs))
        assert agg["acc.std"] == pytest.approx(statistics.stdev(accs))
        assert (agg["acc.min"], agg["acc.max"]) == (min(accs), max(accs))
        losses = [1 - a for f, a in zip(folds, accs, strict=True) if f != 2]  # NaN: no value
        assert agg["loss.count"] == len(losses)
    everything = study.aggregate(by="C", include_failed=True)
    with_bad = [svc_accuracy(4, g, f) for g in GAMMAS for f in FOLDS if [4, g, f] != BAD] + [0.0]
    row = everything[everything["C"] == 4].iloc[0]
    assert row["acc.mean"] == pytest.approx(statistics.mean(with_bad))
    pending = study.aggregate("C=9/*", by="C").iloc[0]
    assert (pending["experiments"], pending["used"], pending["missing"]) == (1, 0, 1)


def test_best_experiment_and_best_group(study: xh.ParametrizedExperiments) -> None:
    accs = {
        (c, g, f): svc_accuracy(c, g, f)
        for c in CS
        for g in GAMMAS
        for f in FOLDS
        if [c, g, f] != BAD
    }
    top = max(accs, key=lambda k: accs[k])
    best = study.best("acc")
    assert (best["C"], best["gamma"], best["fold"]) == top and best["acc"] == accs[top]
    means = {
        (c, g): statistics.mean(v for k, v in accs.items() if k[:2] == (c, g))
        for c in CS
        for g in GAMMAS
    }
    low = min(means, key=lambda k: means[k])
    group = study.best("acc", by=["C", "gamma"], minimize=True)
    assert (group["C"], group["gamma"]) == low
    assert group["acc.mean"] == pytest.approx(means[low])
    code, out, err = invoke("svc", "--best", "acc", "--by", "C,gamma")
    assert code == 0 and "acc.mean" in out and "used 11 of 13" in out and "1 failed" in out
    code, out, err = invoke("svc", "--best", "acc", "--format", "json")
    assert strict_json(out)["acc"] == accs[top] and "used 11 of 13" in err  # stdout: data


def test_cli_aggregates_say_what_they_left_out(study: xh.ParametrizedExperiments) -> None:
    code, out, err = invoke("svc", "--results", "--by", "gamma", "--format", "csv")
    rows = {float(r["gamma"]): r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and rows[0.1]["failed"] == "1" and rows[0.1]["missing"] == "1"
    assert "1 failed, interrupted or blocked left out" in err and "1 not finished" in err
    code, out, _ = invoke("svc", "--by", "gamma", "--with-failed")  # --by alone is enough
    assert code == 0 and out.splitlines()[0].split()[:2] == ["gamma", "experiments"]


def test_results_to_files(study: xh.ParametrizedExperiments, tmp_path: Path) -> None:
    code, out, _ = invoke("svc", "--results", "-o", "out/table.parquet")
    back = pd.read_parquet(tmp_path / "out/table.parquet")
    assert code == 0 and out == "" and len(back) == 13 and back["acc"].notna().sum() == 12
    code, _, _ = invoke("svc", "--by", "C", "-o", "by-c.csv")
    assert code == 0 and (tmp_path / "by-c.csv").read_text().startswith("C,experiments,")
    code, _, _ = invoke("svc", "--results", "--format", "json", "-o", "all.txt")
    assert len(strict_json((tmp_path / "all.txt").read_text())) == 13


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "nope"], "--by 'nope': no such parameter; parameters: fail_on, C, gamma, fold"),
        (["--best", "nope"], "--best 'nope': no such metric; numeric metrics: acc, loss, f1"),
        (["--best", "per_class"], "--best 'per_class': its values are not numbers"),
        (["--results", "--min"], "--min applies to --best only"),
        (["--results", "--format", "parquet"], "--format parquet writes a file: add -o"),
        (["-l", "-o", "x.csv"], "-o applies to --results and --plot only"),
    ],
)
def test_bad_questions_are_one_line_usage_errors(
    study: xh.ParametrizedExperiments, args: list[str], message: str
) -> None:
    code, _, err = invoke("svc", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_without_pandas_the_error_names_what_to_install(
    study: xh.ParametrizedExperiments, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    assert isinstance(study.results(), list)  # the plain table needs no pandas
    with pytest.raises(MissingDependencyError, match=r"pip install 'xhelpers\[frames\]'"):
        study.results(as_frame=True)
    code, _, err = invoke("svc", "--by", "C")
    assert code == 1 and "needs pandas, which is not installed" in err


def test_marking_a_result_outside_an_experiment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="none runs here"):
        xh.save({"a": 1}, "x.json", result=True)
    assert not (tmp_path / "x.json").exists()
