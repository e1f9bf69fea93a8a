"""What a SLURM job of the backend runs: submitit's job runner, then an exit code that
says whether the experiment succeeded.

submitit ends a job with 0 whenever the function returned, and ``execute`` returns a
failed experiment's result rather than raising it. SLURM's dependencies (``afterok``,
``aftercorr``) read the job's exit code, so a downstream of a failed experiment would
start; ending with :data:`NOT_DONE` makes SLURM cancel it instead. The result file is
written before, so the submitter still reads the experiment's own outcome.

Run as ``python -u -m xhelpers.backends.slurm.job <submitit's arguments> <folder>``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

NOT_DONE = 3  # the experiment ran and did not succeed: its metafile says how


def main(argv: Sequence[str]) -> int:
    from submitit.core.submission import process_job

    # What runs here lives in .node: the submitting side (backend, queue, packing) is
    # not imported on the node.
    from xhelpers.backends.slurm import node

    process_job(argv[-1])  # raises (the job fails) when submitit could not run the task
    return 0 if node.node_succeeded() else NOT_DONE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
