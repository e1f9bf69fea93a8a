"""What a local run gives each experiment's process (issue 13, points 4 and 6).

GPUs: ``--gpus`` (or config ``gpus``, else CUDA_VISIBLE_DEVICES, else nvidia-smi) are
handed out by each experiment's ``gpus`` resource: ``CUDA_VISIBLE_DEVICES`` names exactly
its slots from the process' first moment, a GPU is never shared beyond its fractions,
``-j`` limits too, and asking for more than the run has fails before anything runs. No
GPU is needed: devices are ids given by hand, and experiments record what they got.

Threads: every experiment process starts with the thread-count variables at its share
(``-w``) unless the user set them, and numpy's BLAS, loaded by run.py before the workers
started, is held to it under fork and spawn alike.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections import defaultdict
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke, meta, pid_alive, popen_run_py, run_py, wait_until, write_run_py
from experiments import records_env

import xhelpers as xh
from xhelpers.backends.local import slots
from xhelpers.backends.local.slots import GpuQueue, GpuSlots
from xhelpers.backends.threads import THREAD_VARIABLES, ThreadPolicy
from xhelpers.config import BaseConfig, parse_gpus
from xhelpers.core.execution import Task
from xhelpers.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_thread_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' runs start without the variables they are about (as a fresh shell),
    and with no GPU whatever this machine has (conftest), unless they say otherwise."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def clean_env(**values: str) -> dict[str, str]:
    """This process' environment without the thread variables, no GPU, and ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update({"CUDA_VISIBLE_DEVICES": "", **values})
    return env


# -- GPUs: what each experiment gets ------------------------------------------------------
GPU_RUN = """
import os
AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")  # what run.py sees as this process starts
experiments = {f"half/{i}": ex.records_env for i in range(3)}
experiments.update({f"one/{i}": ex.records_env for i in range(2)})
experiments.update({"both": ex.records_env, "cpu/0": ex.records_env, "cpu/1": ex.records_env})
g = xh.ParametrizedExperiments("g", experiments, resources={
    "half/*": {"gpus": 0.5}, "one/*": {"gpus": 1}, "both": {"gpus": 2},
})
"""


@pytest.mark.parametrize("jobs", [1, 3])
def test_each_experiment_starts_with_exactly_its_gpus(
    tmp_path: Path, start_method: str, jobs: int
) -> None:
    write_run_py(tmp_path, GPU_RUN)
    (tmp_path / "config.py").write_text(f"class Config:\n    start_method = {start_method!r}\n")
    done = run_py(tmp_path, "g", f"-j{jobs}", "--gpus", "0,1", env=clean_env())
    assert done.returncode == 0, done.stderr
    asked = {"half/0": 0.5, "half/1": 0.5, "half/2": 0.5, "one/0": 1, "one/1": 1, "both": 2}
    pids: dict[str, int] = {}
    for name in [*asked, "cpu/0", "cpu/1"]:
        data = meta(tmp_path / "results/g" / name)
        visible = data["returned"]["env"]["CUDA_VISIBLE_DEVICES"]
        assert visible == ",".join(data["gpus"]), name  # recorded as it was given
        assert len(data["gpus"]) == (max(1, int(asked[name])) if name in asked else 0), name
        assert set(data["gpus"]) <= {"0", "1"}
        if name in asked and start_method == "spawn":  # run.py, imported there, saw it too
            assert data["returned"]["at_import"] == visible, name
        pids[name] = data["pid"]
    # Each GPU experiment in a process of its own, started for it; -j1 runs the others
    # in the runner's own process (GPUs hidden there too).
    gpu_pids = {pids[name] for name in asked}
    assert len(gpu_pids) == len(asked)
    assert not gpu_pids & {pids["cpu/0"], pids["cpu/1"]}
    if jobs == 1:
        assert pids["cpu/0"] == pids["cpu/1"]


def test_gpus_come_from_config_and_the_environment(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
g = xh.ParametrizedExperiments("g", {"a": ex.records_env, "b": ex.records_env},
                               resources={"*": {"gpus": 1}})
""",
    )
    (tmp_path / "config.py").write_text("class Config:\n    gpus = '3'\n    jobs = 2\n")
    done = run_py(tmp_path, "g", env=clean_env(CUDA_VISIBLE_DEVICES="5,6"))
    assert done.returncode == 0, done.stderr
    assert {meta(tmp_path / "results/g" / n)["gpus"][0] for n in "ab"} == {"3"}
    (tmp_path / "config.py").write_text("class Config:\n    jobs = 2\n")  # none named
    done = run_py(tmp_path, "g", "--force", env=clean_env(CUDA_VISIBLE_DEVICES="5,6,-1,7"))
    assert done.returncode == 0, done.stderr
    assert sorted(meta(tmp_path / "results/g" / n)["gpus"][0] for n in "ab") == ["5", "6"]


def complete_lines(ledger: Path) -> list[str]:
    """The ledger's lines written whole so far (one being appended is left out)."""
    text = ledger.read_text() if ledger.exists() else ""
    return text.split("\n")[:-1]


def replay(ledger: Path) -> tuple[int, dict[str, Fraction]]:
    """The most experiments that held GPUs at once, and the most each GPU was held."""
    held: dict[str, Fraction] = defaultdict(Fraction)
    worst: dict[str, Fraction] = defaultdict(Fraction)
    active = most = 0
    for line in ledger.read_text().splitlines():
        record = json.loads(line)
        sign = 1 if record["event"] == "start" else -1
        share = min(Fraction(str(record["share"])), Fraction(1))
        active += sign
        most = max(most, active)
        for device in record["devices"]:
            held[device] += sign * share
            worst[device] = max(worst[device], held[device])
    return most, dict(worst)


@pytest.mark.parametrize(
    ("gpus", "jobs"),
    [("0", 3), ("0,1", 2)],
    ids=["two-halves-fill-a-gpu", "jobs-limit-too"],
)
def test_no_gpu_is_held_beyond_its_fractions(tmp_path: Path, gpus: str, jobs: int) -> None:
    """Four 0.5s: on one GPU at -j3 two run and the others wait for a slot; on two GPUs
    at -j2 the jobs are what limits. Each holds its GPU until the test releases it,
    oldest first, once as many run as may: the ledger shows who held what when."""
    ledger = tmp_path / "ledger.jsonl"
    write_run_py(
        tmp_path,
        f"""
g = xh.ParametrizedExperiments("g", {{
    f"e{{i}}": partial(ex.holds_gpu, ledger={str(ledger)!r}, tag=f"e{{i}}", share=0.5)
    for i in range(4)
}}, resources={{"*": {{"gpus": 0.5}}}})
""",
    )
    proc = popen_run_py(tmp_path, "g", f"-j{jobs}", "--gpus", gpus, env=clean_env())
    try:

        def events() -> list[dict[str, Any]]:
            return [json.loads(line) for line in complete_lines(ledger)]

        def active() -> list[str]:
            running: list[str] = []
            for e in events():
                (running.append if e["event"] == "start" else running.remove)(e["tag"])
            return running

        for ended in range(4):
            expected = min(2, 4 - ended)
            wait_until(
                lambda: len(active()) >= expected or proc.poll() is not None,  # noqa: B023
                120,
                f"{expected} holding GPUs",
            )
            assert proc.poll() is None, proc.communicate()
            oldest = active()[0]
            (tmp_path / f"release-{oldest}").touch()
            wait_until(lambda: oldest not in active(), 60, f"{oldest} to end")  # noqa: B023
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    most, worst = replay(ledger)
    assert most == 2  # two at once, never three
    assert all(share <= 1 for share in worst.values()), worst
    if gpus == "0":
        assert worst == {"0": 1}  # the two halves shared it
    assert "4 succeeded" in out


def test_gpu_experiments_wait_behind_a_whole_gpu(tmp_path: Path) -> None:
    """A whole-GPU experiment holding the only GPU keeps every half out until it ends."""
    ledger = tmp_path / "ledger.jsonl"
    write_run_py(
        tmp_path,
        f"""
g = xh.ParametrizedExperiments("g", {{
    "whole": partial(ex.holds_gpu, ledger={str(ledger)!r}, tag="whole", share=1),
    "half": partial(ex.holds_gpu, ledger={str(ledger)!r}, tag="half", share=0.5),
    "cpu": ex.records_env,
}}, resources={{"whole": {{"gpus": 1}}, "half": {{"gpus": 0.5}}}})
""",
    )
    proc = popen_run_py(tmp_path, "g", "-j3", "--gpus", "0", env=clean_env())
    try:
        # The CPU experiment runs beside the whole-GPU one: a free job, and no GPU needed.
        wait_until(
            lambda: (tmp_path / "results/g/cpu/env.json").exists() and complete_lines(ledger),
            120,
            "cpu and whole started",
        )
        assert [json.loads(x)["tag"] for x in complete_lines(ledger)] == ["whole"]
        (tmp_path / "release-whole").touch()
        wait_until(lambda: "half" in ledger.read_text(), 60, "half to start")
        (tmp_path / "release-half").touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    tags = [(json.loads(x)["event"], json.loads(x)["tag"]) for x in ledger.read_text().splitlines()]
    assert tags == [("start", "whole"), ("end", "whole"), ("start", "half"), ("end", "half")]
    assert meta(tmp_path / "results/g/cpu")["gpus"] == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_reaches_a_gpu_experiment_in_its_own_process(tmp_path: Path, jobs: str) -> None:
    """-j1 waits for its GPU worker as -jN does: Ctrl-C interrupts the experiment there
    (recorded interrupted, its processes gone) and starts nothing after it."""
    write_run_py(
        tmp_path,
        """
names = {"gpu": partial(ex.block_with_child, started="gpu.started")}
names.update({f"later_{i}": ex.records_env for i in range(3)})
g = xh.ParametrizedExperiments("g", names, resources={"gpu": {"gpus": 1}})
""",
    )
    proc = popen_run_py(tmp_path, "g", f"-j{jobs}", "--gpus", "0", env=clean_env())
    started = tmp_path / "results/g/gpu/gpu.started"
    try:
        wait_until(lambda: started.exists() and bool(started.read_text()), 120, "started")
        pids = [int(x) for x in started.read_text().split()]
        proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    data = meta(tmp_path / "results/g/gpu")
    assert data["status"] == "interrupted" and data["gpus"] == ["0"]
    assert data["pid"] == pids[0] and data["pid"] != proc.pid
    if jobs == "1":  # one at a time: nothing else had started
        assert not any((tmp_path / f"results/g/later_{i}").exists() for i in range(3))
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), 10, "no orphans")


def test_more_gpus_than_the_run_has_fails_before_anything_runs(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
g = xh.ParametrizedExperiments("g", {"small": ex.records_env, "big": ex.records_env,
                                     "half": ex.records_env},
                               resources={"big": {"gpus": 2}, "half": {"gpus": 0.5}})
""",
    )
    done = run_py(tmp_path, "g", "-j2", "--gpus", "0", env=clean_env())
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: experiment 'big' asks for 2 GPUs, but this run has 1 (GPU 0): name more "
        "with --gpus (or config gpus), or ask for fewer"
    )
    assert not (tmp_path / "results/g/small").exists()  # nothing ran, not even the others
    done = run_py(tmp_path, "g", env=clean_env())  # CUDA_VISIBLE_DEVICES="": no GPU
    assert done.returncode == 2
    assert done.stderr.startswith("Error: experiment 'big' (and 1 more) asks for 2 GPUs")
    assert "this run has none (no --gpus, config gpus, CUDA_VISIBLE_DEVICES or" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    done = run_py(tmp_path, "g", "small", "--gpus", "0", env=clean_env())
    assert done.returncode == 0, done.stderr  # selected alone, it needs none


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,0", "--gpus '0,0': device 0 is given twice: name each device once"),
        (
            "0,x",
            "--gpus '0,x': 'x' is not a device id: give indices (0,1) or GPU-/MIG- "
            "UUIDs, comma-separated",
        ),
        ("-1", "--gpus '-1': '-1' is not a device id"),
        ("0,,1", "--gpus '0,,1': '' is not a device id"),
    ],
)
def test_bad_gpus_option_is_a_one_line_usage_error(value: str, message: str) -> None:
    xh.ParametrizedExperiments("g", {"a": records_env})
    code, _, err = invoke("g", "--gpus", value)
    assert code == 2
    assert err.startswith("Error: " + message) and len(err.strip().splitlines()) == 1
    assert not Path("results").exists()


def test_gpus_option_and_config_take_ids() -> None:
    assert parse_gpus("0, 1,GPU-8d3c-11ef") == ["0", "1", "GPU-8d3c-11ef"]
    assert parse_gpus([2, "01"]) == ["2", "1"]
    assert parse_gpus("") == [] and parse_gpus(" ") == []
    assert BaseConfig.with_updates({"gpus": "0,1"}).gpus == ["0", "1"]
    assert BaseConfig.with_updates({"gpus": [3]}).gpus == ["3"]
    assert BaseConfig().gpus is None  # found when a run needs them
    with pytest.raises(ConfigError, match=r"field 'gpus': Value error, device 1 is given twice"):
        BaseConfig.with_updates({"gpus": [1, "1"]})
    with pytest.raises(ConfigError, match="'gpus'"):
        BaseConfig.with_updates({"gpus": 1.5})


@pytest.mark.parametrize("bad", [1.5, -1, -0.5, "1", True, float("nan"), float("inf"), None])
def test_a_gpus_resource_is_a_number_of_gpus(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        xh.ParametrizedExperiments("r", {"a": records_env}, resources={"a": {"gpus": bad}})
    assert str(info.value) == (
        "group 'r': resources['a']: gpus must be 0 (none, the default), a fraction between "
        "0 and 1 shared with other experiments (0.5: half of one GPU), or a whole number of "
        f"GPUs of its own (1, 2, ...); got {bad!r}"
    )
    assert info.value.field == "gpus"


@pytest.mark.parametrize("good", [0, 0.25, 1, 1.0, 2, 8])
def test_valid_gpus_resources(good: float) -> None:
    group = xh.ParametrizedExperiments("r", {"a": records_env}, resources={"a": {"gpus": good}})
    assert group.resources_of("a") == {"gpus": good}


def test_slurm_refuses_a_bad_gpus_resource() -> None:
    from xhelpers.backends.slurm.resources import resources_for

    with pytest.raises(ConfigError, match="gpus must be"):
        resources_for(BaseConfig(), {"gpus": 2.5})  # (the mapping: tests/test_slurm_packing.py)


def test_slots_pack_shares_exactly() -> None:
    pool = GpuSlots(["0", "1"])
    tenth = Fraction("0.1")
    held = [pool.take(tenth) for _ in range(10)]
    assert all(h is not None and h.devices == ("0",) for h in held)  # packed: one GPU
    whole = pool.take(Fraction(1))
    assert whole is not None and whole.devices == ("1",)
    assert pool.full() and pool.take(tenth) is None
    pool.give_back(whole)
    assert pool.take(Fraction(2)) is None  # GPU 0 is still held by the tenths
    third = Fraction(str(1 / 3))  # as float 1/3 arrives: three of them still fit
    assert [pool.take(third) is not None for _ in range(4)] == [True, True, True, False]
    for h in held:
        assert h is not None
        pool.give_back(h)
    both = pool.take(Fraction(2))
    assert both is None  # GPU 1 holds the thirds
    assert pool.possible(Fraction(2)) and not pool.possible(Fraction(3))
    assert GpuSlots([]).possible(Fraction(0)) and not GpuSlots([]).possible(Fraction(1, 2))


def test_the_queue_starts_in_order_what_fits_and_looks_again_only_once_dirty() -> None:
    def task(name: str, gpus: float) -> Task:
        return Task(name, name, records_env, "", False, resources={"gpus": gpus})

    pool = GpuSlots(["0"])
    queue = GpuQueue()
    for name, gpus in [("a", 0.5), ("b", 1), ("c", 0.5), ("d", 0.25), ("e", 1)]:
        queue.append(task(name, gpus), Fraction(str(gpus)))
    first = queue.ready(pool, room=4)
    assert [t.name for t, _ in first] == ["a", "c"]  # b waits; c fits and goes first
    assert queue.ready(pool, room=4) == []  # nothing changed: not looked at again
    for _, held in first:
        pool.give_back(held)
    queue.dirty = True  # as the pool says: slots were freed
    assert [t.name for t, _ in queue.ready(pool, room=1)] == ["b"]  # in order, room for one
    queue.dirty = True
    assert queue.ready(pool, room=4) == []  # b holds the GPU: d and e wait
    assert len(queue) == 2


def test_detected_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # (conftest's "": none, before nvidia-smi)
    monkeypatch.setattr(slots, "_smi_listed", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert slots.detect_gpus() == []  # no nvidia-smi: none, and no error
    monkeypatch.setattr(slots, "_smi_listed", None)
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "GPU 0: NVIDIA A100 (UUID: GPU-aaaa)"\n'
        'echo "  MIG 1g.5gb Device 0: (UUID: MIG-bbbb)"\n'
        'echo "GPU 1: NVIDIA A100 (UUID: GPU-cccc)"\n'
    )
    fake.chmod(0o755)
    assert slots.detect_gpus() == ["0", "1"]
    monkeypatch.setattr(slots, "_smi_listed", None)
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert slots.detect_gpus() == []
    for value, expected in [("2,3", ["2", "3"]), ("0,-1,1", ["0"]), ("", []), ("NoDevFiles", [])]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert slots.detect_gpus() == expected, value


def test_unasked_gpus_are_hidden_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that finds GPUs while no experiment asks for one says so (-v); each
    experiment runs without (-j1: in this process, whose environment is as it was
    afterwards)."""
    caplog.set_level(logging.INFO, logger="xhelpers")
    group = xh.ParametrizedExperiments("g", {"a": records_env})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    summary = group(quiet=True)
    assert summary.exit_code == 0
    assert meta(tmp_path / "results/g/a")["returned"]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "this machine has GPUs 0,1, but no experiment of this run asks for one" in caplog.text
    caplog.clear()
    group(quiet=True, force=True, config={"gpus": []})  # none meant: nothing to say
    assert "no experiment of this run asks" not in caplog.text


# -- threads ------------------------------------------------------------------------------
BLAS_RUN = """
{hide}
import numpy  # at the top, as usual: its BLAS is loaded before any worker starts
g = xh.ParametrizedExperiments("t", {{f"e{{i}}": ex.{experiment} for i in range(3)}})
"""
HIDE = 'import sys; sys.modules["threadpoolctl"] = None  # as if not installed, for xhelpers'


def test_blas_is_held_to_the_share_under_every_start_method(
    tmp_path: Path, start_method: str
) -> None:
    """-j2 -w1 on this machine's cores: each experiment's BLAS runs one thread, though
    run.py imported numpy first (fork: inherited, sized; spawn: imported again)."""
    pytest.importorskip("threadpoolctl")
    write_run_py(tmp_path, BLAS_RUN.format(hide="", experiment="blas_threads"))
    (tmp_path / "config.py").write_text(f"class Config:\n    start_method = {start_method!r}\n")
    done = run_py(tmp_path, "t", "-j2", "-w1", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    for i in range(3):
        data = meta(tmp_path / f"results/t/e{i}")
        assert set(data["returned"]["pools"].values()) == {1}, data["returned"]
        assert data["threads"] == dict.fromkeys(THREAD_VARIABLES, "1")
        assert data["returned"]["env"]["OPENBLAS_NUM_THREADS"] == "1"


def test_without_threadpoolctl_a_spawned_worker_still_holds_blas(tmp_path: Path) -> None:
    """Without threadpoolctl only the environment works, and for a spawned worker it is
    enough: the worker has it before it imports run.py, and numpy with it."""
    pytest.importorskip("threadpoolctl")  # (the experiments use it to look)
    write_run_py(tmp_path, BLAS_RUN.format(hide=HIDE, experiment="blas_threads"))
    (tmp_path / "config.py").write_text("class Config:\n    start_method = 'spawn'\n")
    done = run_py(tmp_path, "t", "-j2", "-w1", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    for i in range(3):
        assert set(meta(tmp_path / f"results/t/e{i}")["returned"]["pools"].values()) == {1}


def test_without_threadpoolctl_a_forked_worker_says_it_cannot(tmp_path: Path) -> None:
    """A forked worker inherits numpy's BLAS with its threads counted already: the run
    says so, once, with what to do."""
    write_run_py(tmp_path, BLAS_RUN.format(hide=HIDE, experiment="records_env"))
    (tmp_path / "config.py").write_text("class Config:\n    start_method = 'fork'\n")
    done = run_py(tmp_path, "t", "-j2", "-w1", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("WARNING") == 1
    assert (
        "WARNING numpy was imported before the workers started (fork), so its threads were "
        "counted already and each experiment may use every core: install threadpoolctl "
        "(pip install threadpoolctl) to hold each one to its -w share, or use "
        "start_method 'spawn'"
    ) in done.stderr
    assert meta(tmp_path / "results/t/e0")["threads"]["OPENBLAS_NUM_THREADS"] == "1"
    done = run_py(tmp_path, "t", "-j2", "--force", env=clean_env(OMP_NUM_THREADS="2"))
    assert "WARNING" not in done.stderr  # set by the user: it was sized as they said
    assert meta(tmp_path / "results/t/e0")["threads"]["OPENBLAS_NUM_THREADS"] == "2"


def test_what_the_user_set_is_kept(tmp_path: Path) -> None:
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.records_env})\n')
    done = run_py(tmp_path, "g", "-j2", "-w3", env=clean_env(OPENBLAS_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr
    threads = meta(tmp_path / "results/g/a")["threads"]
    assert threads == {**dict.fromkeys(THREAD_VARIABLES, "3"), "OPENBLAS_NUM_THREADS": "2"}
    done = run_py(tmp_path, "g", "-j2", "--force", env=clean_env(OMP_NUM_THREADS="4"))
    assert done.returncode == 0, done.stderr
    # The generic one, alone: every library follows it, as each would by itself.
    assert meta(tmp_path / "results/g/a")["threads"] == dict.fromkeys(THREAD_VARIABLES, "4")
    policy = ThreadPolicy.of({"OMP_NUM_THREADS": "4,2"})  # a nested list is not a count
    assert policy.variables(1)["MKL_NUM_THREADS"] == "1"
    assert policy.variables(1)["OMP_NUM_THREADS"] == "4,2"


def test_in_process_runs_get_their_share_and_give_it_back(tmp_path: Path) -> None:
    """-j1 runs in this process: its variables and its loaded BLAS at the experiment's
    share while each runs (an experiment's own config.workers too), as before after."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401 - loaded here, sized to this machine
    from experiments import blas_threads

    before = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    group = xh.ParametrizedExperiments(
        "g",
        {
            "one": blas_threads,
            "two": partial(records_env, config={"workers": 2}),
            "env": records_env,
        },
    )
    summary = group(jobs=1, workers=1, quiet=True)
    assert summary.exit_code == 0
    one = meta(tmp_path / "results/g/one")
    assert one["pid"] == os.getpid() and set(one["returned"]["pools"].values()) == {1}
    assert meta(tmp_path / "results/g/two")["threads"]["OMP_NUM_THREADS"] == "2"
    assert meta(tmp_path / "results/g/env")["returned"]["env"]["MKL_NUM_THREADS"] == "1"
    assert all(os.environ.get(name) is None for name in THREAD_VARIABLES)
    after = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    assert after == before


def test_a_workers_own_share_follows_its_experiment(tmp_path: Path, start_method: str) -> None:
    group = xh.ParametrizedExperiments(
        "g", {f"w{i}": partial(records_env, config={"workers": 1 + i % 2}) for i in range(4)}
    )
    summary = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 0
    for i in range(4):
        data = meta(tmp_path / f"results/g/w{i}")
        assert data["returned"]["env"]["OMP_NUM_THREADS"] == str(1 + i % 2)
        assert data["threads"]["NUMEXPR_NUM_THREADS"] == str(1 + i % 2)
        assert data["gpus"] == []


def test_the_metafile_keys_of_a_local_run(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"a": records_env})
    group(jobs=2, quiet=True)
    keys = list(meta(tmp_path / "results/g/a"))
    assert keys.index("config") < keys.index("gpus") < keys.index("threads") < keys.index("ended")
