"""The labels on everything coderun creates in Docker (containers, networks, volumes).

``coderun.session`` names the session, ``coderun.owner-pid`` and ``coderun.owner-host``
the process that owns the object (``coderun gc`` removes what no live owner holds),
``coderun.role`` what it is (gateway, holder, sandbox, egress, sandbox-net, files...).
"""

from __future__ import annotations

import os
import socket

LABEL = "coderun.session"
OWNER_PID = "coderun.owner-pid"
OWNER_HOST = "coderun.owner-host"
ROLE = "coderun.role"


def owner_labels(session_id: str) -> dict[str, str]:
    """The labels of an object of ``session_id`` owned by this process."""
    return {LABEL: session_id, OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}
