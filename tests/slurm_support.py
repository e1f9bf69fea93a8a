"""Support for tests that need a real SLURM cluster (see scripts/local-slurm).

Use from tests::

    from slurm_support import require_slurm, slurm_cluster  # noqa: F401

``slurm_cluster`` skips the test when no usable cluster answers, or fails it when
``XHELPERS_REQUIRE_SLURM=1`` (CI sets that, so a broken cluster cannot pass as skipped).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_SLURM = REPO_ROOT / "scripts" / "local-slurm"
REQUIRE_ENV = "XHELPERS_REQUIRE_SLURM"

# Bound every probe: a hung controller must turn into a skip/fail, not a hung test session.
_PROBE_TIMEOUT_S = 60


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    max_array_size: int


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL
    )


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


@functools.cache
def slurm_available() -> tuple[bool, str]:
    """(True, "") if jobs can be submitted and sacct answers, else (False, reason).

    Cached: the answer is computed once per test session.
    """
    try:
        if LOCAL_SLURM.exists():
            proc = _run([str(LOCAL_SLURM), "status"])
            if proc.returncode == 0:
                return True, ""
            reasons = [ln for ln in proc.stdout.splitlines() if ln.startswith("not usable:")]
            detail = "; ".join(r.removeprefix("not usable: ") for r in reasons) or _tail(
                proc.stdout + proc.stderr
            )
            return False, f"{LOCAL_SLURM.name} status: {detail}"
        # Without the script (e.g. the module copied elsewhere): ask SLURM directly.
        if shutil.which("sinfo") is None or shutil.which("sacct") is None:
            return False, "SLURM client commands (sinfo, sacct) are not installed"
        sinfo = _run(["sinfo", "-h", "-o", "%T"])
        if sinfo.returncode != 0:
            return False, f"sinfo failed: {_tail(sinfo.stderr)}"
        if not {"idle", "mixed", "allocated"} & set(sinfo.stdout.split()):
            return False, f"no usable node (states: {' '.join(sinfo.stdout.split()) or 'none'})"
        sacct = _run(["sacct", "-n", "-X", "-S", "now", "-o", "JobID"])
        if sacct.returncode != 0:
            return False, f"sacct does not answer: {_tail(sacct.stderr)}"
        return True, ""
    except subprocess.TimeoutExpired as exc:
        return False, f"{exc.cmd[0]} timed out after {exc.timeout:.0f}s"
    except OSError as exc:
        return False, f"cannot run SLURM probe: {exc}"


def require_slurm() -> None:
    """Skip the calling test if SLURM is unusable; fail it instead when XHELPERS_REQUIRE_SLURM=1."""
    ok, reason = slurm_available()
    if ok:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"SLURM required but unavailable: {reason}", pytrace=False)
    pytest.skip(f"SLURM unavailable ({reason}); start it with: sudo scripts/local-slurm start")


def _read_cluster() -> SlurmCluster:
    config = _run(["scontrol", "show", "config"])
    if config.returncode != 0:
        pytest.fail(f"scontrol show config failed: {_tail(config.stderr)}", pytrace=False)
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config.stdout, re.MULTILINE)
    if match is None:
        pytest.fail("MaxArraySize not found in `scontrol show config`", pytrace=False)
    # The default partition is the one sinfo marks with '*'.
    parts = _run(["sinfo", "-h", "-o", "%P"]).stdout.split()
    default = [p.rstrip("*") for p in parts if p.endswith("*")]
    partition = (
        default
        or [p.rstrip("*") for p in parts]
        or [os.environ.get("LOCAL_SLURM_PARTITION", "debug")]
    )[0]
    return SlurmCluster(partition=partition, max_array_size=int(match.group(1)))


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """A usable SLURM cluster: its default partition and MaxArraySize."""
    require_slurm()
    return _read_cluster()
