"""Soak: many runners on one group under random SIGKILLs; every experiment succeeds once.

Several ``python run.py g -jN`` runners start at once on one group of many tiny
experiments while workers and runners are SIGKILLed at random moments and runners are
restarted until everything is done. A scanner reads every metafile all along. Then
each experiment's own append-only log is checked against its final metafile.

What "exactly once" means under SIGKILL: a run is an ``S`` line (and its ``E`` line when
it completed) in the experiment's ``runs.log``. A run whose process was killed reruns,
legitimately. What must never happen:

- two runs of one experiment overlapping in time: runs are contiguous blocks in the log,
  and the metafile a run reads at its end is the one it read at its start, or its own
  ``running`` one (nobody else wrote it meanwhile; a worker writes ``running`` only
  after a moment, so a short run usually sees the record before it);
- a run starting after its experiment's success was recorded: no run sees ``success``
  at its start (so it read the metafile under the lock), each run's ``runs`` count
  (``xh.current_experiment().runs``) never goes down (it stays when the run before was
  killed with its runner before anything recorded it), a completed run is followed by
  another only if the soak killed its process (or its runner), and the scanner never
  sees a success replaced;
- anything but one recorded success: the final metafile is ``success`` and names the
  last run, which completed.

Also: every metafile is complete JSON whenever it exists, runners the soak did not kill
exit 0 or 1 without a traceback, a last run skips everything and runs nothing, and no
process of the soak outlives its runners.

``XHELPERS_SOAK=long`` (``make soak``) runs it for minutes; by default it is short and
part of the suite. ``XHELPERS_SOAK_SEED`` replays a chaos schedule: the pauses and the
choices of what to kill (which process that hits, and how runs interleave, is the
machine's).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import write_run_py


@dataclass(frozen=True)
class Size:
    experiments: int
    runners: int  # alive at once during the chaos
    jobs: int  # -jN of each runner
    chaos_s: float  # kills stop after this long (or once everything succeeded)
    pause_s: tuple[float, float]  # between two kills
    runner_kill_share: float  # of the kills; the rest hit workers
    flock_share: float  # of the fcntl.flock calls, those delayed
    flock_delay_s: float  # the largest random delay put before them
    work_s: float  # the largest random time an experiment takes


SIZES = {
    # 2 cores: 4 runners x -j2 is plenty of contention. About 15 s in all, and it hits
    # finding 1 dozens of times when that comes back (a run without it: 30 to 50).
    "short": Size(1000, 4, 2, 10.0, (0.02, 0.3), 0.3, 0.3, 0.02, 0.003),
    # make soak: minutes of it; longer experiments, so more kills land inside one.
    "long": Size(25000, 4, 2, 300.0, (0.02, 1.0), 0.3, 0.3, 0.02, 0.01),
}
SOAK = os.environ.get("XHELPERS_SOAK", "short")
SIZE = SIZES[SOAK]

# The run.py of the soak. fcntl.flock is looked up at call time by the library, so
# wrapping it here delays every lock attempt (in the runner and in its forked
# workers) by a random moment: that widens the window between making a lock file and
# taking its lock, in which finding 1 (a second runner succeeds the experiment
# meanwhile, and the first runs it again) happens, so the short soak hits it often.
RUN_PY = """
import fcntl
import json
import os
import random
import time

_flock = fcntl.flock


def _delayed_flock(fd, operation):
    if random.random() < {flock_share!r}:
        time.sleep(random.uniform(0, {flock_delay_s!r}))
    return _flock(fd, operation)


fcntl.flock = _delayed_flock


def _metafile():
    try:
        with open("metafile.json", "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None, None, None
    return data.get("status"), data.get("pid"), data.get("runs")


def _log(line):
    # One write with O_APPEND: lines of concurrent runs never mix within a line, and
    # their order is the order the runs wrote them in.
    fd = os.open("runs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def soak_step(index):
    pid = os.getpid()
    token = f"{{pid}}-{{os.urandom(4).hex()}}"  # pids repeat across the soak; tokens not
    status, owner, _ = _metafile()
    runs = xh.current_experiment().runs
    _log(f"S {{token}} {{pid}} {{os.getsid(0)}} {{runs}} {{status}} {{owner}}\\n")
    time.sleep(random.uniform(0, {work_s!r}))
    status, owner, _ = _metafile()
    _log(f"E {{token}} {{pid}} {{status}} {{owner}}\\n")


g = xh.ParametrizedExperiments(
    "g", {{f"s{{i // 100:03d}}/e{{i:05d}}": partial(soak_step, i) for i in range({n})}}
)
"""

STATUSES = {"running", "success", "failed", "interrupted"}


def names(n: int) -> list[str]:
    return [f"s{i // 100:03d}/e{i:05d}" for i in range(n)]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (session id, state) of every process, from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        found[int(entry)] = (int(fields[3]), fields[0])
    return found


def describe_process(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} ({cmd}; state {fields[0]}, parent {fields[1]}, session {fields[3]})"


def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    """conftest.wait_until that answers instead of failing: the soak reports all it found."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def scan(folders: list[str], stop: Any, out: Connection) -> None:
    """Read every metafile over and over until ``stop`` is set; send what was wrong.

    Each one that exists must be complete JSON with a known status (writes go to a
    temporary file renamed over it, so a reader sees the old or the new, never half),
    and once one says success it must never change again: nothing reruns a success.
    """
    violations: list[tuple[str, str]] = []
    success: dict[str, tuple[Any, Any, Any]] = {}
    sweeps = reads = 0
    while not stop.is_set():
        for folder in folders:
            try:
                with open(os.path.join(folder, "metafile.json"), "rb") as f:
                    raw = f.read()
            except FileNotFoundError:  # not started yet: fine
                continue
            reads += 1
            try:
                data = json.loads(raw)
            except ValueError as exc:
                violations.append(("metafile not valid JSON", f"{folder}: {exc}: {raw!r}"))
                continue
            status = data.get("status") if isinstance(data, dict) else None
            if status not in STATUSES:
                violations.append(("metafile without a known status", f"{folder}: {raw!r}"))
                continue
            seen = (status, data.get("pid"), data.get("started"))
            first = success.get(folder)
            if first is not None and seen != first:
                change = f"{folder}: {first} then {seen}"
                violations.append(("metafile changed after success", change))
                success[folder] = seen  # reported once, not at every sweep
            elif first is None and status == "success":
                success[folder] = seen
        sweeps += 1
        stop.wait(0.005)  # leave the cores to the runners a little: the scan's pace
    out.send((violations[:1000], sweeps, reads))


class Scanner:
    """:func:`scan` in a process of its own: as a thread it would hold the test's GIL
    most of the time, and the chaos loop's kills would come late and few."""

    def __init__(self, folders: list[Path]) -> None:
        mp = multiprocessing.get_context("spawn")  # not a fork of pytest and its threads
        self._stop = mp.Event()
        self._results, there = mp.Pipe(duplex=False)
        self._proc = mp.Process(
            target=scan, args=([str(f) for f in folders], self._stop, there), daemon=True
        )
        self._proc.start()
        there.close()
        self.violations: list[tuple[str, str]] = []
        self.sweeps = self.reads = 0

    def finish(self) -> None:
        self._stop.set()
        if self._results.poll(120):  # a sweep of the long soak's folders takes seconds
            self.violations, self.sweeps, self.reads = self._results.recv()
        else:
            self.violations = [("scanner never reported", f"exit code {self._proc.exitcode}")]
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


@dataclass
class Runner:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Soak:
    root: Path
    rng: random.Random
    folders: list[Path]
    runners: list[Runner] = field(default_factory=list)
    killed_pids: set[int] = field(default_factory=set)  # workers killed directly
    killed_sessions: set[int] = field(default_factory=set)  # runners killed (session = pid)
    kills: Counter[str] = field(default_factory=Counter)
    # In the environment of every runner, so of all it starts: what leaves the
    # runner's session (a helper started with a session of its own) is still found.
    tag: str = field(default_factory=lambda: os.urandom(8).hex())

    def start_runner(self) -> Runner:
        k = len(self.runners)
        out, err = self.root / f"runner-{k}.out", self.root / f"runner-{k}.err"
        with out.open("wb") as o, err.open("wb") as e:
            files: tuple[IO[bytes], IO[bytes]] = (o, e)
            proc = subprocess.Popen(
                [sys.executable, "run.py", "g", f"-j{SIZE.jobs}"],
                cwd=self.root,
                env={**os.environ, "XHELPERS_SOAK_TAG": self.tag},
                stdout=files[0],
                stderr=files[1],
                # Its own session: every process it starts stays in it (workers only
                # make process groups), orphaned or not, so /proc tells what is ours.
                start_new_session=True,
            )
        runner = Runner(proc, out, err)
        self.runners.append(runner)
        return runner

    def live(self) -> list[Runner]:
        return [r for r in self.runners if r.proc.poll() is None]

    def leftovers(self) -> list[int]:
        """Live processes of the soak: in a runner's session, or with the soak's tag."""
        sessions = {r.pid for r in self.runners}
        mark = f"XHELPERS_SOAK_TAG={self.tag}".encode()
        found = []
        for pid, (sid, state) in processes().items():
            if state == "Z" or pid == os.getpid():
                continue
            if sid in sessions:
                found.append(pid)
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:  # gone, or not ours to read
                continue
            if mark in environ:
                found.append(pid)
        return found

    def kill_something(self) -> None:
        live = self.live()
        staffed: dict[int, list[int]] = {r.pid: [] for r in live}
        for pid, (sid, state) in sorted(processes().items()):
            if sid in staffed and pid != sid and state != "Z":  # a worker of a live runner
                staffed[sid].append(pid)
        workers = [pid for pids in staffed.values() for pid in pids]
        if self.rng.random() >= SIZE.runner_kill_share:
            if workers:  # none while the runners still start up: no kill this time
                victim = self.rng.choice(workers)
                self.killed_pids.add(victim)
                self.kills["worker"] += 1
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        # Mostly a runner with workers (what becomes of them is the library's business:
        # they must not outlive it for long), sometimes one still starting up.
        busy = [r for r in live if staffed[r.pid]]
        pool = busy if busy and self.rng.random() < 0.8 else live
        if not pool:
            return
        runner = self.rng.choice(pool)
        runner.killed = True
        self.killed_sessions.add(runner.pid)
        self.kills["runner"] += 1
        runner.proc.kill()  # SIGKILL to the runner alone, never its group
        runner.proc.wait(timeout=30)

    def done(self) -> int:
        count = 0
        for folder in self.folders:
            try:
                count += (folder / "metafile.json").read_bytes().startswith(b'{"status": "success"')
            except FileNotFoundError:
                pass
        return count


def check_runs(folder: Path, soak: Soak) -> list[tuple[str, str]]:
    """What is wrong with the runs of one experiment (see the module's docstring)."""
    name = "/".join(folder.parts[-2:])
    found: list[tuple[str, str]] = []
    meta = json.loads((folder / "metafile.json").read_text())
    if meta.get("status") != "success":
        found.append(("not success at the end", f"{name}: {meta.get('status')}"))
    try:
        lines = (folder / "runs.log").read_text().splitlines()
    except FileNotFoundError:
        lines = []
    # runs: token -> [S fields, E fields or None], in the order they started
    runs: dict[str, list[list[str] | None]] = {}
    order: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) not in (5, 7) or fields[0] not in ("S", "E"):
            found.append(("malformed log line", f"{name}: {line!r}"))
            continue
        kind, token = fields[0], fields[1]
        if kind == "S":
            if token in runs:
                found.append(("run started twice", f"{name}: {token}"))
                continue
            runs[token] = [fields, None]
            order.append(token)
        else:
            if token not in runs or runs[token][1] is not None:
                found.append(("end without its start", f"{name}: {line!r}"))
                continue
            if order[-1] != token:
                found.append(("runs overlapped", f"{name}: {token} ended after {order[-1]} began"))
            runs[token][1] = fields
    if not order:
        found.append(("success without a run", name))
        return found
    previous_runs = 0
    for i, token in enumerate(order):
        start, end = runs[token]
        assert start is not None
        pid, sid = int(start[2]), int(start[3])
        if start[5] == "success":
            found.append(("ran after its success was recorded", f"{name}: {start}"))
        if end is not None and end[3:] not in (start[5:], ["running", start[2]]):
            found.append(("metafile written by another at its end (overlap)", f"{name}: {end}"))
        count = int(start[4]) if start[4].isdigit() else 0
        if count < previous_runs:
            found.append(
                (
                    "ran without re-reading the metafile (runs went down)",
                    f"{name}: run {i + 1} of {len(order)} says runs={start[4]} after "
                    f"runs={previous_runs}; log: {lines}",
                )
            )
        previous_runs = max(previous_runs, count)
        # A completed run records its success unless its process dies first: only a
        # kill by the soak (of it, or of its runner, whose workers may die with it)
        # excuses a run after it.
        killed = pid in soak.killed_pids or sid in soak.killed_sessions
        if end is not None and i < len(order) - 1 and not killed:
            found.append(
                (
                    "completed, not killed, yet ran again",
                    f"{name}: run {token} completed; log: {lines}",
                )
            )
    start, end = runs[order[-1]]
    assert start is not None
    if end is None:
        found.append(("last run never completed", f"{name}: {lines}"))
    if str(meta.get("pid")) != start[2] or str(meta.get("runs")) != start[4]:
        found.append(
            (
                "recorded success is not the last run",
                f"{name}: pid={meta.get('pid')} runs={meta.get('runs')}; log: {lines}",
            )
        )
    return found


def report(seed: int, soak: Soak, violations: list[tuple[str, str]], notes: list[str]) -> str:
    kinds = Counter(kind for kind, _ in violations)
    lines = [
        f"soak {SOAK} failed (seed {seed}; rerun with XHELPERS_SOAK_SEED={seed}): "
        f"{SIZE.experiments} experiments",
        *notes,
        "violations: " + ", ".join(f"{n} x {kind}" for kind, n in kinds.most_common()),
    ]
    shown: Counter[str] = Counter()
    for kind, detail in violations:
        shown[kind] += 1
        if shown[kind] <= 3:  # a few examples of each kind
            lines.append(f"  {kind}: {detail[:600]}")
    return "\n".join(lines)


@pytest.mark.soak
def test_soak_every_experiment_succeeds_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("XHELPERS_SOAK_SEED") or random.randrange(2**32))
    print(f"soak {SOAK}: seed {seed} (XHELPERS_SOAK_SEED={seed} replays its schedule)")
    write_run_py(
        tmp_path,
        RUN_PY.format(
            flock_share=SIZE.flock_share,
            flock_delay_s=SIZE.flock_delay_s,
            work_s=SIZE.work_s,
            n=SIZE.experiments,
        ),
    )
    folders = [tmp_path / "results/g" / name for name in names(SIZE.experiments)]
    soak = Soak(tmp_path, random.Random(seed), folders)
    violations: list[tuple[str, str]] = []
    notes: list[str] = []
    started = time.monotonic()
    scanner: Scanner | None = None
    try:
        scanner = Scanner(folders)
        for _ in range(SIZE.runners):  # at once, on one group
            soak.start_runner()
        chaos_end = started + SIZE.chaos_s
        check_at = 0.0
        while time.monotonic() < chaos_end:
            if time.monotonic() >= check_at:  # reading all metafiles takes long in the long soak
                if soak.done() == SIZE.experiments:
                    break
                check_at = time.monotonic() + 1.0
            time.sleep(soak.rng.uniform(*SIZE.pause_s))  # the chaos schedule, not a wait
            soak.kill_something()
            for _ in range(SIZE.runners - len(soak.live())):  # keep them coming
                soak.start_runner()
        chaos_s = time.monotonic() - started
        # No more kills: the runners left finish what they took on.
        if not eventually(lambda: not soak.live(), timeout=120):
            violations.append(("runner never ended", str([r.pid for r in soak.live()])))
        # Then one runner at a time reruns what killed runners left, until all succeeded.
        for _ in range(5):
            if soak.done() == SIZE.experiments:
                break
            soak.start_runner().proc.wait(timeout=120)
        scanner.finish()
        violations += scanner.violations
        for runner in soak.runners:
            err = runner.err.read_text()
            if not runner.killed and (runner.proc.returncode not in (0, 1) or "Traceback" in err):
                violations.append(
                    (
                        "runner crashed",
                        f"pid {runner.pid} exit {runner.proc.returncode}: "
                        + " | ".join(err.strip().splitlines()[-3:]),  # where, and what
                    )
                )
        for folder in folders:
            if not (folder / "metafile.json").exists():
                violations.append(("never ran", str(folder)))
            else:
                violations += check_runs(folder, soak)
        # What succeeded is skipped next time: a last runner runs nothing.
        before = [(f / "runs.log").stat().st_size for f in folders if (f / "runs.log").exists()]
        last = soak.start_runner()
        last.proc.wait(timeout=120)
        headline = last.out.read_text().splitlines()[:1]
        after = [(f / "runs.log").stat().st_size for f in folders if (f / "runs.log").exists()]
        everything = f"g: 0 succeeded, {SIZE.experiments} skipped, 0 failed, 0 interrupted"
        if last.proc.returncode != 0 or not headline or not headline[0].startswith(everything):
            violations.append(("last runner did not skip everything", f"{headline}"))
        if before != after:
            violations.append(("last runner ran experiments again", "runs.log grew"))
        # No orphans: once the runners ended, every process they started is gone soon.
        if not eventually(lambda: not soak.leftovers(), timeout=10):
            left = soak.leftovers()
            fates = {
                r.pid: "killed" if r.killed else f"exit {r.proc.returncode}" for r in soak.runners
            }
            shown = [describe_process(pid) for pid in left[:4]]
            sessions = {processes().get(pid, (0, ""))[0] for pid in left}
            runners = {sid: fates.get(sid, "not a runner's session") for sid in sessions}
            violations.append(("orphans", f"{len(left)} left: {shown}; their runners: {runners}"))
        notes.append(
            f"chaos {chaos_s:.1f}s, total {time.monotonic() - started:.1f}s; kills "
            f"{dict(soak.kills)}, {len(soak.runners)} runners; scanner {scanner.sweeps} "
            f"sweeps, {scanner.reads} metafile reads"
        )
        print(notes[-1])
        assert not violations, report(seed, soak, violations, notes)
    finally:
        if scanner is not None:
            scanner.close()
        for runner in soak.runners:  # processes this test started, by pid
            if runner.proc.poll() is None:
                runner.proc.kill()
                runner.proc.wait(timeout=30)
        for pid in soak.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        eventually(lambda: not soak.leftovers(), timeout=10)
