"""The gateway container of a routed session: how it is made, what it mounts, and what
is handed to it after it starts (secret values, the decision service's token)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from sandbox import paths
from sandbox.config import SessionConfig, SessionError
from sandbox.gateway_code import gateway_volumes
from snitch.core.settings import DATA_MOUNT, GatewaySettings

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    # conntrack counts each connection's bytes: the lines of web flows read in passing
    # (snitch/gateway/peeklog.py) have them
    "net.netfilter.nf_conntrack_acct": "1",
}


def data_mounts(folder: Path, session: str, uses_ca: bool) -> dict[str, dict[str, str]]:
    """What the gateway gets of the data dir: its own session folder and the rule store
    (read-write), the API token (read-only) and, only when it intercepts TLS, the CA.
    No other session, not the pool."""
    mounts = {
        str(folder): {"bind": f"{DATA_MOUNT}/sessions/{session}", "mode": "rw"},
        str(paths.rules_dir()): {"bind": f"{DATA_MOUNT}/rules", "mode": "rw"},
        str(paths.api_token_path()): {"bind": f"{DATA_MOUNT}/api-token", "mode": "ro"},
    }
    if uses_ca:
        mounts[str(paths.ca_dir())] = {"bind": f"{DATA_MOUNT}/ca", "mode": "rw"}
    return mounts


def create_gateway(
    client: docker.DockerClient, image: str, name: str, network: str, labels: dict[str, str],
    settings: GatewaySettings, mounts: dict[str, dict[str, str]],
) -> Container:  # fmt: skip
    """The gateway container on the egress ``network`` (created, not started)."""
    return client.containers.create(
        image,
        name=name,
        network=network,
        labels=labels,
        environment=settings.to_env(),
        cap_add=["NET_ADMIN"],
        init=True,
        sysctls=SYSCTLS,
        volumes={**gateway_volumes(), **mounts},
    )


def hand_over(gateway: Container, config: SessionConfig) -> None:
    """The --secret values into the gateway's own filesystem (sandbox/secrets.py), and
    the decision service's token (sandbox/decision.py)."""
    if config.decision_credentials:
        from sandbox.decision import put_credentials

        try:
            put_credentials(gateway, config.decision_credentials)
        except (RuntimeError, docker.errors.APIError) as exc:
            why = f"handing the decision token to the gateway failed: {exc}"
            raise SessionError(why) from exc
    if not config.secret_values:
        return
    from sandbox.secrets import put_values

    try:
        put_values(gateway, config.secret_values)
    except (RuntimeError, docker.errors.APIError) as exc:
        raise SessionError(f"handing the secrets to the gateway failed: {exc}") from exc


def cut_off(client: docker.DockerClient, gateway: Container) -> None:
    """Disconnect ``gateway`` from every network (a paused container can be): whatever
    it lets go afterwards has nowhere to go."""
    for name in list(gateway.attrs.get("NetworkSettings", {}).get("Networks") or {}):
        with contextlib.suppress(docker.errors.APIError):
            client.networks.get(name).disconnect(gateway, force=True)
