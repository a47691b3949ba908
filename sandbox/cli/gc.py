"""``coderun gc``: what interrupted runs left behind."""

from __future__ import annotations

import click

from sandbox.engine import docker_client


@click.command("gc")
@click.option("--all", "everything", is_flag=True, help="Also remove sessions that are running.")
def gc_command(everything: bool) -> None:
    """Remove containers and networks left by interrupted runs (--all: every session's,
    and the egress network runs share)."""
    # Start-up time: the Docker SDK loads only when gc runs.
    from sandbox.cleanup import gc
    from sandbox.egress import shared_networks

    client = docker_client()
    removed = gc(client, everything=everything)
    for item in removed:
        click.echo(f"removed {item}")
    if not removed:
        click.echo("nothing to remove")
    for network in shared_networks(client):  # runs share it: only --all removes it
        why = "in use" if everything else "shared by runs; --all removes it"
        click.echo(f"kept network {network.name} ({why})")
