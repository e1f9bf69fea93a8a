"""The ``sshd`` fixture: a real OpenSSH server for the remote-mode tests (sshd_server.py).

Without sshd (or ssh, rsync) the tests skip, saying why; in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from sshd_server import SSHD, SshServer, start_sshd

__all__ = ["sshd"]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    missing = [p for p in (SSHD, "ssh", "ssh-keygen", "rsync") if not shutil.which(p)]
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install openssh-server rsync)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"remote tests need {reason}", pytrace=False)
        pytest.skip(reason)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
