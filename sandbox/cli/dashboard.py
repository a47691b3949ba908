"""``coderun dashboard`` (attach to running sessions) and ``coderun demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sandbox import paths
from sandbox.engine import docker_client


@click.command("dashboard")
def dashboard_command() -> None:
    """Attach the dashboard to every running session."""
    from snitch.review.client import running_sessions
    from tui.app import DashboardApp

    paths.api_token()
    clients = running_sessions(paths.data_dir())
    live = [c for c in clients if _gateway_ready(c.socket_path.parent)]
    if not live:
        raise click.ClickException("no running session (start one with `coderun run`)")
    DashboardApp(live, title="coderun dashboard").run()


def _gateway_ready(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "gateway.json").read_text()).get("state") == "ready")
    except (OSError, ValueError):
        return False


@click.command("demo")
def demo_command() -> None:
    """Run an example untrusted script against a local demo internet."""
    from sandbox.demo import run_demo

    sys.exit(run_demo(docker_client()))
