"""Run experiments on this machine: in the main process (``jobs=1``) or in worker processes.

The pool is our own rather than ``concurrent.futures``: a dead worker must cost only
the experiment it was running (a broken ``ProcessPoolExecutor`` loses every pending
future), experiments must be allowed to start processes of their own (``multiprocessing.Pool``
workers are daemonic and may not), and Ctrl-C must reach each experiment and every
process it started. Each worker leads its own process group for that last reason.

A run that does not wait (``--no-wait``) is detached: :meth:`LocalBackend.submit` starts
one process in a session of its own (see :mod:`xhelpers.core.detached`) that runs the
tasks with this same backend, waiting, and outlives the terminal; every task's ref is
that process' (``host:pid:start:detached``), so any later process can ask about it and
cancel it (SIGINT, as Ctrl-C). Its output goes to ``<group>/.local/<stamp>.log``.
"""

from xhelpers.backends.local.backend import LOCAL_FOLDER, LocalBackend
from xhelpers.backends.local.processes import DETACHED_SUFFIX, process_ref

__all__ = ["DETACHED_SUFFIX", "LOCAL_FOLDER", "LocalBackend", "process_ref"]
