"""What runs on the host beside a session's sandbox: the ``--share`` daemons
(sandbox/shares/, mounted before the sandbox exists: its binds need them) and the
service that answers the gateway's "which process made this flow?" (sandbox/attribution/).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import docker
from docker.models.containers import Container

from sandbox import paths
from sandbox.attribution.service import Attribution, AttributionService
from sandbox.config import SessionConfig, SessionError
from snitch.core.session_dir import POLICY, SessionDir

if TYPE_CHECKING:  # start-up time: the --share daemons' code loads only for a share
    from sandbox.shares.mounts import Deciding, SessionShares


def start_shares(config: SessionConfig, folder: SessionDir, session: str) -> SessionShares:
    """The run's ``--share`` daemons and mounts; SessionError when one cannot start."""
    from sandbox.shares.mounts import ShareError
    from sandbox.shares.mounts import start_shares as start

    try:
        return start(config.shares, folder.path, session, config.share_max_mb * 1024 * 1024,
                     share_deciding(config, folder))  # fmt: skip
    except (ShareError, OSError) as exc:
        raise SessionError(f"--share: {exc}") from exc


def share_deciding(config: SessionConfig, folder: SessionDir) -> Deciding:
    """How the share daemons decide opens: this run's mode, rules and gateway (its
    policy file was written to the session folder with the run's settings)."""
    from sandbox.shares.mounts import Deciding

    run = config.run
    policy = folder.file(POLICY)
    return Deciding(
        mode=str(run.mode), rules=paths.rules_db(),
        policy=policy if policy.exists() else None, profile=run.profile or "",
        image=run.image or "", home=str(Path.home()), api=folder.api_socket,
        token_file=paths.api_token_path(), ask_timeout=run.ask_timeout,
    )  # fmt: skip


def start_attribution(
    client: docker.DockerClient, folder: SessionDir, sandbox: Container
) -> AttributionService | None:
    """Answer the gateway's "which process made this flow?"; the sandbox's init pid is
    asked of Docker until it runs. None (said on stderr) when it cannot be served."""

    def init_pid() -> int:
        return int(client.api.inspect_container(sandbox.id)["State"]["Pid"] or 0)

    service = AttributionService(folder.attribution_socket, Attribution(init_pid))
    try:
        service.start()
    except OSError as exc:  # best effort: a run without it logs every process unknown
        print(f"coderun: process attribution is off: {exc}", file=sys.stderr)
        return None
    return service
