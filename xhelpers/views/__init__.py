"""What a researcher reads: the status and results tables, aggregates, plots, diffs,
live progress, completion.

Views read metafiles (through :mod:`xhelpers.core`) and ask backends about jobs only
through the seam; they never write to the result tree (``-o`` and ``--plot`` write the
file they are told to, atomically).
"""
