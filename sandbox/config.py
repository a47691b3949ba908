"""A run as the host sees it: what ``coderun run`` (or a test, the demo, a benchmark)
asks of a session, and the error a session raises.

The gateway's part is typed settings (``NetworkShape``, ``RunSettings``:
snitch/core/settings.py); the rest is the sandbox container's (sandbox/sandbox_container.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sandbox.shares.spec import Share
from snitch.core.settings import NetworkShape, RunSettings

DEFAULT_USER = "1000:1000"  # the coderun user of the sandbox images


class SessionError(RuntimeError):
    pass


@dataclass
class SessionConfig:
    """A run as the host sees it: the gateway's part is typed settings (``network``,
    ``run``: snitch/core/settings.py), the rest is the sandbox's."""

    image: str  # resolved image reference for the sandbox
    network: NetworkShape  # egress, DNS upstream, web ports, interception, gateway image
    run: RunSettings = RunSettings()  # mode, command, ask deadlines... (the gateway's)
    policy_file: Path | None = None  # the run's policy file (the gateway gets a copy)
    policy_text: str | None = None  # rules of the run (a profile's), with policy_file's
    upstream_ca: Path | None = None  # a CA the gateway trusts upstream (when intercepting)
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)  # HOST:CONTAINER[:ro]
    workdir: str | None = None
    script: Path | None = None
    tty: bool = False  # a pseudo-terminal for the sandbox (run -t)
    stdin: bool = False  # the sandbox reads our stdin (run -i)
    publish: list[str] = field(default_factory=list)  # -p [BIND:]HOSTPORT:PORT
    split: bool | None = None  # -t in ask mode in tmux: the dashboard in a split (None: ask)
    memory: str = "2g"  # and as much with swap: none
    pids: int = 1024
    user: str = DEFAULT_USER  # "root", "UID" or "UID:GID"
    cpus: float | None = None  # None: half of this machine's CPUs, at least one
    tmpfs_size: str = "1g"  # each writable place of the read-only root
    runtime: str | None = None  # e.g. "runsc" (gVisor); None: the engine's default
    shares: list[Share] = field(default_factory=list)  # --share (sandbox/shares/)
    share_max_mb: int = 100  # a writable share's files grow to this at most
    # --secret values by name (sandbox/secrets.py): to the gateway only, never printed.
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)
    # --decision-service's token and certificate (sandbox/decision.py): to the gateway only.
    decision_credentials: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def uses_ca(self) -> bool:
        """The install's CA is the gateway's and trusted in the sandbox: interception,
        or secrets (TLS to their bound hosts is terminated)."""
        return self.network.intercept_tls or bool(self.run.secrets)
