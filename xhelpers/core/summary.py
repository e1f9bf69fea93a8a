"""What a run did: one outcome per selected experiment, counts, exit code, summary text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from xhelpers.core import results

__all__ = [
    "BUSY",
    "NOT_STARTED",
    "QUEUED",
    "SKIPPED",
    "STALE",
    "SUCCESS",
    "ExperimentOutcome",
    "RunSummary",
]

SUCCESS = "success"
SKIPPED = "skipped"
STALE = "stale"  # done, but by a definition that has changed since; skipped
BUSY = "running elsewhere"
QUEUED = "queued"  # waiting or running on SLURM; a later run picks it up
NOT_STARTED = "not started"
_ORDER = (
    SUCCESS,
    SKIPPED,
    results.FAILED,
    results.INTERRUPTED,
    results.BLOCKED,  # not run: an upstream did not succeed
    STALE,
    BUSY,
    QUEUED,
    NOT_STARTED,
)
_WORDS = {
    SUCCESS: "succeeded",
    SKIPPED: "skipped",
    results.FAILED: "failed",
    results.INTERRUPTED: "interrupted",
    results.BLOCKED: "blocked",
    STALE: "stale",
    BUSY: "running elsewhere",
    QUEUED: "queued",
    NOT_STARTED: "not started",
}


@dataclass(frozen=True, slots=True)
class ExperimentOutcome:
    """How one selected experiment fared in a run."""

    name: str
    status: str  # success, skipped, failed, interrupted, stale, running elsewhere, ...
    folder: str
    duration: float | None = None
    error: str | None = None


@dataclass
class RunSummary:
    """The outcome of a run: one entry per selected experiment, in selection order."""

    group: str
    outcomes: list[ExperimentOutcome] = field(default_factory=list)
    duration: float = 0.0
    interrupted: bool = False  # the run itself was stopped (Ctrl-C)
    upstream: int = 0  # of the outcomes, the last ones: upstreams the selection needed

    def __iter__(self) -> Iterator[ExperimentOutcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, name: str) -> ExperimentOutcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_ORDER, 0)
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def with_status(self, status: str) -> list[ExperimentOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def exit_code(self) -> int:
        """0: nothing failed; 1: something failed, was interrupted or blocked; 130: Ctrl-C."""
        if self.interrupted:
            return 130
        counts = self.counts()
        failed = counts[results.FAILED] or counts[results.INTERRUPTED] or counts[results.BLOCKED]
        return 1 if failed else 0

    def headline(self) -> str:
        counts = self.counts()
        parts = [f"{counts[s]} {_WORDS[s]}" for s in _ORDER[:4]]
        parts += [f"{counts[s]} {_WORDS[s]}" for s in _ORDER[4:] if counts[s]]
        chosen = f"{len(self) - self.upstream} selected" + (
            f" + {self.upstream} upstream" if self.upstream else ""
        )
        return f"{self.group}: {', '.join(parts)} ({chosen}, {self.duration:.1f}s)" + (
            " - stopped by Ctrl-C" if self.interrupted else ""
        )

    def __str__(self) -> str:
        lines = [self.headline()]
        for o in self.outcomes:
            if o.status in (results.FAILED, results.INTERRUPTED, results.BLOCKED):
                lines.append(
                    f"  {o.status:<11} {o.name}: {o.error or o.status}  ({show_path(o.folder)})"
                )
        return "\n".join(lines)


def show_path(path: str) -> str:
    """``path`` relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
