"""--plot and group.plot: what the figure draws, checked through its own artists, on
results a real run.py made."""

from __future__ import annotations

import runpy
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke, run_py, write_run_py
from experiments import MODEL_ACC, acc_of

from xhelpers.errors import MissingDependencyError, ResultsQueryError
from xhelpers.views import plots

PNG = b"\x89PNG\r\n\x1a\n"
CS, GAMMAS, FOLDS = [1, 10, 100], [0.01, 0.1], range(3)
SORTED_MODELS = ["knn", "svm", "tree"]  # run.py lists them svm, knn, tree

RUN = """
template = "C={C}/gamma={gamma}/fold={fold}"
values = dict(C=[1, 10, 100], gamma=[0.01, 0.1], fold=range(3))
main = xh.ParametrizedExperiments("main", xh.grid(ex.accuracy, template, **values))
flaky = xh.ParametrizedExperiments("flaky", xh.grid(ex.accuracy_failing, template, **values))
models = xh.ParametrizedExperiments(
    "models",
    xh.grid(ex.model_score, "model={model}/fold={fold}", model=["svm", "knn", "tree"], fold=[0, 1]),
)
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study whose three groups ran for real, once for the module (the tests only read)."""
    folder = tmp_path_factory.mktemp("study")
    write_run_py(folder, RUN)
    for group, code in (("main", 0), ("flaky", 1), ("models", 0)):
        done = run_py(folder, group)
        assert done.returncode == code, done.stderr
    return folder


@pytest.fixture()
def groups(study: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """run.py's groups, defined in this process, in the study."""
    monkeypatch.chdir(study)
    return runpy.run_path(str(study / "run.py"))


def xy(line: Any) -> tuple[list[float], list[float]]:
    """A drawn line's x and y values."""
    data = line.get_xydata()
    return data[:, 0].tolist(), data[:, 1].tolist()


def band(collection: Any) -> dict[float, tuple[float, float]]:
    """{x: (lowest, highest)} of a fill_between band's outline."""
    out: dict[float, tuple[float, float]] = {}
    for path in collection.get_paths():
        for x, y in path.vertices:
            low, high = out.get(float(x), (y, y))
            out[float(x)] = (min(low, y), max(high, y))
    return out


def test_lines_hold_the_means_and_bands_the_std(groups: dict[str, Any]) -> None:
    fig = groups["main"].plot("acc", x="C", hue="gamma", logx=True)
    ax = fig.axes[0]
    assert len(ax.lines) == len(GAMMAS) and len(ax.collections) == len(GAMMAS)
    for line, collection, gamma in zip(ax.lines, ax.collections, GAMMAS, strict=True):
        scores = {C: [acc_of(C, gamma, f) for f in FOLDS] for C in CS}
        means = [statistics.mean(scores[C]) for C in CS]
        assert xy(line) == (CS, pytest.approx(means))
        spread = band(collection)
        assert sorted(spread) == CS
        for C, mean in zip(CS, means, strict=True):
            std = statistics.stdev(scores[C])
            assert spread[C] == pytest.approx((mean - std, mean + std))
    assert ax.get_xlabel() == "C" and ax.get_xscale() == "log"
    assert ax.get_ylabel() == "acc (mean ± std over fold)"
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "gamma"
    assert [t.get_text() for t in legend.get_texts()] == ["gamma=0.01", "gamma=0.1"]

    alone = groups["main"].plot("acc", x="gamma").axes[0]
    assert alone.get_ylabel() == "acc (mean ± std over C, fold)" and alone.get_legend() is None
    assert alone.get_xscale() == "linear"
    every = [statistics.mean(acc_of(C, g, f) for C in CS for f in FOLDS) for g in GAMMAS]
    assert xy(alone.lines[0]) == (GAMMAS, pytest.approx(every))


def test_cli_writes_the_png_and_says_where(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "study"  # a copy: this test writes into it
    shutil.copytree(study, copy)
    monkeypatch.chdir(copy)
    runpy.run_path(str(copy / "run.py"))
    args = ("--plot", "acc", "--x", "C", "--hue", "gamma", "--logx")
    code, out, err = invoke("main", *args, "-o", "plots/acc.png")
    assert code == 0, err
    written = copy / "plots/acc.png"
    assert written.read_bytes().startswith(PNG)
    assert out == ""  # stdout is for data; where the file went is a note
    assert err == f"wrote {written}; used 18 of 18\n"
    assert [p.name for p in (copy / "plots").iterdir()] == ["acc.png"]  # no temporary left
    code, out, err = invoke("main", "--plot", "acc", "--x", "C")
    assert code == 0 and out == "", err
    default = copy / "acc-by-C.png"
    assert default.read_bytes().startswith(PNG) and err.startswith(f"wrote {default}; ")


def test_svg_pdf_and_other_suffixes(
    groups: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figure = groups["models"].plot("acc", x="model")
    svg = plots.write_plot(figure, tmp_path / "out/a.svg")
    assert svg == tmp_path / "out/a.svg" and svg.read_bytes().lstrip().startswith(b"<")
    assert plots.write_plot(figure, tmp_path / "a.PDF").read_bytes().startswith(b"%PDF")
    with pytest.raises(ResultsQueryError, match=r"^-o a\.jpg: .*\.png, \.svg, \.pdf.*a\.png$"):
        plots.write_plot(figure, "a.jpg")
    monkeypatch.chdir(tmp_path)
    assert plots.write_plot(figure, "rel.png") == tmp_path / "rel.png"  # made absolute


def test_failed_values_only_with_with_failed(
    groups: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Any] = []
    real = plots.write_plot

    def keep(figure: Any, path: str) -> Path:  # the CLI's figure, to read its lines
        drawn.append(figure)
        return real(figure, path)

    monkeypatch.setattr(plots, "write_plot", keep)
    out = str(tmp_path / "flaky.png")
    code, _, err = invoke("flaky", "--plot", "acc", "--x", "C", "--hue", "gamma", "-o", out)
    assert code == 0 and "used 17 of 18: 1 failed" in err and "left out" in err
    code, _, err = invoke(
        "flaky", "--plot", "acc", "--x", "C", "--hue", "gamma", "--with-failed", "-o", out
    )
    assert code == 0 and "used 17 + 1 of 18" in err
    assert len(drawn) == 2
    without, with_failed = (fig.axes[0].lines[1] for fig in drawn)  # gamma=0.1's lines
    # C=100, gamma=0.1, fold=2 failed after writing its score: in its mean only on request
    means = [statistics.mean(acc_of(C, 0.1, f) for f in FOLDS) for C in CS]
    assert xy(with_failed) == (CS, pytest.approx(means))
    means[-1] = statistics.mean(acc_of(100, 0.1, f) for f in (0, 1))
    assert xy(without) == (CS, pytest.approx(means))


def test_categorical_x_and_single_experiments(groups: dict[str, Any]) -> None:
    ax = groups["models"].plot("acc", x="model").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == SORTED_MODELS
    means = [statistics.mean(MODEL_ACC[m] + f / 100 for f in (0, 1)) for m in SORTED_MODELS]
    assert xy(ax.lines[0]) == ([0, 1, 2], pytest.approx(means))
    assert ax.get_xlabel() == "model" and ax.get_ylabel() == "acc (mean ± std over fold)"
    # one experiment per point: no std, so points and no band
    one = groups["models"].plot("acc", "*/fold=1", x="model").axes[0]
    assert xy(one.lines[0]) == (
        [0, 1, 2],
        pytest.approx([MODEL_ACC[m] + 0.01 for m in SORTED_MODELS]),
    )
    assert one.collections[0].get_paths() == [] and one.get_ylabel() == "acc"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "nope", "--x", "C"], "--plot 'nope': no such metric; numeric metrics: acc"),
        (["--plot", "kernel", "--x", "C"], "--plot 'kernel': its values are not numbers; numeric"),
        (["--plot", "acc", "--x", "c"], "--x 'c': no such parameter; parameters: C, gamma, fold"),
        (["--plot", "acc", "--x", "C", "--hue", "g"], "--hue 'g': no such parameter; parameters:"),
        (["--plot", "acc", "--x", "C", "--hue", "C"], "--hue 'C' is the x axis' parameter"),
        (["--plot", "acc"], "--plot needs --x PARAM: the parameter on the x axis"),
        (["--x", "C"], "--x applies to --plot only"),
        (["--hue", "C", "--results"], "--hue applies to --plot only"),
        (["--plot", "acc", "--x", "fold", "--logx"], "--logx: --x 'fold' has a value <= 0 (0)"),
        (["--plot", "acc", "--x", "C", "-o", "a.jpg"], "-o a.jpg: a plot is written as .png"),
        (["--plot", "acc", "--x", "C", "--format", "csv"], "--format applies to -l, --results"),
    ],
)
def test_errors_are_one_line_exit_2(groups: dict[str, Any], args: list[str], message: str) -> None:
    before = sorted(Path.cwd().iterdir())
    code, out, err = invoke("main", *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert out == "" and sorted(Path.cwd().iterdir()) == before  # nothing written


def test_logx_of_strings_and_nothing_to_draw(groups: dict[str, Any]) -> None:
    with pytest.raises(ResultsQueryError, match="--logx: the values of --x 'model' are not all"):
        groups["models"].plot("acc", x="model", logx=True)
    with pytest.raises(ResultsQueryError, match="no finished experiment with parameter 'C'"):
        groups["flaky"].plot("acc", "C=100/gamma=0.1/fold=2", x="C")


def test_missing_matplotlib_names_the_extra(
    groups: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'xhelpers\[plots\]'") as info:
        groups["main"].plot("acc", x="C")
    assert info.value.package == "matplotlib" and info.value.extra == "plots"
    code, _, err = invoke("main", "--plot", "acc", "--x", "C")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("Error: --plot needs matplotlib, which is not installed: ")
    assert "pip install 'xhelpers[plots]'" in err
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas comes with the same extra
    code, _, err = invoke("main", "--plot", "acc", "--x", "C")
    assert code == 1 and "--plot needs pandas" in err and "'xhelpers[plots]'" in err
