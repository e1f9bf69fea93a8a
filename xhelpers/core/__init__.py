"""The core: what one run is, wherever it runs.

Selection and planning (:mod:`~xhelpers.core.runner`), running one experiment in its
folder (:mod:`~xhelpers.core.execution`), the result tree with its metafiles and locks
(:mod:`~xhelpers.core.results`), the only writers of metafiles outside a run
(:mod:`~xhelpers.core.records`), what an experiment is (:mod:`~xhelpers.core.fingerprints`),
run-level provenance, logging and the run's summary. Views, notifications and the
ways of defining experiments build on it; it imports none of them at module level.
"""
