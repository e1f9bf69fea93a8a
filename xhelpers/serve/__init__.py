"""The dashboard: a read-only web view of the result tree (``run.py serve``).

Nothing here is imported by a run: the web stack (Starlette, uvicorn, Jinja2) loads
only when the ``serve`` command starts. :class:`~xhelpers.serve.server.DashboardServer`
is the way in from Python::

    from xhelpers.serve.server import DashboardServer
    DashboardServer(root="results").run()
"""
