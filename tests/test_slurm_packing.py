"""Packing: many experiments per SLURM array task, on the real local cluster.

Each test runs ``python run.py ... --slurm`` against the cluster (scripts/local-slurm);
waits are bounded polls on files or metafiles, never fixed sleeps. The pack size, its
walltime estimate and the GPU request are also checked without a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

from xhelpers.backends.slurm import limits, packing, queue
from xhelpers.backends.slurm.resources import gpus_asked, resources_for, sbatch_parameters
from xhelpers.config import BaseConfig
from xhelpers.core.execution import RunContext, Task
from xhelpers.core.packs import DEFAULT_ESTIMATE_S, Walltime, run_pack
from xhelpers.errors import ConfigError


def cli(
    folder: Path, *args: str, timeout: float = 240, environ: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # This checkout's xhelpers first, also in the jobs (sbatch hands them this
    # environment): an installed one, from another checkout, would be tested otherwise.
    path = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    env = dict(os.environ if environ is None else environ, PYTHONPATH=path)
    return run_py(folder, *args, timeout=timeout, env=env)


def configure(folder: Path, cluster: SlurmCluster, **settings: Any) -> None:
    lines = [
        "class Config:",
        f"    slurm_partition = {cluster.partition!r}",
        "    slurm_poll_interval_s = 0.5",
        "    slurm_timeout_min = 5",
    ] + [f"    {key} = {value!r}" for key, value in settings.items()]
    (folder / "config.py").write_text("\n".join(lines) + "\n")


def status(folder: Path) -> str | None:
    try:
        return str(meta(folder)["status"])
    except (OSError, ValueError):
        return None


def scripts(folder: Path) -> list[str]:
    return sorted(p.read_text() for p in folder.glob("*_submission.sh"))


# -- on the cluster ---------------------------------------------------------------------------
def test_a_pack_runs_each_experiment_as_its_own(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # 12 experiments with 2 CPUs per task: packed (sizes from the default estimate and
    # the partition's CPUs), one array; a failure and a crash cost only themselves.
    write_run_py(
        tmp_path,
        """
        names = {f"ok/{i}": partial(ex.write_param, param=i) for i in range(10)}
        names["bad"] = ex.raises
        names["crash"] = ex.hard_exit
        g = xh.ParametrizedExperiments("g", names, configcls=ex.TConfig)
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_cpus_per_task=2)
    proc = cli(tmp_path, "g", "--slurm")
    assert proc.returncode == 1, proc.stderr
    assert "10 succeeded, 0 skipped, 2 failed" in proc.stdout
    group = tmp_path / "results/g"
    metas = {
        p.parent.relative_to(group).as_posix(): json.loads(p.read_text())
        for p in group.glob("**/metafile.json")
    }
    assert len(metas) == 12
    jobs = {m["slurm_job_id"] for m in metas.values()}
    assert len({j.split("_")[0] for j in jobs}) == 1  # one sbatch
    assert len(jobs) < 12  # packed: fewer array tasks than experiments
    for name, m in metas.items():
        slot = m["slurm_pack_slot"]
        assert m["ref"] == f"{m['slurm_job_id']}/{slot}"
        assert m["slurm_pack"]["job"] == m["slurm_job_id"] and m["slurm_pack"]["running"] == 2
        assert m["threads"]["OMP_NUM_THREADS"] == "1"  # 2 CPUs, 2 at once
        if name.startswith("ok/"):
            assert m["status"] == "success" and m["returned"]["param"] == int(name[3:])
    assert metas["bad"]["status"] == "failed" and metas["bad"]["error"]["type"] == "ValueError"
    assert metas["crash"]["status"] == "failed"
    assert metas["crash"]["error"]["type"] == "WorkerDied"
    # -l per experiment, by its own ref
    listed = cli(tmp_path, "g", "-l")
    assert f"{metas['ok/3']['ref']}" in listed.stdout and "10 done, 2 failed" in listed.stdout
    kept = scripts(group / ".slurm")  # the array with failures keeps its script
    assert len(kept) == 1 and "#SBATCH --array=" in kept[0]


def test_dry_run_shows_the_packs_a_run_would_submit(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    write_run_py(
        tmp_path,
        """
        names = {f"ok/{i}": partial(ex.write_param, param=i) for i in range(12)}
        g = xh.ParametrizedExperiments("g", names, configcls=ex.TConfig)
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_cpus_per_task=2)
    cpus = int(
        subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True)
        .stdout.split()[0]
        .split("/")[-1]
    )
    per_task = packing.sizing(12, res(cpus_per_task=2), 1, [], cpus).size
    proc = cli(tmp_path, "g", "--dry-run", "--slurm", timeout=60)
    assert proc.returncode == 0, proc.stderr
    tasks = -(-12 // per_task)
    what = "a job" if tasks == 1 else f"an array of {tasks} tasks"
    assert f"  sbatch A1 (stage 0): {what} of {per_task} experiments: ok/0 ... ok/11; " in (
        proc.stdout
    ), proc.stdout
    assert f"; {per_task} per task (auto: " in proc.stdout, proc.stdout
    assert "each task asks cpus_per_task=2, gpus_per_node=0 and runs 2 at once" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_a_pack_requeues_what_it_has_no_time_for(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # Time limit 1 min, checkpoint signal 10 s before it: a pack may start experiments
    # for 50 s. Each takes 6 s and is estimated at 30 s (recorded by an earlier run):
    # the pack starts what fits, requeues its job with the rest, which then run.
    write_run_py(
        tmp_path,
        """
        names = {f"s/{i}": partial(ex.sleeps, seconds=6) for i in range(6)}
        g = xh.ParametrizedExperiments("g", names)
        """,
    )
    configure(
        tmp_path,
        slurm_cluster,
        slurm_timeout_min=1,
        slurm_signal_delay_s=10,
        slurm_experiments_per_task=6,
    )
    for i in range(6):  # an earlier run that failed after 30 s each
        folder = tmp_path / f"results/g/s/{i}"
        folder.mkdir(parents=True)
        (folder / "metafile.json").write_text('{"status": "failed", "duration": 30}')
    proc = cli(tmp_path, "g", "--slurm")
    assert proc.returncode == 0, proc.stderr
    metas = [meta(tmp_path / f"results/g/s/{i}") for i in range(6)]
    assert all(m["status"] == "success" for m in metas)
    assert len({m["slurm_job_id"] for m in metas}) == 1  # one task, requeued
    attempts = [m["attempts"] for m in metas]
    assert attempts[0] == 1 and attempts[-1] >= 2, attempts


def test_preempted_pack_requeues_its_running_experiments(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    write_run_py(
        tmp_path,
        """
        names = {f"r/{i}": partial(ex.resumes, started="started", release="../../../../release")
                 for i in range(3)}
        g = xh.ParametrizedExperiments("g", names)
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_cpus_per_task=2, slurm_experiments_per_task=3)
    proc = cli(tmp_path, "g", "--slurm", "--no-wait")
    assert proc.returncode == 0, proc.stderr
    group = tmp_path / "results/g"
    wait_until(
        lambda: all((group / f"r/{i}/started").exists() for i in (0, 1)),
        timeout=120,
        what="two experiments of the pack running",
    )
    job = meta(group / "r/0")["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=60)  # preemption
    wait_until(
        lambda: all(status(group / f"r/{i}") == "success" for i in range(2)),
        timeout=150,
        what="the requeued pack resuming its experiments",
    )
    for i in range(2):
        m = meta(group / f"r/{i}")
        assert m["returned"] == "resumed" and m["resumed_from"] == ["checkpoint.txt"]
        assert m["attempts"] == 2 and m["runs"] == 2 and m["slurm_job_id"] == job
    (tmp_path / "release").write_text("")
    wait_until(lambda: status(group / "r/2") == "success", timeout=120, what="the third")
    assert meta(group / "r/2")["slurm_job_id"] == job


def test_cancel_one_experiment_of_a_pack(tmp_path: Path, slurm_cluster: SlurmCluster) -> None:
    write_run_py(
        tmp_path,
        """
        names = {f"w/{i}": partial(ex.wait_for_file, started="started",
                                   release="../../../../release", timeout=120)
                 for i in range(3)}
        g = xh.ParametrizedExperiments("g", names)
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_cpus_per_task=2, slurm_experiments_per_task=3)
    assert cli(tmp_path, "g", "--slurm", "--no-wait").returncode == 0
    group = tmp_path / "results/g"
    wait_until(
        lambda: all((group / f"w/{i}/started").exists() for i in (0, 1)),
        timeout=120,
        what="two experiments of the pack running",
    )
    # w/0 runs, w/2 waits for a free worker of its pack: both cancelled, w/1 runs on.
    proc = cli(tmp_path, "g", "w/0", "w/2", "--cancel")
    assert proc.returncode == 0, proc.stderr
    assert status(group / "w/0") == "interrupted" and status(group / "w/2") == "interrupted"
    assert status(group / "w/1") == "running"
    (tmp_path / "release").write_text("")
    wait_until(lambda: status(group / "w/1") == "success", timeout=60, what="w/1 ending")
    assert not (group / "w/2/started").exists()  # never started
    listed = cli(tmp_path, "g", "-l").stdout
    assert "1 done, 2 interrupted" in listed


def sacct_state(job: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", job.split("_")[0]],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return next((s for j, _, s in (ln.partition("|") for ln in out.splitlines()) if j == job), "")


@pytest.mark.parametrize("keep", [False, True], ids=["tidied", "kept-files"])
def test_cancel_of_all_a_pack_has_left_cancels_its_job(
    tmp_path: Path, slurm_cluster: SlurmCluster, keep: bool
) -> None:
    # One pack of 4, 2 at once: w/0 succeeds at once, w/1 and w/2 then run, w/3 waits
    # for a free worker. Cancelling the group covers all the pack has left: its job goes
    # (files kept too: who is in the pack is in an index no clean-up reads).
    write_run_py(
        tmp_path,
        """
        names = {"w/0": ex.no_config}
        names.update({f"w/{i}": partial(ex.wait_for_file, started="started",
                                        release="../../../../release", timeout=120)
                      for i in range(1, 4)})
        g = xh.ParametrizedExperiments("g", names)
        """,
    )
    configure(
        tmp_path,
        slurm_cluster,
        slurm_cpus_per_task=2,
        slurm_experiments_per_task=4,
        slurm_keep_job_files=keep,
    )
    assert cli(tmp_path, "g", "--slurm", "--no-wait").returncode == 0
    group = tmp_path / "results/g"
    indexes = sorted(p.name.split("_", 1)[1] for p in (group / ".slurm").glob("*_experiments*"))
    assert indexes == (["experiments.kept.json"] if keep else ["experiments.json"])
    wait_until(
        lambda: (
            status(group / "w/0") == "success"
            and all((group / f"w/{i}/started").exists() for i in (1, 2))
        ),
        timeout=120,
        what="w/0 done, w/1 and w/2 running",
    )
    job = meta(group / "w/1")["slurm_job_id"]
    proc = cli(tmp_path, "g", "--cancel")
    assert proc.returncode == 0, proc.stderr
    # the job itself was cancelled: it did not end by itself once its experiments had
    wait_until(
        lambda: sacct_state(job).startswith("CANCELLED"), timeout=60, what=f"job {job} cancelled"
    )
    statuses = {i: status(group / f"w/{i}") for i in range(4)}
    assert statuses == {0: "success", 1: "interrupted", 2: "interrupted", 3: "interrupted"}
    assert meta(group / "w/3")["error"]["state"] == "CANCELLED"
    assert not (group / "w/3/started").exists()  # never started
    listed = cli(tmp_path, "g", "-l").stdout
    assert "1 done, 3 interrupted" in listed and "submitted" not in listed, listed


def test_packed_pipeline_blocks_only_the_downstreams_of_a_failure(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    write_run_py(
        tmp_path,
        """
        train = xh.ParametrizedExperiments(
            "train", {f"{i}": (partial(ex.raises) if i == 1 else partial(ex.no_config, value=i))
                      for i in range(4)})
        ev = xh.ParametrizedExperiments(
            "eval", {f"{i}": partial(ex.evaluates, i=i, value=xh.upstream("train", f"{i}"))
                     for i in range(4)})
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_experiments_per_task=2)
    proc = cli(tmp_path, "eval", "--slurm")
    assert proc.returncode == 1, proc.stderr
    assert status(tmp_path / "results/eval/1") == "blocked"
    for i in (0, 2, 3):
        assert status(tmp_path / f"results/eval/{i}") == "success", i
    kept = scripts(tmp_path / "results/eval/.slurm")  # both stages' arrays: failures in each
    assert sorted("#SBATCH --dependency=afterany:" in s for s in kept) == [False, True]


def cluster_gpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True).stdout
    return sum(int(g.split(":")[-1]) for g in out.split() if g.startswith("gpu:"))


def test_gpus_reach_slurm_and_are_split_in_a_pack(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    if cluster_gpus() < 2:  # scripts/local-slurm makes fake ones where mknod is allowed
        pytest.skip("the local cluster advertises no GPUs (GRES): mknod was refused")
    write_run_py(
        tmp_path,
        """
        names = {f"half/{i}": ex.records_env for i in range(4)}
        names["two"] = ex.records_env
        g = xh.ParametrizedExperiments("g", names, resources={
            "half/*": {"gpus": 0.5, "cpus_per_task": 2, "experiments_per_task": 4},
            "two": {"gpus": 2},
        })
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_keep_job_files=True)
    proc = cli(tmp_path, "g", "--slurm")
    assert proc.returncode == 0, proc.stderr
    group = tmp_path / "results/g"
    two = meta(group / "two")
    assert two["returned"]["env"]["CUDA_VISIBLE_DEVICES"].count(",") == 1  # SLURM gave 2
    assert two["gpus"] == two["returned"]["env"]["CUDA_VISIBLE_DEVICES"].split(",")
    halves = [meta(group / f"half/{i}") for i in range(4)]
    assert len({m["slurm_job_id"] for m in halves}) == 1  # one pack, 2 at once, 1 GPU
    visible = {m["returned"]["env"]["CUDA_VISIBLE_DEVICES"] for m in halves}
    assert len(visible) == 1 and "," not in next(iter(visible))  # the pack's one GPU, shared
    assert all(m["gpus"] == [next(iter(visible))] for m in halves)
    sent = "\n".join(scripts(group / ".slurm"))
    assert "#SBATCH --gpus-per-node=1" in sent and "#SBATCH --gpus-per-node=2" in sent


def test_an_unpacked_task_starts_with_its_cpus_as_thread_counts(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # Each job script exports the variables at cpus_per_task before Python starts (and
    # imports numpy through submitit); one the user set is hers; her setup lines win.
    write_run_py(
        tmp_path,
        """
        names = {"two": ex.records_env, "one": ex.records_env}
        g = xh.ParametrizedExperiments("g", names, resources={
            "two": {"cpus_per_task": 2},
            "one": {"setup": ["export OPENBLAS_NUM_THREADS=5"]},
        })
        """,
    )
    configure(tmp_path, slurm_cluster, slurm_experiments_per_task=1)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = cli(tmp_path, "g", "--slurm", environ={**env, "MKL_NUM_THREADS": "3"})
    assert proc.returncode == 0, proc.stderr
    two, one = meta(tmp_path / "results/g/two"), meta(tmp_path / "results/g/one")
    assert two["returned"]["env"]["OMP_NUM_THREADS"] == "2"
    assert two["returned"]["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert two["returned"]["env"]["MKL_NUM_THREADS"] == "3"  # the user's
    assert one["returned"]["env"]["OMP_NUM_THREADS"] == "1"
    assert one["returned"]["env"]["OPENBLAS_NUM_THREADS"] == "5"  # her setup line
    for m in (two, one):  # the metafile says what the process had
        assert "slurm_pack" not in m
        recorded = {k: v for k, v in m["returned"]["env"].items() if k.endswith("_THREADS")}
        assert {k: m["threads"][k] for k in recorded} == recorded


def test_a_task_loads_numpy_first_only_if_run_py_did(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    # submitit's runner imports numpy before the task's pickle (an MKL numpy must come
    # before torch); xhelpers' does so only if run.py had loaded numpy where it was sent.
    body = """
        names = {"loaded": ex.numpy_loaded, "sum": ex.numpy_sum}
        g = xh.ParametrizedExperiments("g", names)
        """
    write_run_py(tmp_path, body)
    configure(tmp_path, slurm_cluster, slurm_experiments_per_task=1)
    proc = cli(tmp_path, "g", "--slurm")
    assert proc.returncode == 0, proc.stderr
    assert meta(tmp_path / "results/g/loaded")["returned"] is False
    assert meta(tmp_path / "results/g/sum")["returned"] == 3.0  # imported by itself
    write_run_py(tmp_path, "import numpy\n" + textwrap.dedent(body))
    proc = cli(tmp_path, "g", "loaded", "--slurm", "--force")
    assert proc.returncode == 0, proc.stderr
    assert meta(tmp_path / "results/g/loaded")["returned"] is True


# -- without a cluster ----------------------------------------------------------------------
def res(**settings: Any) -> dict[str, Any]:
    return resources_for(BaseConfig(), settings or None)


def test_pack_size_follows_durations_target_and_the_clusters_spread() -> None:
    base = res()
    assert packing.sizing(1000, res(experiments_per_task=7), 1, [], 8).size == 7
    assert packing.sizing(1000, res(experiments_per_task=1), 1, [], 8).size == 1
    # unknown durations: the default estimate fills the 10-minute target...
    assert packing.sizing(100_000, base, 1, [], None).size == int(600 / DEFAULT_ESTIMATE_S)
    # ... but never fewer tasks than the cluster runs at once (8 CPUs, 1 each)
    assert packing.sizing(1000, base, 1, [0.01], 8).size == 125
    # recorded minutes each: one per task
    assert packing.sizing(1000, base, 1, [600.0], 8).size == 1
    # two CPUs per task, one thread each: two at once, twice as many per task
    assert packing.sizing(10_000, res(cpus_per_task=2), 1, [60.0], None).size == 20
    with pytest.raises(ConfigError, match=r"slurm_pack_target_min=10 .*partition"):
        packing.sizing(1000, base, 1, [], 8, partition_limit_min=5)


def test_packs_are_even() -> None:
    tasks = [Task(f"t{i}", f"/x/{i}", print, "", False) for i in range(10)]
    sizes = [len(p) for p in packing.split(tasks, 4)]
    assert sizes == [4, 3, 3] and [t for p in packing.split(tasks, 4) for t in p] == tasks


def test_walltime_starts_only_what_fits() -> None:
    first, second = (Task(n, f"/x/{n}", print, "", False) for n in ("a", "b"))
    wall = Walltime(50.0, {"/x/a": 30.0}, started_at=0.0)
    assert wall.fits(first, now=45.0)  # the first always starts
    wall.started()
    assert wall.fits(first, now=20.0) and not wall.fits(first, now=21.0)
    assert wall.estimate(second) == DEFAULT_ESTIMATE_S
    wall.ended(2.0)
    assert wall.estimate(second) == 2.0  # the mean of this pack's ends


def test_slurm_time_limits_parse() -> None:
    assert limits._minutes("30") == 30 and limits._minutes("1:30:00") == 90
    assert limits._minutes("2-00:00:00") == 2880 and limits._minutes("infinite") is None


def test_gpus_are_asked_of_slurm_per_task() -> None:
    assert "gpus_per_node" not in sbatch_parameters(res(), "g")
    assert sbatch_parameters(res(gpus=1), "g")["gpus_per_node"] == 1
    assert sbatch_parameters(res(gpus=2), "g", running=2)["gpus_per_node"] == 4
    assert gpus_asked(res(gpus=0.5), running=4) == 2  # fractions share a device
    assert gpus_asked(res(gpus=0.5), running=3) == 2
    assert gpus_asked(res(gpus=0, gpus_per_node=2)) == 2  # set by hand, kept
    assert res(gpus=1) != res()  # experiments needing GPUs get arrays of their own


def test_a_pack_splits_its_gpus_between_its_experiments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a pack does on its node, without SLURM: the task's GPUs (SLURM's
    # CUDA_VISIBLE_DEVICES) go to its experiments through the local slot pool.
    import experiments as ex

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    config = BaseConfig(output_directory=tmp_path / "results")
    ctx = RunContext("g", config, '"backend": "slurm"', root=str(tmp_path / "results"))
    tasks = [
        Task(
            f"e{i}",
            str(tmp_path / f"results/g/e{i}"),
            ex.records_env,
            '"function": "records_env"',
            False,
            resources={"gpus": 1 if i < 2 else 0.5},
            job=(f"9_0/{i}", f'"ref": "9_0/{i}", "slurm_pack_slot": {i}'),
        )
        for i in range(4)
    ]
    outcome = run_pack(tasks, ctx, jobs=2, walltime=Walltime(600.0))
    assert sorted(r.status for r in outcome.results.values()) == ["success"] * 4
    assert not outcome.left
    seen = []
    for i, task in enumerate(tasks):
        m = meta(Path(task.folder))
        visible = m["returned"]["env"]["CUDA_VISIBLE_DEVICES"]
        assert m["ref"] == f"9_0/{i}" and m["gpus"] == visible.split(",")
        seen.append(visible)
    assert sorted(seen[:2]) == ["3", "5"]  # a whole GPU each
    assert all(v in ("3", "5") for v in seen[2:])  # halves of one


def test_bad_pack_settings_are_one_line_errors(tmp_path: Path) -> None:
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.no_config})\n')
    for line, field in (
        ("slurm_experiments_per_task = 0", "slurm_experiments_per_task"),
        ("slurm_pack_target_min = -1", "slurm_pack_target_min"),
    ):
        (tmp_path / "config.py").write_text(f"class Config:\n    {line}\n")
        proc = cli(tmp_path, "g", "--slurm", timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert field in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "results/g/a").exists()


def faked_backend(tmp_path: Path, cpus: int, **settings: Any) -> Any:
    """A SlurmBackend told its cluster (MaxArraySize 4, ``cpus`` CPUs) instead of asking
    it; its sbatch calls are recorded, not made: ([(dependency, packs)], the backend)."""
    from xhelpers.backends.slurm.backend import SlurmBackend

    config = BaseConfig(output_directory=tmp_path / "results", **settings)
    backend = SlurmBackend(RunContext("g", config, "", root=str(tmp_path / "results")))
    backend._cluster_max = 4
    backend._capacity[None] = (cpus, None)
    sent: list[tuple[str, list[list[str]]]] = []
    backend.running_sent = []  # how many each call's tasks run at once

    def submit(res: Any, batch: Any, calls: Any, running: int, folders: Any) -> list[str]:
        backend.running_sent.append(running)
        number = len(sent) + 1
        sent.append((batch.dependency, [[t.name for t in call.tasks] for call in calls]))
        return [str(number)] if len(calls) == 1 else [f"{number}_{i}" for i in range(len(calls))]

    backend._submit = submit
    return sent, backend


def staged(tmp_path: Path, count: int) -> list[Task]:
    train = [
        Task(f"train/{i}", str(tmp_path / f"results/g/train/{i}"), print, "", False)
        for i in range(count)
    ]
    evals = [
        Task(
            f"eval/{i}",
            str(tmp_path / f"results/g/eval/{i}"),
            print,
            "",
            False,
            after=(train[i].folder,),
        )
        for i in range(count)
    ]
    return train + evals


def test_dry_run_shows_the_packs_submit_makes(tmp_path: Path) -> None:
    # 20 experiments per stage, 2 CPUs per task on a partition of 4: the 10-minute
    # target would take 120 per task, the 2 tasks that run at once take 10 each.
    sent, backend = faked_backend(tmp_path, cpus=4, slurm_cpus_per_task=2)
    tasks = staged(tmp_path, 20)
    lines = backend.preview(tasks)
    backend.submit(tasks)
    assert len(lines) == len(sent) == 2
    assert lines[0].startswith(
        "sbatch A1 (stage 0): an array of 2 tasks of 10 experiments: train/0 ... train/19; "
        "10 per task (auto: 120 fill slurm_pack_target_min=10 at 10 s each, the default "
        "estimate (none recorded), 2 at once; capped at 10 to spread 20 over 2 tasks at "
        "once (the partition's 4 CPUs, 2 per task)); each task asks cpus_per_task=2, "
        "gpus_per_node=0 and runs 2 at once; "
    ), lines[0]
    assert lines[1].startswith("sbatch A2 (stage 1): an array of 2 tasks of 10 experiments")
    assert lines[1].endswith("; --dependency=afterany:A1"), lines[1]
    assert sent[1][0] == "afterany:1" and [len(p) for _, packs in sent for p in packs] == [10] * 4


def test_dry_run_shows_fixed_packs_split_at_max_array_size(tmp_path: Path) -> None:
    sent, backend = faked_backend(tmp_path, cpus=64, slurm_experiments_per_task=3)
    tasks = [
        Task(
            f"e/{i}",
            str(tmp_path / f"results/g/e/{i}"),
            print,
            "",
            False,
            resources={"gpus": 0.5, "cpus_per_task": 4} if i >= 14 else None,
        )
        for i in range(16)
    ]
    lines = backend.preview(tasks)
    backend.submit(tasks)
    # 14 in 5 packs of 2-3: an array of 4 and one of 1 (MaxArraySize 4); 2 with GPUs: a job
    assert [line.split(":", 1)[0] for line in lines] == [
        "sbatch A1 (stage 0)",
        "sbatch A2 (stage 0)",
        "sbatch A3 (stage 0)",
    ]
    assert (
        "an array of 4 tasks of 3 experiments: e/0 ... e/11; 3 per task (fixed by "
        "slurm_experiments_per_task=3)" in lines[0]
    ), lines[0]
    assert "a job of 2 experiments: e/12 ... e/13; " in lines[1], lines[1]
    assert "a job of 2 experiments: e/14 ... e/15; " in lines[2], lines[2]
    # a pack of 2 runs 2 at once (not the 4 its CPUs allow), so asks GPUs for 2 x 0.5
    assert "each task asks cpus_per_task=4, gpus_per_node=1 and runs 2 at once" in lines[2]
    assert [[len(p) for p in packs] for _, packs in sent] == [[3, 3, 3, 3], [2], [2]]
    assert backend.running_sent == [1, 1, 2]  # as shown: what submit asks SLURM for


def test_dry_run_says_why_nothing_is_packed(tmp_path: Path) -> None:
    _, backend = faked_backend(tmp_path, cpus=64)
    tasks = staged(tmp_path, 3)
    lines = backend.preview(tasks)
    assert lines[0].startswith(
        "sbatch A1 (stage 0): an array of 3: train/0 ... train/2; 1 per task (auto: 60 "
    ), lines[0]
    assert "capped at 1 to spread 3 over 64 tasks at once" in lines[0], lines[0]
    assert lines[1].endswith("--dependency=aftercorr:A1"), lines[1]


def test_who_a_pack_has_left_is_read_from_its_index(tmp_path: Path) -> None:
    from xhelpers.backends.slurm import housekeeping

    slurm = tmp_path / "g/.slurm"
    slurm.mkdir(parents=True)
    folders = [str(tmp_path / f"g/e{i}") for i in range(4)]
    for slot, (folder, state) in enumerate(
        zip(folders, ["success", "running", "submitted", "submitted"], strict=True)
    ):
        os.makedirs(folder)
        ref = "7_1/9" if slot == 3 else f"7_1/{slot}"  # e3: since submitted by another job
        Path(folder, "metafile.json").write_text(json.dumps({"status": state, "ref": ref}))
    housekeeping.write_index(slurm, "7", {"7_0": [folders[0]], "7_1": folders})
    assert housekeeping.unsettled_slots(slurm, "7_1") == {1, 2}
    assert housekeeping.unsettled_slots(slurm, "7_0") == set()
    assert housekeeping.unsettled_slots(slurm, "7_2") is None  # not a job of the index
    assert housekeeping.unsettled_slots(tmp_path, "7_1") is None  # no index there


def test_cancel_takes_a_packs_job_only_with_all_it_has_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = str(tmp_path / ".slurm/.submission_file_x.sh")
    cancelled: list[list[str]] = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        if cmd[0] == "scancel":
            cancelled.append(cmd[1:])
        out = f"5_0|RUNNING|None|{script}\n5_1|PENDING|Priority|{script}\n"
        return subprocess.CompletedProcess(cmd, 0, out if cmd[0] == "squeue" else "", "")

    monkeypatch.setattr(queue, "_run", run)
    left = {"5_0": {0, 1, 2}, "5_1": {0}}
    asked: list[Path] = []

    def unsettled(folder: Path, job: str) -> set[int]:
        asked.append(folder)
        return left[job]

    refs = ["5_0/0", "5_0/2", "5_1/0"]
    assert queue.slurm_cancel(refs, unsettled) == dict.fromkeys(refs, True)
    assert cancelled == [["5_1"]] and set(asked) == {tmp_path / ".slurm"}
    cancelled.clear()
    assert queue.slurm_cancel(["5_0/1", "5_0/0", "5_0/2"], unsettled)["5_0/1"]
    assert cancelled == [["5_0"]]
