"""The ``coderun`` command line."""

from __future__ import annotations

from typing import Any

import click

from sandbox import paths
from sandbox.data import DataError

# Every command's module loads only when that command runs: `coderun --help` and the
# run stay quick (name -> module, attribute).
LAZY_COMMANDS = {
    "run": ("sandbox.cli.run", "run"),
    "images": ("sandbox.cli.images", "images_group"),
    "gc": ("sandbox.cli.gc", "gc_command"),
    "dashboard": ("sandbox.cli.dashboard", "dashboard_command"),
    "demo": ("sandbox.cli.dashboard", "demo_command"),
    "rules": ("sandbox.cli.rules", "rules"),
    "sessions": ("sandbox.cli.review", "sessions"),
    "log": ("sandbox.cli.review", "log"),
    "export": ("sandbox.cli.review", "export_command"),
    "report": ("sandbox.cli.report", "report_command"),
    "baseline": ("sandbox.cli.report", "baseline_group"),
    "pool": ("sandbox.cli.pool", "pool"),
    "doctor": ("sandbox.cli.doctor", "doctor_command"),
    "exec": ("sandbox.cli.profiles", "exec_command"),
    "profiles": ("sandbox.cli.profiles", "profiles"),
    "npm": ("sandbox.cli.pm", "npm"),
    "pip": ("sandbox.cli.pm", "pip"),
    "bundle": ("sandbox.cli.pm", "bundle"),
    "go": ("sandbox.cli.pm", "go"),
    "pm": ("sandbox.cli.pm", "pm_group"),
    "serve": ("sandbox.cli.serve", "serve_command"),
    "k8s": ("sandbox.cli.k8s", "k8s_group"),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs.

    It is also where every output of the CLI is guarded: while a command runs (and
    while click reports a usage error quoting an argument), ``sys.stdout`` and
    ``sys.stderr`` escape whatever a terminal would act on (sandbox/textout.py).
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Start-up time (here and below): `coderun --help` loads no command's module.
        from sandbox.textout import guard_streams

        with guard_streams():
            return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, attr = LAZY_COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (paths.DataDirError, DataError) as exc:
            raise click.ClickException(str(exc)) from exc


def version_text() -> str:
    """coderun's version, where it is installed and where its data and cache are."""
    import importlib.metadata
    import sys
    from pathlib import Path

    import sandbox
    import snitch

    try:
        version = importlib.metadata.version("coderun")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed: running from a source tree)"
    return "\n".join([
        f"coderun {version}",
        f"package:  {Path(sandbox.__file__).resolve().parent.parent}",
        f"gateway:  {Path(snitch.__file__).resolve().parent} (mounted into the gateway)",
        f"data dir: {paths.data_dir_path()}",
        f"cache:    {paths.cache_dir_path()}",
        f"config:   {paths.keys_file().parent}",
        f"python:   {sys.version.split()[0]} ({sys.executable})",
    ])  # fmt: skip


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_text())
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version, where coderun is installed "
              "and where its data and cache are.")  # fmt: skip
def main() -> None:
    """Run untrusted code in a sandbox whose every new connection waits for a decision."""
