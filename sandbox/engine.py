"""The Docker engine coderun talks to, with a clear error when none answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import docker


def docker_client() -> docker.DockerClient:
    # Start-up time: the Docker SDK (a tenth of a second) loads on first use.
    import os

    import docker
    import docker.errors

    from sandbox import calltrace

    try:
        client = docker.from_env(timeout=120)
        trace = calltrace.from_env(os.environ)  # the start-up benchmark's call timings
        if trace is not None:
            trace.attach(client)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise click.ClickException(
            "cannot reach a Docker engine. Start one (e.g. `sudo dockerd &`, or "
            "`sudo apt-get install docker.io` first); `coderun doctor` checks the rest. "
            f"({exc})"
        ) from exc
