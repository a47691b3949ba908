"""``coderun images``: build and list coderun's images."""

from __future__ import annotations

import click

from sandbox.engine import docker_client


@click.group("images")
def images_group() -> None:
    """Build and list coderun's images."""


@images_group.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs did not change.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every line of the builds, not one progress line per image.")  # fmt: skip
def images_build(force: bool, verbose: bool) -> None:
    """Build the gateway, demo-internet and sandbox images (only what changed)."""
    from sandbox import images
    from sandbox.buildview import BuildView

    try:
        tags = images.build(docker_client(), force=force, view=BuildView(verbose=verbose))
    except images.ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, tag in tags.items():
        click.echo(f"{name:16} {tag}")
