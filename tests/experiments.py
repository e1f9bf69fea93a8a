"""Experiment functions for the tests; a module of its own so spawned workers import them."""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import xhelpers as xh
from xhelpers.backends.threads import THREAD_VARIABLES

log = logging.getLogger("experiments")


class TConfig(xh.BaseConfig):
    user_message: str = "Hello world!"
    user_number: int = 42


def write_param(*, param: Any, config: TConfig | None = None) -> dict[str, Any]:
    config = TConfig.with_updates(config)
    log.info("param=%s message=%s", param, config.user_message)
    log.debug("debug detail %s", param)
    Path("result.txt").write_text(str(param))
    return {"param": param, "cwd": os.getcwd(), "workers": config.workers}


def no_config(value: int = 1) -> int:
    Path("result.txt").write_text(str(value))
    return value


def record_cwd() -> str:
    return os.getcwd()


def raises() -> None:
    raise ValueError("bad value\nsecond line")


def exits() -> None:
    sys.exit(3)


def hard_exit() -> None:
    os._exit(7)


def segfault() -> None:
    ctypes.string_at(0)


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def returns_unserializable() -> object:
    return object()


def _square(x: int) -> int:
    return x * x


def uses_pool(*, config: xh.BaseConfig) -> list[int]:
    """Starts processes of its own, as experiments with config.workers do."""
    with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
        squares = pool.map(_square, range(4))
    Path("squares.json").write_text(json.dumps(squares))
    return squares


def append_run(tag: str = "") -> None:
    """Counts its runs: one line per run, in a file of its folder."""
    with open("runs.txt", "a") as f:
        f.write(f"{os.getpid()} {tag}\n")


def wait_for_file(*, started: str, release: str, timeout: float = 60.0) -> str:
    """Announce that it runs (the test waits for that), then wait until released."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.02)
    return "released"


def block_with_child(*, started: str) -> None:
    """Starts a child process, announces both pids, then blocks until interrupted."""
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
    child.start()
    Path(started).write_text(f"{os.getpid()} {child.pid}")
    Path("checkpoint.pt").write_text("partial")
    time.sleep(600)


def logs_levels() -> None:
    log.debug("a debug line")
    log.info("an info line")
    log.warning("a warning line")


def writes_result(*, lr: float, seed: int) -> None:
    """Writes result.json with a field named like a parameter (seed)."""
    Path("result.json").write_text(json.dumps({"loss": lr * 10 + seed, "seed": seed * 100}))


def returns_result(*, lr: float) -> dict[str, Any]:
    return {"loss": lr, "nested": {"a": 1}}


def changed_function(*, lr: float) -> None:
    """Stands in for a definition that changed (another function under the same name)."""
    Path("result.txt").write_text(str(lr))


def chatty(*, n: int = 20) -> None:
    for i in range(n):
        log.warning("line %d", i)


def swallows_ctrl_c(*, started: str) -> str:
    """The usual 'stop early and save' loop: catches Ctrl-C and returns."""
    try:  # announced inside: a Ctrl-C right after the test sees it is still caught
        Path(started).write_text(str(os.getpid()))
        time.sleep(600)
    except KeyboardInterrupt:
        Path("partial_result.txt").write_text("cut short")
        return "swallowed"
    return "finished"


def _die_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _cannot_load(why: str) -> None:
    raise RuntimeError(why)


class DiesOnReceive:
    """An argument whose unpickling kills the worker: it dies receiving its task, before
    the experiment's folder exists (as under the OOM killer at that moment)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_die_now, ())

    def __repr__(self) -> str:
        return "DiesOnReceive()"


class FailsOnReceive:
    """An argument that pickles in the runner but cannot be unpickled in the worker."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_cannot_load, ("this argument cannot be loaded here",))

    def __repr__(self) -> str:
        return "FailsOnReceive()"


def fills_disk(*, chunk: int = 4096) -> str:
    """Writes into its folder until the filesystem is full, then returns normally."""
    with open("filler.bin", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * chunk)
        except OSError:
            pass
    return "filled"


def sum_of(*, data: Any) -> int:
    """Sums the list an upstream wrote to data.json (a pipeline's downstream)."""
    return int(sum(data.load("data.json")))


def evaluates(*, i: int, value: Any) -> int:
    """A downstream of a grid: element i uses upstream i."""
    return i


def svc_accuracy(C: float, gamma: float, fold: int) -> float:
    """A made-up accuracy, so tests compute the expected aggregates independently."""
    return round(0.5 + 0.1 * C**0.5 - gamma + 0.01 * fold, 6)


def svc(*, C: float, gamma: float, fold: int, fail_on: Any = None) -> dict[str, Any]:
    acc = svc_accuracy(C, gamma, fold)
    if fail_on == [C, gamma, fold]:
        xh.save({"acc": 0.0}, "result.json")  # written before it fails: must not count
        raise ValueError("diverged")
    xh.save({"f1": acc - 0.1, "per_class": [acc, 1 - acc]}, "scores.json", result=True)
    return {"acc": acc, "loss": float("nan") if fold == 2 else 1 - acc}


def acc_of(C: float, gamma: float, fold: int) -> float:
    """A deterministic score: up with C, down with gamma, spread over folds by gamma."""
    return 0.5 + C / 1000 - gamma + fold * gamma / 5


def accuracy(*, C: float, gamma: float, fold: int) -> dict[str, Any]:
    return {"acc": acc_of(C, gamma, fold), "kernel": "rbf"}


def accuracy_failing(*, C: float, gamma: float, fold: int) -> dict[str, Any]:
    """As accuracy, but C=100, gamma=0.1, fold=2 writes its score, then fails."""
    if (C, gamma, fold) == (100, 0.1, 2):
        Path("result.json").write_text(json.dumps({"acc": acc_of(C, gamma, fold)}))
        raise RuntimeError("diverged")
    return accuracy(C=C, gamma=gamma, fold=fold)


MODEL_ACC = {"svm": 0.8, "knn": 0.7, "tree": 0.6}


def model_score(*, model: str, fold: int) -> dict[str, float]:
    return {"acc": MODEL_ACC[model] + fold / 100}


def prints(*, text: str) -> None:
    print(text)  # stdout only: not logging, so not in experiment.log


ENV_NAMES = ("CUDA_VISIBLE_DEVICES", *THREAD_VARIABLES)


def records_env(*, config: xh.BaseConfig | None = None) -> dict[str, Any]:
    """What its process gives it: the GPU and thread variables (also in env.json), its
    pid, and what run.py saw when this process imported it (AT_IMPORT, if it set one)."""
    env = {name: os.environ.get(name) for name in ENV_NAMES}
    Path("env.json").write_text(json.dumps(env))
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    return {"env": env, "pid": os.getpid(), "at_import": getattr(main, "AT_IMPORT", None)}


def _append(ledger: str, record: dict[str, Any]) -> None:
    with open(ledger, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one line at a time, in the order they happened
        f.write(json.dumps(record) + "\n")


def holds_gpu(*, ledger: str, tag: str, share: float, timeout: float = 120.0) -> str:
    """Writes its start (its GPUs, its share of each) to the ledger, holds them until the
    test writes ``release-<tag>`` beside the ledger, then writes its end."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    record = {"tag": tag, "devices": visible.split(",") if visible else [], "share": share}
    _append(ledger, {"event": "start", **record})
    release = os.path.join(os.path.dirname(ledger), f"release-{tag}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.01)
    _append(ledger, {"event": "end", **record})
    return visible


def blas_threads() -> dict[str, Any]:
    """The sizes of this process' BLAS/OpenMP pools now (threadpoolctl's view, numpy's
    BLAS loaded), and the thread variables; threadpoolctl even where run.py hid it from
    xhelpers (sys.modules["threadpoolctl"] = None)."""
    if "threadpoolctl" in sys.modules and sys.modules["threadpoolctl"] is None:
        del sys.modules["threadpoolctl"]
    import numpy  # noqa: F401 - its BLAS, loaded (already, when run.py imported it)
    import threadpoolctl

    pools = {i["internal_api"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    return {"pools": pools, "env": {n: os.environ.get(n) for n in ENV_NAMES}, "pid": os.getpid()}


def sleeps(*, seconds: float) -> float:
    """Runs for ``seconds`` (a pack's walltime estimate is about it)."""
    time.sleep(seconds)
    return seconds


def resumes(*, started: str, release: str, timeout: float = 120.0) -> str:
    """Writes a checkpoint and waits to be released; a later run that finds the
    checkpoint returns at once (as resuming training would)."""
    if os.path.exists("checkpoint.txt"):
        return "resumed"
    Path("checkpoint.txt").write_text("step 1")
    return wait_for_file(started=started, release=release, timeout=timeout)


# A 1x1 PNG: a result image for the dashboard's file previews.
_PNG = "".join(
    (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw",
        "AAAABJRU5ErkJggg==",
    )
)


def scored(*, lr: float, seed: int) -> dict[str, Any]:
    """A sweep's experiment for the dashboard: a metric, a log line, a CSV, an image."""
    import base64

    log.warning("training with lr=%s seed=%s", lr, seed)
    Path("curve.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.25\n")
    Path("sample.png").write_bytes(base64.b64decode(_PNG))
    return {"acc": round(1 - abs(lr - 0.1) + seed * 0.01, 6), "loss": lr * (seed + 1)}


def diverges(*, lr: float, seed: int) -> None:
    log.warning("lr=%s is too high", lr)
    raise FloatingPointError(f"loss is NaN at lr={lr}")


def numpy_loaded() -> bool:
    """Whether numpy was in its process when it started (on SLURM: preloaded or not)."""
    return "numpy" in sys.modules


def numpy_sum() -> float:
    """An experiment that imports numpy itself."""
    import numpy

    return float(numpy.ones(3).sum())
