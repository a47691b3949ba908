"""``coderun dashboard`` (attach to running sessions) and ``coderun demo``."""

from __future__ import annotations

import sys

import click

from sandbox import paths
from sandbox.engine import docker_client
from snitch.core.grammar import GatewayState
from snitch.core.session_dir import SessionDir


@click.command("dashboard")
def dashboard_command() -> None:
    """Attach the dashboard to every running session."""
    # Start-up time: Textual loads only when the dashboard runs.
    from snitch.review.client import running_sessions
    from tui.app import DashboardApp

    keymap = dashboard_keymap()
    paths.api_token()
    clients = running_sessions(paths.data_dir())
    live = [c for c in clients
            if SessionDir(c.socket_path.parent).gateway_state() == GatewayState.READY]  # fmt: skip
    if not live:
        raise click.ClickException("no running session (start one with `coderun run`)")
    DashboardApp(live, title="coderun dashboard", keymap=keymap).run()


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
