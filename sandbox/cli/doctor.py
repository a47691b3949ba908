"""``coderun doctor``: check this machine for coderun (sandbox/doctor.py)."""

from __future__ import annotations

import os
import sys

import click


def use_color() -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok and every check.")
def doctor_command(as_json: bool) -> None:
    """Check the Docker engine, the kernel, the images, the data dir and its secrets,
    leftovers of interrupted runs and disk space; each failure says how to fix it.
    Exits 0 only when every check passes."""
    from sandbox import doctor
    from sandbox.textout import echo_exact, write_trusted

    color = use_color()

    def show(check: doctor.Check) -> None:
        if as_json:
            return
        mark = {doctor.OK: "ok", doctor.FAIL: "FAIL", doctor.SKIPPED: "skip"}[check.status]
        code = {doctor.OK: "32", doctor.FAIL: "31", doctor.SKIPPED: "33"}[check.status]
        if color:
            write_trusted(f"\x1b[{code}m")
        click.echo(f"{mark:5}", nl=False)
        if color:
            write_trusted("\x1b[0m")
        click.echo(f" {check.name:10} {check.detail}")
        if check.fix:
            click.echo(f"{'':16} fix: {check.fix}")

    checks = doctor.run_checks(show)
    if as_json:
        echo_exact(doctor.as_json(checks) + "\n")
    elif not all(c.ok for c in checks):
        click.echo("\nnot ready: fix what failed above and run `coderun doctor` again")
    else:
        click.echo("\nready: coderun can run here")
    sys.exit(0 if all(c.ok for c in checks) else 1)
