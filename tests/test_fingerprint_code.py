"""What a fingerprint covers: the experiment's code at the configured scope.

Real runs of ``python run.py``: a body edited between two runs, a module changed
around it, a new commit, a command's script, metafiles written before scopes existed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import meta, run_py, write_run_py

from xhelpers.core.fingerprints import Fingerprints, fingerprint
from xhelpers.core.results import encode_metafile

STUDY = """
def train(*, kernel, c):
    return {"kernel": kernel, "c": c, "score": 0.5}

def other(*, seed):
    return {"seed": seed}

group = xh.ParametrizedExperiments("g", {
    **{f"svc/c={c}": partial(train, kernel="linear", c=c) for c in (1, 2, 3)},
    **{f"other/seed={s}": partial(other, seed=s) for s in (0, 1)},
})
"""
TRAIN = [f"svc/c={c}" for c in (1, 2, 3)]
OTHER = ["other/seed=0", "other/seed=1"]


def statuses(folder: Path, *args: str) -> dict[str, str]:
    result = run_py(folder, "g", "-l", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row["status"] for row in json.loads(result.stdout)}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def set_scope(folder: Path, scope: str, name: str = "config.py") -> None:
    (folder / name).write_text(f"class Config:\n    fingerprint = {scope!r}\n")


def succeeded(result: subprocess.CompletedProcess[str], ran: int, skipped: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{ran} succeeded, {skipped} skipped" in result.stdout, result.stdout


def test_an_edited_body_makes_its_results_stale_and_only_theirs(tmp_path: Path) -> None:
    run_py_file = write_run_py(tmp_path, STUDY)
    succeeded(run_py(tmp_path, "g"), 5, 0)
    data = meta(tmp_path / "results/g/svc/c=1")
    assert data["fingerprint_scope"] == "code"
    assert data["fingerprint"] == data["fingerprints"]["code"]
    assert list(data)[:6] == [
        "status",
        "fingerprint",
        "function",
        "arguments",
        "fingerprint_scope",
        "fingerprints",
    ]
    edit(run_py_file, '"score": 0.5', '"score": 0.7')  # the body, not the arguments
    assert statuses(tmp_path) == dict.fromkeys(TRAIN, "stale") | dict.fromkeys(OTHER, "done")
    plain = run_py(tmp_path, "g")
    succeeded(plain, 0, 2)
    assert "3 stale experiments not rerun" in plain.stderr
    succeeded(run_py(tmp_path, "g", "--rerun-stale"), 3, 2)
    assert meta(tmp_path / "results/g/svc/c=2")["returned"]["score"] == 0.7
    assert set(statuses(tmp_path).values()) == {"done"}


def test_scope_arguments_ignores_body_edits_as_before(tmp_path: Path) -> None:
    run_py_file = write_run_py(tmp_path, STUDY)
    set_scope(tmp_path, "arguments")
    succeeded(run_py(tmp_path, "g"), 5, 0)
    data = meta(tmp_path / "results/g/svc/c=1")
    assert data["fingerprint_scope"] == "arguments"
    assert (
        data["fingerprint"]
        == data["fingerprints"]["arguments"]
        == _old_fingerprint("run.train", (), {"kernel": "linear", "c": 1})
    )
    edit(run_py_file, '"score": 0.5', '"score": 0.7')
    assert set(statuses(tmp_path).values()) == {"done"}
    succeeded(run_py(tmp_path, "g"), 0, 5)
    edit(run_py_file, 'kernel="linear"', 'kernel="rbf"')  # arguments still count
    assert statuses(tmp_path) == dict.fromkeys(TRAIN, "stale") | dict.fromkeys(OTHER, "done")


def test_scope_module_catches_a_change_elsewhere_in_the_module(tmp_path: Path) -> None:
    run_py_file = write_run_py(tmp_path, "KERNEL_DEGREE = 3\n" + STUDY)
    set_scope(tmp_path, "module")
    set_scope(tmp_path, "code", name="narrow.py")
    succeeded(run_py(tmp_path, "g"), 5, 0)
    assert meta(tmp_path / "results/g/svc/c=1")["fingerprint_scope"] == "module"
    edit(run_py_file, "KERNEL_DEGREE = 3", "KERNEL_DEGREE = 4")  # outside every function
    assert set(statuses(tmp_path).values()) == {"stale"}
    # A narrower scope compares these results by what it covers: their code is unchanged.
    assert set(statuses(tmp_path, "--config", "narrow.py").values()) == {"done"}
    succeeded(run_py(tmp_path, "g", "--rerun-stale"), 5, 0)
    assert set(statuses(tmp_path).values()) == {"done"}


def test_a_scope_change_compares_at_the_scope_both_cover(tmp_path: Path) -> None:
    run_py_file = write_run_py(tmp_path, STUDY)
    succeeded(run_py(tmp_path, "g"), 5, 0)  # recorded at code
    set_scope(tmp_path, "module")
    assert set(statuses(tmp_path).values()) == {"done"}  # not stale by the setting alone
    verbose = run_py(tmp_path, "g", "-v")
    succeeded(verbose, 0, 5)
    assert "5 done results recorded at another fingerprint scope compared by code" in (
        verbose.stderr
    )
    edit(run_py_file, '"score": 0.5', '"score": 0.7')  # what both cover still counts
    assert statuses(tmp_path) == dict.fromkeys(TRAIN, "stale") | dict.fromkeys(OTHER, "done")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_scope_git_catches_a_new_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    write_run_py(tmp_path, STUDY)
    (tmp_path / "notes.txt").write_text("first\n")
    set_scope(tmp_path, "git")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "run.py", "notes.txt")
    git(tmp_path, "commit", "-qm", "first")
    succeeded(run_py(tmp_path, "g"), 5, 0)
    assert meta(tmp_path / "results/g/svc/c=1")["fingerprint_scope"] == "git"
    # The result tree and config.py are untracked: they do not count.
    assert set(statuses(tmp_path).values()) == {"done"}
    (tmp_path / "notes.txt").write_text("second\n")  # a tracked file, not committed
    assert set(statuses(tmp_path).values()) == {"stale"}
    git(tmp_path, "commit", "-qam", "second")
    assert set(statuses(tmp_path).values()) == {"stale"}
    succeeded(run_py(tmp_path, "g", "--rerun-stale"), 5, 0)
    assert set(statuses(tmp_path).values()) == {"done"}
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "third")  # a commit, no change
    assert set(statuses(tmp_path).values()) == {"stale"}


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=folder,
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(folder)},
    )


def test_metafiles_written_before_scopes_stay_done(tmp_path: Path) -> None:
    run_py_file = write_run_py(tmp_path, STUDY)
    old_ones = {"svc/c=1": {"kernel": "linear", "c": 1}, "svc/c=2": {"kernel": "linear", "c": 7}}
    for name, kwargs in old_ones.items():
        _write_old_metafile(tmp_path / "results/g" / name, name, kwargs)
    # Pretty-printed by hand: not the head xhelpers writes, so it is parsed.
    folder = tmp_path / "results/g/svc/c=3"
    _write_old_metafile(folder, "svc/c=3", {"kernel": "linear", "c": 3})
    data = json.loads((folder / "metafile.json").read_text())
    (folder / "metafile.json").write_text(json.dumps(data, indent=2) + "\n")
    expected = {"svc/c=1": "done", "svc/c=2": "stale", "svc/c=3": "done"}
    assert statuses(tmp_path) == expected | dict.fromkeys(OTHER, "pending")
    result = run_py(tmp_path, "g", "-v")
    succeeded(result, 2, 2)  # the two others ran; the stale one is reported, not rerun
    assert "1 stale experiment not rerun" in result.stderr
    assert "2 done results recorded at another fingerprint scope compared by arguments" in (
        result.stderr
    )
    # What they never recorded cannot be compared: they stay done until they rerun.
    edit(run_py_file, '"score": 0.5', '"score": 0.7')
    assert statuses(tmp_path) == {
        "svc/c=1": "done",
        "svc/c=2": "stale",
        "svc/c=3": "done",
        **dict.fromkeys(OTHER, "done"),
    }


def _old_fingerprint(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    # As xhelpers computed it before scopes existed, for plain values.
    text = f"{name}\0{args!r}\0{sorted(kwargs.items())!r}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _write_old_metafile(folder: Path, name: str, kwargs: dict[str, Any]) -> None:
    folder.mkdir(parents=True)
    arguments = {"args": [], "kwargs": {k: repr(v) for k, v in kwargs.items()}}
    body = (
        f'"fingerprint": "{_old_fingerprint("run.train", (), kwargs)}", '
        f'"function": "run.train", "arguments": {json.dumps(arguments)}, '
        f'"group": "g", "name": "{name}", "started": "2026-01-01T00:00:00.000+00:00", '
        '"host": "old", "pid": 1, "runs": 1, "ended": "2026-01-01T00:00:01.000+00:00", '
        '"duration": 1.0, "returned": null'
    )
    (folder / "metafile.json").write_text(encode_metafile("success", body))


def test_a_command_whose_script_changes_is_stale(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('training')\n")
    (tmp_path / "settings.txt").write_text("a\n")
    write_run_py(
        tmp_path,
        """
group = xh.ParametrizedExperiments("g", {
    **xh.grid("python {here}/train.py --lr {lr}", "train/lr={lr}", lr=[0.1, 0.2]),
    "opt": xh.command("echo --settings={here}/settings.txt"),
    "echo": xh.command("echo {word} > out.txt", word="hi"),
})
""",
    )
    succeeded(run_py(tmp_path, "g"), 4, 0)
    (tmp_path / "train.py").write_text("print('training, better')\n")
    after = {"train/lr=0.1": "stale", "train/lr=0.2": "stale", "opt": "done", "echo": "done"}
    assert statuses(tmp_path) == after
    (tmp_path / "settings.txt").write_text("b\n")  # named as an --option=value
    assert statuses(tmp_path) == after | {"opt": "stale"}
    succeeded(run_py(tmp_path, "g", "--rerun-stale"), 3, 1)
    set_scope(tmp_path, "arguments")
    (tmp_path / "train.py").write_text("print('training, best')\n")
    assert set(statuses(tmp_path).values()) == {"done"}


def test_the_fingerprint_is_the_same_in_workers_and_when_imported(
    tmp_path: Path, start_method: str
) -> None:
    write_run_py(tmp_path, STUDY)
    (tmp_path / "config.py").write_text(f"class Config:\n    start_method = {start_method!r}\n")
    succeeded(run_py(tmp_path, "g", "-j2"), 5, 0)
    by_workers = {n: meta(tmp_path / "results/g" / n)["fingerprint"] for n in TRAIN + OTHER}
    succeeded(run_py(tmp_path, "g", "--force"), 5, 0)  # -j1: in the main process
    assert {n: meta(tmp_path / "results/g" / n)["fingerprint"] for n in by_workers} == by_workers
    code = (
        "import sys; sys.argv = ['x']; import run; "
        "print(sorted({r.status for r in run.group.status()}))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "['done']", imported.stderr


# In-process: what each kind of callable falls back to, and the cheap paths.


def test_arguments_scope_is_the_fingerprint_of_before() -> None:
    fn = functools.partial(_plain, 1, b="x")
    assert fingerprint(fn, "arguments") == _old_fingerprint(f"{__name__}._plain", (1,), {"b": "x"})
    assert fingerprint(fn, "code") != fingerprint(fn, "arguments")
    assert fingerprint(fn) == fingerprint(fn, "code")
    nested = functools.partial(functools.partial(_plain, 1), b="x")
    assert fingerprint(nested) == fingerprint(fn)


def _plain(a: int, b: str = "") -> None:
    pass


def test_callables_without_source_fall_back_to_stable_digests() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(x):\n    return x + 1\n", namespace)  # no file: its bytecode counts
    again: dict[str, Any] = {}
    exec("def made(x):\n    return x + 1\n", again)
    other: dict[str, Any] = {}
    exec("def made(x):\n    return x + 2\n", other)
    fps = Fingerprints("module")
    assert fps(namespace["made"]) == fps(again["made"]) != fps(other["made"])
    assert fps(functools.partial(print, 1)) == Fingerprints("module")(functools.partial(print, 1))
    assert fps(functools.partial(print, 1)) != fps(functools.partial(print, 2))


def test_a_mixed_tree_compares_each_head_by_one_hash_or_two() -> None:
    fps = Fingerprints("code")
    fns = [functools.partial(_plain, i) for i in range(4)]
    heads = [fps(fns[0]), fps.at(fns[1], "arguments"), fps(fns[2]), fps.at(fns[3], "arguments")]
    scopes = [fps.head_scope(fn, head) for fn, head in zip(fns, heads, strict=True)]
    assert scopes == ["code", "arguments", "code", "arguments"]
    assert fps.head_scope(fns[0], heads[1]) is None
    meta_old = {"fingerprint": fps.at(fns[0], "arguments")}
    assert fps.compare(fns[0], meta_old) == (True, "arguments")
