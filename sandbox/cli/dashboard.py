"""``coderun dashboard`` (attach to running sessions) and ``coderun demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from sandbox import paths
from sandbox.engine import docker_client
from snitch.core.grammar import GatewayState
from snitch.core.session_dir import SessionDir


@click.command("dashboard")
@click.option(
    "--server",
    metavar="URL",
    help="A decision service (https://HOST:PORT, "
    "`coderun serve`): show every session of its fleet instead of this machine's.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The decision service's bearer token (with --server).",
)
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The decision service's certificate (default: the one `coderun serve` "
    "made on this machine).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --server: only the sessions with this label. Repeatable.",
)
def dashboard_command(server: str | None, token_file: Path | None, ca: Path | None,
                      labels: tuple[str, ...]) -> None:  # fmt: skip
    """Attach the dashboard to every running session (or every session of a fleet)."""
    # Start-up time: Textual loads only when the dashboard runs.
    from snitch.review.client import running_sessions
    from tui.app import DashboardApp

    keymap = dashboard_keymap()
    if server is not None or token_file is not None or labels:
        fleet = fleet_clients(server, token_file, ca, labels)
        service = fleet[0].service

        async def discover() -> list[Any]:
            from snitch.review.fleetclient import fleet_sessions

            return await fleet_sessions(service, labels)

        DashboardApp(fleet, title=f"coderun dashboard · {server}", keymap=keymap,
                     discover=discover).run()  # fmt: skip
        return
    paths.api_token()
    clients = running_sessions(paths.data_dir())
    live = [c for c in clients
            if SessionDir(c.socket_path.parent).gateway_state() == GatewayState.READY]  # fmt: skip
    if not live:
        raise click.ClickException("no running session (start one with `coderun run`)")
    DashboardApp(live, title="coderun dashboard", keymap=keymap).run()


def fleet_clients(server: str | None, token_file: Path | None, ca: Path | None,
                  labels: tuple[str, ...]) -> list[Any]:  # fmt: skip
    """A client for every session of the decision service's fleet (with ``labels``)."""
    import asyncio

    from sandbox.decision import DecisionError, check_labels, credentials
    from snitch.core.fleetclient import ServiceClient
    from snitch.review.client import ApiError
    from snitch.review.fleetclient import fleet_sessions

    if server is None:
        raise click.UsageError("--token-file and --label go with --server")
    try:
        creds = credentials(server, token_file, ca)
        check_labels(labels)
    except (DecisionError, OSError) as exc:
        raise click.UsageError(str(exc).replace("--decision-token-file", "--token-file")
                               .replace("--decision-ca", "--ca")) from exc  # fmt: skip

    async def listed() -> list[Any]:
        lister = ServiceClient(server, creds["token"], creds["ca"])
        try:
            return await fleet_sessions(lister, labels)
        finally:
            lister.close()

    try:
        found = asyncio.run(listed())
    except ApiError as exc:
        raise click.ClickException(f"decision service {server}: {exc.message}") from exc
    if not found:
        raise click.ClickException(
            f"no session on {server}" + (" with those labels" if labels else "")
        )
    service = ServiceClient(server, creds["token"], creds["ca"])  # the dashboard's own loop
    for client in found:
        client.service = service
    return found


def dashboard_keymap() -> dict[str, str]:
    """The user's key remapping (``paths.keys_file()``), checked before anything starts."""
    from tui.keymap import KeymapError, load_keymap

    try:
        return load_keymap(paths.keys_file())
    except KeymapError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("demo")
def demo_command() -> None:
    """Run an example untrusted script against a local demo internet."""
    # Start-up time: the demo's modules load only when it runs.
    from sandbox.demo import run_demo

    sys.exit(run_demo(docker_client()))
