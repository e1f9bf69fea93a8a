"""xh.save / xh.load: the format from the file name, compression, atomic writes."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import meta, run_py, write_run_py

import xhelpers as xh
from xhelpers.errors import FileFormatError

RECORDS = [{"a": 1, "b": "x"}, {"a": 2, "b": "y, z"}]
CASES: list[tuple[str, Any, Any]] = [
    ("scores.json", {"acc": 0.9, "per_class": [0.1, 0.2]}, None),
    ("rows.jsonl", RECORDS, None),
    ("table.csv", RECORDS, [{"a": "1", "b": "x"}, {"a": "2", "b": "y, z"}]),
    ("notes.txt", "héllo\nworld", None),
    ("state.pkl", {"set": {1, 2}, "t": (1, 2)}, None),
]
COMPRESSIONS = ["", ".gz", ".bz2", ".xz"] + (
    [".zst"] if importlib.util.find_spec("zstandard") else []
)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize(("name", "value", "expected"), CASES)
def test_each_format_round_trips(
    tmp_path: Path, name: str, value: Any, expected: Any, compression: str
) -> None:
    path = tmp_path / "deep/er" / (name + compression)  # parent folders are made
    assert xh.save(value, path) == path
    assert xh.load(path) == (value if expected is None else expected)
    if compression == ".gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # real gzip
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_suffixes_are_matched_case_insensitively_by_the_longest(tmp_path: Path) -> None:
    xh.save([{"x": 1}], tmp_path / "A.JSONL.GZ")
    assert xh.load(tmp_path / "A.JSONL.GZ") == [{"x": 1}]  # .jsonl, not .json... nor .l


def test_an_unknown_suffix_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=r"'.*data\.xyz': no format .*\.json, .*\.pkl"):
        xh.save(1, tmp_path / "data.xyz")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [
        ("a.npy", "numpy", "numpy"),
        ("a.parquet", "pandas", "pandas pyarrow"),
        ("a.parquet", "pyarrow", "pyarrow"),
        ("a.yaml", "yaml", "pyyaml"),
        ("a.json.zst", "zstandard", "zstandard"),
    ],
)
def test_a_missing_optional_library_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    with pytest.raises(FileFormatError, match=rf"files need {package}.*pip install {package}"):
        xh.save({"a": [1, 2]}, tmp_path / name)
    assert not any(tmp_path.iterdir())


needs_numpy = pytest.mark.skipif(not importlib.util.find_spec("numpy"), reason="needs numpy")
needs_parquet = pytest.mark.skipif(
    not (importlib.util.find_spec("pandas") and importlib.util.find_spec("pyarrow")),
    reason="needs pandas and pyarrow",
)
needs_yaml = pytest.mark.skipif(not importlib.util.find_spec("yaml"), reason="needs pyyaml")


@needs_numpy
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_numpy_arrays_round_trip(tmp_path: Path, compression: str) -> None:
    import numpy as np

    weights = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    xh.save(weights, tmp_path / f"w.npy{compression}")
    back = xh.load(tmp_path / f"w.npy{compression}")
    assert back.dtype == np.float32 and np.array_equal(back, weights)
    xh.save({"w": weights, "b": np.ones(2)}, tmp_path / f"m.npz{compression}")
    loaded = xh.load(tmp_path / f"m.npz{compression}")
    assert set(loaded) == {"w", "b"} and np.array_equal(loaded["w"], weights)


@needs_numpy
def test_numpy_scalars_and_arrays_in_json_are_numbers_and_lists(tmp_path: Path) -> None:
    import numpy as np

    scores = {"acc": np.float64(0.25), "n": np.int64(3), "per_class": np.array([0.5, 1.0])}
    xh.save(scores, tmp_path / "s.json")
    xh.save([scores], tmp_path / "s.jsonl.gz")
    expected = {"acc": 0.25, "n": 3, "per_class": [0.5, 1.0]}
    assert xh.load(tmp_path / "s.json") == expected
    assert xh.load(tmp_path / "s.jsonl.gz") == [expected]


@needs_parquet
@pytest.mark.parametrize("compression", ["", ".gz"])
def test_parquet_round_trips_a_frame_and_records(tmp_path: Path, compression: str) -> None:
    import pandas as pd

    frame = pd.DataFrame({"C": [1, 10], "acc": [0.5, float("nan")]})
    xh.save(frame, tmp_path / f"f.parquet{compression}")
    back = xh.load(tmp_path / f"f.parquet{compression}")
    pd.testing.assert_frame_equal(back, frame)
    xh.save(RECORDS, tmp_path / "r.parquet")
    assert xh.load(tmp_path / "r.parquet").to_dict("records") == RECORDS


@needs_yaml
@pytest.mark.parametrize("name", ["c.yaml", "c.YML", "c.yaml.xz"])
def test_yaml_round_trips(tmp_path: Path, name: str) -> None:
    value = {"model": {"layers": [64, 64], "act": "relu"}, "lr": 0.001, "none": None}
    xh.save(value, tmp_path / name)
    assert xh.load(tmp_path / name) == value
    if not name.endswith(".xz"):
        assert (tmp_path / name).read_text().startswith("model:\n  layers:")  # real YAML


def test_numpy_like_values_in_json_are_numbers_and_lists(tmp_path: Path) -> None:
    class Array:  # what NumPy arrays and scalars offer, without NumPy here
        def tolist(self) -> list[float]:
            return [1.0, 2.5]

    xh.save({"w": Array()}, tmp_path / "w.json")
    assert xh.load(tmp_path / "w.json") == {"w": [1.0, 2.5]}


def test_a_save_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    def half(obj: Any, stream: IO[bytes]) -> None:
        stream.write(b"half of it")
        raise RuntimeError("disk gone")

    xh.register_format(".half", save=half, load=lambda s: s.read())
    path = tmp_path / "x.half"
    path.write_bytes(b"the old one")
    with pytest.raises(RuntimeError, match="disk gone"):
        xh.save("new", path)
    assert path.read_bytes() == b"the old one"
    assert [p.name for p in tmp_path.iterdir()] == ["x.half"]


def test_a_registered_format_gets_compression_too(tmp_path: Path) -> None:
    xh.register_format(
        ".upper", save=lambda o, s: s.write(str(o).upper().encode()), load=lambda s: s.read()
    )
    xh.save("abc", tmp_path / "t.upper.xz")
    assert xh.load(tmp_path / "t.upper.xz") == b"ABC"


def test_relative_paths_are_the_experiment_folder_and_group_load_reads_them(
    tmp_path: Path,
) -> None:
    write_run_py(
        tmp_path,
        """
import os
import sys

def train(*, lr):
    os.chdir("/")  # even when the experiment moved away from its folder
    xh.save({"lr": lr, "loss": 1 - lr}, "out/scores.json.gz")

def evaluate(*, model):
    return model.load("out/scores.json.gz")["loss"]

g = xh.ParametrizedExperiments("g", {
    "train": partial(train, lr=0.25),
    "eval": partial(evaluate, model=xh.upstream("g", "train")),
})
""",
    )
    proc = run_py(tmp_path, "g", "eval")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert (tmp_path / "results/g/train/out/scores.json.gz").exists()
    assert meta(tmp_path / "results/g/eval")["returned"] == 0.75
    os.chdir(tmp_path)
    import runpy

    namespace = runpy.run_path(str(tmp_path / "run.py"), run_name="not_main")
    group = namespace["g"]
    assert group.load("train", "out/scores.json.gz") == {"lr": 0.25, "loss": 0.75}
    with pytest.raises(xh.errors.PatternError):
        group.load("trian", "out/scores.json.gz")
