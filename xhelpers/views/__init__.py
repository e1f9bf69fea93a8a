"""What a researcher reads: the status and results tables, live progress, completion.

Views read metafiles (through :mod:`xhelpers.core`) and ask backends about jobs only
through the seam; they write nothing.
"""
