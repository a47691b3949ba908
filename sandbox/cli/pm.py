"""``coderun npm|pip|bundle|go ARGS``: a package manager for the current project, in a
sandbox with its ecosystem's starter policy (sandbox/pm.py); ``coderun pm`` shows the
policies and the caches."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from sandbox import pm
from sandbox.cli.options import network_options

HELP = {
    "npm": "npm for this project (npm install | ci | ...) in the node image.",
    "pip": f"pip of this project's virtualenv ({pm.VENV}, made on first use) in the python "
    "image (pip install -r requirements.txt | ...).",
    "bundle": "bundler for this project (bundle install | exec ...) in the ruby image; gems "
    "go to vendor/bundle.",
    "go": "go for this project (go mod download | build | test ...) in the go image; "
    "modules go to the per-user cache.",
}


def make_command(tool: str) -> click.Command:
    @click.command(
        tool,
        help=HELP[tool] + " The project folder (the current one) is mounted read-write at "
        "the same path; the registry's hosts are allowed by a starter policy (`coderun pm "
        "policy " + tool + "`), anything else is held (ask) or denied (enforce) and logged. "
        "Options before the tool's arguments are coderun's; the rest go to the tool.",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )
    @click.option("--image", default=pm.TOOLS[tool].runtime, show_default=True,
                  help="The sandbox's runtime (e.g. rails for bundle) or a local image.")
    @click.option("--policy", "policy_file",
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="A policy file instead of the starter policy.")
    @click.option("--mode", type=click.Choice(["ask", "enforce", "audit"]), default=None,
                  help="As `coderun run --mode` (ask with a terminal, else enforce).")
    @click.option("--prompt", type=click.Choice(["dashboard", "line", "none"]), default=None,
                  help="As `coderun run --prompt`.")
    @click.option("--profile", help="Rule profile of the run (besides global rules).")
    @click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for the sandbox.")
    @network_options
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_context
    def command(ctx: click.Context, /, image: str, policy_file: Path | None, env: tuple[str, ...],
                args: tuple[str, ...], **run_options: Any) -> None:  # fmt: skip
        from sandbox.cli.run import run

        spec = pm.TOOLS[tool]
        try:
            project = pm.project_dir()
            cache = pm.cache_dir(tool)
        except pm.PmError as exc:
            raise click.ClickException(str(exc)) from exc
        tool_env = [f"{k}={v}" for k, v in spec.env.items()]
        ctx.invoke(
            run,
            image=image,
            policy_file=pm.policy_for(tool, policy_file),
            env=(*tool_env, *env),  # the person's -e come last and win
            volumes=(*pm.project_mounts(project), f"{cache}:{pm.CACHE_MOUNT}"),
            workdir=str(project),
            user=pm.caller_user(),
            command=tuple(spec.command(args)),
            **run_options,
        )

    return command


npm = make_command("npm")
pip = make_command("pip")
bundle = make_command("bundle")
go = make_command("go")


@click.group("pm")
def pm_group() -> None:
    """The package-manager integrations: starter policies and caches."""


@pm_group.command("policy")
@click.argument("tool", type=click.Choice(sorted(pm.TOOLS)))
@click.option("--path", "path_only", is_flag=True, help="Print only the file's path.")
def pm_policy(tool: str, path_only: bool) -> None:
    """Print the policy `coderun TOOL` uses (copy it to the user path shown to change it)."""
    used = pm.policy_for(tool)
    if path_only:
        click.echo(str(used))
        return
    click.echo(f"# used: {used}\n# yours (replaces the shipped one): {pm.user_policy(tool)}")
    click.echo(used.read_text(), nl=False)


@pm_group.command("cache")
@click.option("--clean", "clean", multiple=True, type=click.Choice(sorted(pm.TOOLS)),
              help="Remove this tool's cache (repeatable).")
def pm_cache(clean: tuple[str, ...]) -> None:
    """The per-user caches of the package managers: where, how big; --clean removes."""
    from sandbox.image_list import human_size

    for tool in sorted(pm.TOOLS):
        folder = pm.cache_dir(tool)
        if tool in clean:
            shutil.rmtree(folder)
            click.echo(f"{tool:7} removed {folder}")
            continue
        click.echo(f"{tool:7} {human_size(pm.cache_usage(tool)):>9}  {folder}")
