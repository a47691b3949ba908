"""``coderun images``: build and list coderun's images."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from sandbox.engine import docker_client


@click.group("images")
def images_group() -> None:
    """Build and list coderun's images."""


@images_group.command("build")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs did not change.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every line of the builds, not one progress line per image.")  # fmt: skip
def images_build(names: tuple[str, ...], force: bool, verbose: bool) -> None:
    """Build coderun's images (only what changed). NAME is a runtime (node, go, ruby,
    rails, bash, python) or an image (gateway, internet, registry, sandbox-node, ...);
    without one: the gateway, the demo internet and the bash and python runtimes."""
    # Start-up time: the Docker SDK loads only when a build runs.
    from sandbox import images
    from sandbox.buildview import BuildView

    wanted = tuple(images.image_name(n) for n in names) or images.NAMES
    try:
        images.with_parents(wanted)
    except images.ImageError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    try:
        tags = images.build(docker_client(), names=wanted, force=force,
                            view=BuildView(verbose=verbose))  # fmt: skip
    except images.ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, tag in tags.items():
        click.echo(f"{name:16} {tag}")


@images_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Older builds too, not only the newest.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def images_list(show_all: bool, as_json: bool) -> None:
    """coderun's images: name, tag, size, what it adds to the image it is built on
    (the base, or ruby for rails), age and whether it is current (built from the inputs
    as they are now; a stale one is rebuilt on next use)."""
    from sandbox.image_list import human_size, list_images

    rows = list_images(docker_client(), show_all)
    now = datetime.now(UTC)
    if as_json:
        for r in rows:
            click.echo(json.dumps({
                "name": r.name, "tag": r.tag or None, "size": r.size, "added": r.added,
                "created": r.created.isoformat() if r.created else None,
                "current": r.current,
            }))  # fmt: skip
        return
    click.echo(f"{'NAME':16} {'TAG':36} {'SIZE':>9} {'ADDED':>9} {'AGE':>5}  CURRENT")
    for r in rows:
        state = "yes" if r.current else ("not built" if not r.tag else "no (stale)")
        size = human_size(r.size) if r.tag else "-"
        added = human_size(r.added) if r.added else "-"
        click.echo(f"{r.name:16} {r.tag or '-':36} {size:>9} {added:>9} {r.age(now):>5}  {state}")
