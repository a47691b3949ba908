"""The ``coderun`` command line."""

from __future__ import annotations

from typing import Any

import click

from sandbox import paths

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
    "pool": ("sandbox.cli.pool", "pool"),
    "exec": ("sandbox.cli.profiles", "exec_command"),
    "profiles": ("sandbox.cli.profiles", "profiles"),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs.

    It is also where every output of the CLI is guarded: while a command runs (and
    while click reports a usage error quoting an argument), ``sys.stdout`` and
    ``sys.stderr`` escape whatever a terminal would act on (sandbox/textout.py).
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
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
        if cmd_name == "rules" and isinstance(command, click.Group):
            from sandbox.cli.review import from_session

            command.add_command(from_session)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except paths.DataDirError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coderun")
def main() -> None:
    """Run untrusted code in a sandbox whose every new connection waits for a decision."""
