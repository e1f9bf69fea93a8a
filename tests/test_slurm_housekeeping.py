"""What ``<group>/.slurm/`` keeps (issue 13, point 7): submitit's files of experiments
that succeeded go, those of the others stay, and nothing a queued job needs is touched.

The first tests build a ``.slurm/`` folder and metafiles by hand (no cluster); the
others run ``run.py`` on the real local cluster (scripts/local-slurm) and compare the
folder's listing with the exact set of files that must remain. Waits are bounded polls.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

from xhelpers.backends import Finished
from xhelpers.backends.slurm import housekeeping
from xhelpers.backends.slurm import queue as slurm_queue
from xhelpers.backends.slurm.backend import SlurmBackend
from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task


# -- without a cluster -----------------------------------------------------------------------
def test_file_names_are_submitits() -> None:
    from submitit.core.utils import JobPaths

    for job in ("12_3", "12"):
        paths = JobPaths("/f", job_id=job, task_id=0)
        expected = (paths.submitted_pickle, paths.result_pickle, paths.stdout, paths.stderr)
        assert housekeeping.task_files(job) == tuple(p.name for p in expected)
        assert housekeeping.script_name("12") == paths.submission_file.name


def _metafile(folder: Path, **members: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metafile.json").write_text(json.dumps(members))


def _job(slurm: Path, job: str) -> set[str]:
    names = set(housekeeping.task_files(job))
    for name in names:
        (slurm / name).write_text("")
    return names


def _array(slurm: Path, array: str, tasks: dict[str, Path]) -> tuple[str, set[str]]:
    """A submitted array's script, submitit's link to it and its index."""
    script = slurm / housekeeping.script_name(array)
    script.write_text("#!/bin/bash\n")
    link = f".submission_file_{array}abc.sh"
    (slurm / link).symlink_to(script)
    housekeeping.write_index(slurm, array, {job: str(path) for job, path in tasks.items()})
    return link, {script.name, link, housekeeping.index_name(array)}


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[BaseConfig, Path]:
    config = BaseConfig.with_updates({"output_directory": tmp_path / "out"})
    slurm = tmp_path / "out/g/.slurm"
    slurm.mkdir(parents=True)
    return config, slurm


def test_tidy_removes_only_what_a_success_of_that_very_job_left(
    tree: tuple[BaseConfig, Path],
) -> None:
    config, slurm = tree
    group = slurm.parent
    ok = {"100_0": group / "ok", "100_5": group / "legacy"}
    other = {
        "100_1": group / "running",
        "100_2": group / "rerun",
        "100_3": group / "failed",
        "100_4": group / "requeued",
        "100_6": group / "deleted",
        "100_7": group / "finishing",
    }
    _metafile(ok["100_0"], status="success", ref="100_0", duration=1.5)
    _metafile(ok["100_5"], status="success", slurm_job_id="100_5")  # before the seam's ref
    _metafile(other["100_1"], status="running", ref="100_1")
    _metafile(other["100_2"], status="success", ref="99_2")  # another job's success
    _metafile(other["100_3"], status="failed", ref="100_3")
    _metafile(other["100_4"], status="submitted", ref="100_4", attempts=2)
    # its success recorded, its result not written yet: the job is still at it
    _metafile(other["100_7"], status="success", ref="100_7")
    _, array_files = _array(slurm, "100", {**ok, **other})
    kept = array_files.union(*(_job(slurm, job) for job in other))
    (slurm / "100_7_0_result.pkl").unlink()
    kept.remove("100_7_0_result.pkl")
    gone = set().union(*(_job(slurm, job) for job in ok))
    # a plain job whose experiment succeeded: everything of it goes, script and link too
    _metafile(group / "single", status="success", ref="101")
    gone |= _job(slurm, "101") | _array(slurm, "101", {"101": group / "single"})[1]
    # an index that cannot be read, and jobs of a run without index (slurm_keep_job_files)
    (slurm / housekeeping.index_name("102")).write_text("{not json")
    _metafile(group / "odd", status="success", ref="104_0")
    odd = {"104_0": "../odd", "../104_0": "../odd"}  # file names are made from its keys
    (slurm / housekeeping.index_name("104")).write_text(json.dumps(odd))
    kept |= _job(slurm, "104_0") | {housekeeping.index_name("104")}
    _metafile(group / "kept", status="success", ref="103")
    kept |= _job(slurm, "102_0") | _job(slurm, "103") | {housekeeping.index_name("102")}
    (slurm / "103_submission.sh").write_text("")
    kept.add("103_submission.sh")
    # a pack of such a run is indexed under a name only --cancel reads (who is in it)
    _metafile(group / "packed", status="success", ref="105_0/0")
    housekeeping.write_index(slurm, "105", {"105_0": [str(group / "packed")]}, kept=True)
    kept |= _job(slurm, "105_0") | {housekeeping.index_name("105", kept=True)}
    assert housekeeping.unsettled_slots(slurm, "105_0") == set()  # known: none left

    SlurmBackend.tidy(config.model_copy(update={"slurm_keep_job_files": True}), "g")
    assert set(os.listdir(slurm)) == kept | gone  # the setting keeps everything

    SlurmBackend.tidy(config, "g")
    assert set(os.listdir(slurm)) == kept
    # the index shrinks to the jobs not known to have succeeded: later runs read only those
    index = json.loads((slurm / housekeeping.index_name("100")).read_text())
    assert index == {job: os.path.relpath(path, slurm) for job, path in other.items()}

    _metafile(other["100_3"], status="success", ref="100_3")  # a retry within the same job
    (slurm / "100_7_0_result.pkl").write_text("")  # and the other one's result arrived
    SlurmBackend.tidy(config, "g")
    done = {*housekeeping.task_files("100_3"), *housekeeping.task_files("100_7")}
    assert set(os.listdir(slurm)) == kept - done
    # a runner that read a result took the pickles: the logs alone are no job at work
    for name in housekeeping.task_files("100_4")[:2]:
        (slurm / name).unlink()
    _metafile(other["100_4"], status="success", ref="100_4")
    SlurmBackend.tidy(config, "g")
    assert set(os.listdir(slurm)) == kept - done - set(housekeeping.task_files("100_4"))


def test_the_logs_of_a_success_that_printed_are_kept(tree: tuple[BaseConfig, Path]) -> None:
    config, slurm = tree
    group = slurm.parent
    tasks = {"200_0": group / "quiet", "200_1": group / "printed", "200_2": group / "warned"}
    for job, folder in tasks.items():
        _metafile(folder, status="success", ref=job)
        _job(slurm, job)
    submitit_line = "submitit INFO (2026-12-02 04:18:24,954) - Job completed successfully\n"
    (slurm / "200_0_0_log.err").write_text(submitit_line)
    (slurm / "200_1_0_log.out").write_text("epoch 1: loss 0.3\n")  # a print
    (slurm / "200_2_0_log.err").write_text(submitit_line + "UserWarning: deprecated\n")
    _array(slurm, "200", tasks)
    SlurmBackend.tidy(config, "g")
    assert set(os.listdir(slurm)) == {*logs("200_1"), *logs("200_2")}  # nothing printed is lost


def test_tidy_without_a_slurm_folder_is_nothing(tmp_path: Path) -> None:
    config = BaseConfig.with_updates({"output_directory": tmp_path / "none"})
    SlurmBackend.tidy(config, "g")
    assert not (tmp_path / "none").exists()


def test_every_run_tidies_at_its_start_and_views_never_do(tmp_path: Path) -> None:
    from experiments import no_config

    import xhelpers as xh

    slurm = tmp_path / "results/g/.slurm"
    slurm.mkdir(parents=True)
    _metafile(tmp_path / "results/g/x", status="success", ref="5")
    files = _job(slurm, "5") | _array(slurm, "5", {"5": tmp_path / "results/g/x"})[1]
    group = xh.ParametrizedExperiments("g", {"x": no_config})
    assert [row.name for row in group.status()] == ["x"]
    assert set(os.listdir(slurm)) == files
    summary = group(slurm=True, quiet=True)  # nothing to run: x is done
    assert summary.exit_code == 0 and summary["x"].status == "skipped"
    assert os.listdir(slurm) == []


def test_a_result_another_run_tidied_away_is_read_from_the_metafile(
    tree: tuple[BaseConfig, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments import no_config

    config, slurm = tree
    backend = SlurmBackend(RunContext("g", config, '"xhelpers": "test"'))
    folders = {name: str(slurm.parent / name) for name in ("listed", "ended", "lost")}
    tasks = {
        name: Task(name, folder, no_config, '"function": "f"', False)
        for name, folder in folders.items()
    }
    backend._pending.update(
        {"7_0": [tasks["listed"]], "7_1": [tasks["ended"]], "7_2": [tasks["lost"]]}
    )
    _metafile(Path(folders["listed"]), status="success", ref="7_0", duration=2.0)
    _metafile(Path(folders["ended"]), status="success", ref="7_1")
    _metafile(Path(folders["lost"]), status="success", ref="6_2")  # not this job's
    # seen in a listing, gone before it was read
    (report,) = backend._report("7_0")
    assert isinstance(report, Finished) and report.result.status == results.DONE
    assert report.result.duration == 2.0
    # never seen: the job ended without a result, on two polls in a row
    calls: list[str] = []

    def fake_slurm(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(cmd[0])
        out = "7_1|COMPLETED\n7_2|COMPLETED\n" if cmd[0] == "sacct" else ""  # squeue: gone
        return subprocess.CompletedProcess(cmd, 0, out, "")

    monkeypatch.setattr(slurm_queue, "_run", fake_slurm)
    assert list(backend._collect_lost()) == []
    reports = {r.task.name: r for r in backend._collect_lost()}
    assert isinstance(reports["ended"], Finished)
    assert reports["ended"].result.status == results.DONE
    assert not isinstance(reports["lost"], Finished)  # another job's success says nothing
    assert calls == ["sacct", "squeue"] * 2 and not backend._pending


# -- on the cluster --------------------------------------------------------------------------
RUN = """
names = {
    "ok/a": partial(ex.no_config, value=1),
    "ok/b": partial(ex.write_param, param=7),  # logs a line: its experiment.log has it
    "mix/ok": partial(ex.no_config, value=2),
    "mix/bad": ex.raises,
    "mix/printed": partial(ex.prints, text="printed, not logged"),
    "gate": partial(ex.wait_for_file, started="started", release="../../../release",
                    timeout=120),
    "held": partial(ex.no_config, value=3),
}
g = xh.ParametrizedExperiments("g", names, configcls=ex.TConfig, resources={
    "mix/*": {"cpus_per_task": 2},  # an array of its own
    "held": {"additional_parameters": {"begin": "now+600"}},  # stays pending
})
"""


@pytest.fixture()
def project(tmp_path: Path, slurm_cluster: SlurmCluster) -> Iterator[Path]:
    write_run_py(tmp_path, RUN)
    configure(tmp_path, slurm_cluster)
    yield tmp_path
    scripts = (tmp_path / "results/g/.slurm").glob("*_submission.sh")
    jobs = sorted({p.name.split("_")[0] for p in scripts})
    if jobs:  # whatever this test left queued (held, or gate on a failure)
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60, check=False)


def configure(folder: Path, cluster: SlurmCluster, extra: str = "") -> None:
    (folder / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
        "    slurm_timeout_min = 5\n" + extra
    )


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The node imports the tests' experiment module like the runner does; a PYTHONPATH
    # already set stays after it (it may be what puts this checkout's xhelpers first).
    path = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    return run_py(folder, *args, timeout=180, env=dict(os.environ, PYTHONPATH=path))


def listing(project: Path) -> set[str]:
    return set(os.listdir(project / "results/g/.slurm"))


def ref(project: Path, name: str) -> str:
    return str(meta(project / "results/g" / name)["ref"])


def array_files(project: Path, array: str) -> set[str]:
    """The array's script, submitit's link to it, and its index."""
    slurm = project / "results/g/.slurm"
    script = housekeeping.script_name(array)
    links = {n for n in os.listdir(slurm) if (slurm / n).is_symlink()}
    return {
        script,
        housekeeping.index_name(array),
        *(n for n in links if os.readlink(slurm / n) == str(slurm / script)),
    }


def logs(job: str) -> set[str]:
    return {f"{job}_0_log.out", f"{job}_0_log.err"}


def requeue_time(job: str) -> float:
    """When SLURM requeued ``job`` (its REQUEUED record's end, in whole seconds)."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-D", "-o", "State,End", "-j", job],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    ends = [
        end
        for state, _, end in (line.partition("|") for line in out.split())
        if state == "REQUEUED"
    ]
    assert ends, f"sacct shows no requeue of {job}: {out!r}"
    return datetime.fromisoformat(ends[-1]).timestamp()


def finished(project: Path, name: str) -> bool:
    """Its metafile says success, and its job wrote its result: nothing more of it comes."""
    folder = project / "results/g" / name
    if results.read_status(str(folder)) != results.DONE:
        return False
    return (project / "results/g/.slurm" / f"{meta(folder)['ref']}_0_result.pkl").exists()


def test_a_waited_run_leaves_only_what_did_not_succeed(project: Path) -> None:
    run = cli(project, "g", "ok/*", "mix/*", "--slurm")
    assert run.returncode == 1 and "4 succeeded" in run.stdout and "1 failed" in run.stdout
    bad, printed = ref(project, "mix/bad"), ref(project, "mix/printed")
    array = bad.split("_")[0]
    assert ref(project, "mix/ok").split("_")[0] == array != ref(project, "ok/a").split("_")[0]
    # the ok/* array is gone whole; of mix/*, the failure's logs, the logs of the success
    # that printed (its output is nowhere else) and the array's files
    assert listing(project) == logs(bad) | logs(printed) | array_files(project, array)
    printed_out = project / "results/g/.slurm" / f"{printed}_0_log.out"
    assert "printed, not logged" in printed_out.read_text()
    assert len(array_files(project, array)) == 3
    index = json.loads((project / f"results/g/.slurm/{array}_experiments.json").read_text())
    assert index == {bad: "../mix/bad"}
    data = meta(project / "results/g/ok/b")
    assert data["status"] == "success" and not Path(data["slurm_stdout"]).exists()
    assert "INFO experiments: param=7" in (project / "results/g/ok/b/experiment.log").read_text()
    # srun says so once the job's process has ended, which may be just after its result
    stderr = Path(meta(project / "results/g/mix/bad")["slurm_stderr"])
    wait_until(lambda: "exit code 3" in stderr.read_text(), 30, "srun's line on the exit code")
    # the failure's files stay for good, even once it is retried (as another job)
    again = cli(project, "g", "ok/*", "mix/*", "--slurm")
    assert again.returncode == 1 and "4 skipped" in again.stdout
    retried = ref(project, "mix/bad")
    assert listing(project) == logs(bad) | logs(printed) | array_files(project, array) | logs(
        retried
    ) | array_files(project, retried)


def test_later_runs_tidy_what_a_run_that_did_not_wait_left(project: Path) -> None:
    submitted = cli(project, "g", "ok/*", "gate", "held", "--slurm", "--no-wait")
    assert submitted.returncode == 0 and "4 queued" in submitted.stdout, submitted.stderr
    gate, held = ref(project, "gate"), ref(project, "held")
    array = gate.split("_")[0]
    assert ref(project, "ok/a").split("_")[0] == array and "_" not in held
    wait_until(lambda: (project / "results/g/gate/started").exists(), 90, "gate running")
    # requeued as before a time limit: pending again, it needs its pickle to resume
    subprocess.run(["scancel", "--signal=USR2", gate], check=True, timeout=60)
    wait_until(
        lambda: meta(project / "results/g/gate")["status"] == "submitted", 90, "gate requeued"
    )
    wait_until(lambda: finished(project, "ok/a") and finished(project, "ok/b"), 90, "ok/* done")
    before = listing(project)
    assert set(housekeeping.task_files(ref(project, "ok/a"))) <= before
    gate_array, held_files = array_files(project, array), array_files(project, held)
    assert len(gate_array) == len(held_files) == 3
    assert cli(project, "g", "-l").returncode == 0
    assert cli(project, "g", "--failed").returncode == 0
    assert listing(project) == before  # views write nothing

    # the next run (with nothing to run) removes what the successes left, and nothing else
    nothing = cli(project, "g", "ok/*", "--slurm")
    assert nothing.returncode == 0 and "2 skipped" in nothing.stdout, nothing.stderr
    gate_files = {f"{gate}_submitted.pkl", *logs(gate)}
    held_files.add(f"{held}_submitted.pkl")  # never started: no logs yet
    assert listing(project) == gate_files | gate_array | held_files
    index = json.loads((project / f"results/g/.slurm/{array}_experiments.json").read_text())
    assert index == {gate: "../gate"}

    # the requeued job resumes from the pickle it kept, and its success is tidied next.
    # Not within the second of its requeue: slurmd then still holds the job's old
    # credential revoked and kills the new start ("Job credential revoked"), which
    # SLURM's own hold on a requeued job (BeginTime) avoids; starttime=now lifts it.
    requeued = requeue_time(gate)
    wait_until(lambda: time.time() >= requeued + 1, 5, "a second past the requeue")
    subprocess.run(["scontrol", "update", f"jobid={gate}", "starttime=now"], timeout=60)
    (project / "release").write_text("")
    wait_until(lambda: finished(project, "gate"), 120, "gate done after its requeue")
    assert meta(project / "results/g/gate")["attempts"] == 2
    nothing = cli(project, "g", "ok/*", "--slurm")
    assert nothing.returncode == 0, nothing.stderr
    assert listing(project) == held_files  # held: still pending, still whole
    assert meta(project / "results/g/held")["status"] == "submitted"


def test_keep_job_files_keeps_everything(project: Path, slurm_cluster: SlurmCluster) -> None:
    configure(project, slurm_cluster, "    slurm_keep_job_files = True\n")
    run = cli(project, "g", "ok/*", "--slurm")
    assert run.returncode == 0 and "2 succeeded" in run.stdout, run.stderr
    jobs = [ref(project, "ok/a"), ref(project, "ok/b")]
    array = jobs[0].split("_")[0]
    expected = set().union(*(housekeeping.task_files(job) for job in jobs))
    expected |= array_files(project, array) - {housekeeping.index_name(array)}  # no index
    assert listing(project) == expected
    assert len([n for n in expected if n.startswith(".submission_file_")]) == 1
    data = meta(project / "results/g/ok/a")
    assert data["config"]["slurm_keep_job_files"] is True
    assert Path(data["slurm_stdout"]).exists()
    # what was submitted to be kept stays kept, whatever later runs say
    configure(project, slurm_cluster)
    again = cli(project, "g", "ok/*", "--slurm")
    assert again.returncode == 0 and "2 skipped" in again.stdout
    assert listing(project) == expected
