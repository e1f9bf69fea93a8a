"""The result tree: moved to :mod:`xhelpers.core.results`; this import path stays."""

from xhelpers.core.results import *  # noqa: F403
from xhelpers.core.results import __all__  # noqa: F401
