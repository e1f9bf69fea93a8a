"""What a SLURM job of the backend runs: submitit's job runner, then an exit code that
says whether the experiment succeeded.

submitit ends a job with 0 whenever the function returned, and ``execute`` returns a
failed experiment's result rather than raising it. SLURM's dependencies (``afterok``,
``aftercorr``) read the job's exit code, so a downstream of a failed experiment would
start; ending with :data:`NOT_DONE` makes SLURM cancel it instead. The result file is
written before, so the submitter still reads the experiment's own outcome.

Run as ``python -u -m xhelpers.backends.slurm.job [--no-numpy] <submitit's arguments>
<folder>``. submitit's runner imports numpy before it unpickles the task, so that
numpy comes before torch whatever order the pickle names them in (an MKL numpy after
torch's libgomp refuses to load: submitit#1604); that costs a tiny experiment ~30 ms
of CPU, most of a task's own. ``--no-numpy`` (the submitter had not loaded numpy with
``run.py``, so unpickling its experiments will not either) skips it: an experiment
that imports numpy itself does so in its own order, as it does when run locally.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

NOT_DONE = 3  # the experiment ran and did not succeed: its metafile says how
NO_NUMPY = "--no-numpy"


def main(argv: Sequence[str]) -> int:
    process_job = _process_job(preload_numpy=NO_NUMPY not in argv)
    # What runs here lives in .node: the submitting side (backend, queue, packing) is
    # not imported on the node.
    from xhelpers.backends.slurm import node

    process_job(argv[-1])  # raises (the job fails) when submitit could not run the task
    return 0 if node.node_succeeded() else NOT_DONE


def _process_job(preload_numpy: bool) -> Callable[[str], None]:
    """submitit's ``process_job``, imported with or without its numpy (see the module)."""
    hidden = not preload_numpy and "numpy" not in sys.modules
    if hidden:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy: ImportError
    try:
        from submitit.core.submission import process_job
    finally:
        if hidden and sys.modules.get("numpy", 0) is None:
            del sys.modules["numpy"]  # numpy imports as usual from here on
    return process_job


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
