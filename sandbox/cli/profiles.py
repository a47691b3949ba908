"""``coderun exec`` (run a profile) and ``coderun profiles new|list|show|check|install``.

A profile (sandbox/profiles.py, docs/profiles.md) is a TOML file that names a run and its
rules; with ``#!/usr/bin/env -S coderun exec`` as its first line and the run bit set it
runs as ``./tool.toml ARGS``. Exit codes of ``profiles``: 0 ok, 1 not found, 2 a
malformed profile (``FILE:LINE:COL: message``) or a usage error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sandbox import paths
from sandbox.profiles import SUFFIX, Profile, append_rules, describe, load_profile, new_profile
from snitch.core.policyfile import PolicyError

if TYPE_CHECKING:
    from sandbox.session import Session

SAVE_RULES_ENV = "CODERUN_SAVE_RULES"  # "1": as --save-rules, for ./tool.toml runs
EXECUTABLE = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class BadProfile(click.ClickException):
    exit_code = 2


class NotFound(click.ClickException):
    exit_code = 1


def bin_dir() -> Path:
    """Where `profiles install` puts profiles: ``bin/`` in coderun's data dir
    (``~/.local/share/coderun/bin``); put it on PATH to run them by name."""
    return paths.private_dir(paths.data_dir() / "bin")


def _load(path: Path) -> Profile:
    try:
        return load_profile(path)
    except PolicyError as exc:
        raise BadProfile(str(exc)) from exc


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("--save-rules", is_flag=True,
              help=f"Store the rules decided while it runs into the profile file "
              f"(also {SAVE_RULES_ENV}=1).")
@click.option("--mode", type=click.Choice(["ask", "enforce", "audit"]), default=None,
              help="Override the profile's mode.")
@click.option("--prompt", type=click.Choice(["dashboard", "line", "none"]), default=None,
              help="Override how ask mode asks.")
@click.argument("profile_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def exec_command(save_rules: bool, mode: str | None, prompt: str | None, profile_file: Path,
                 args: tuple[str, ...]) -> None:  # fmt: skip
    """Run the profile PROFILE_FILE with ARGS appended to its command.

    A malformed profile is refused whole (FILE:LINE:COL) before anything starts."""
    from sandbox.cli.run import build_config, finish, launch, run_defaults
    from snitch.core.policyfile import dump_policy

    profile = _load(profile_file)
    save_rules = save_rules or os.environ.get(SAVE_RULES_ENV) == "1"
    options: dict[str, Any] = {**run_defaults(), **profile.run_options(args)}
    if mode:
        options["mode"] = mode
    if prompt:
        options["prompt"] = prompt
    for volume in options.get("volumes", ()):
        host = volume.split(":", 1)[0]
        if not Path(host).exists():
            raise BadProfile(f"{profile_file}: mount source {host} does not exist")
    options["volumes"] = tuple(options.get("volumes", ()))
    options["command"] = tuple(options["command"])
    options["policy_text"] = dump_policy(profile.rules) if profile.rules else None
    client, config, prompt_kind = build_config(**options)
    seen: list[Session] = []
    status = launch(client, config, prompt_kind, started=seen.append)
    if save_rules and seen:
        try:
            added = save_session_rules(profile, seen[0])
        except (OSError, PolicyError) as exc:
            click.echo(f"coderun: could not save the rules into {profile_file}: {exc}", err=True)
        else:
            for line in added:
                click.echo(f"coderun: saved into {profile_file}: {line}", err=True)
    finish(status, config, prompt_kind)


def save_session_rules(profile: Profile, session: Session) -> list[str]:
    """The lasting rules a person decided in ``session`` (they decided a flow of it),
    appended to the profile's file; returns their descriptions."""
    from sandbox.profiles import describe_rule
    from snitch.core.store import RuleStore

    used = {e.rule_id for e in session.folder.read_log() if e.rule_id is not None}
    start = session.record.start or 0.0
    with RuleStore(paths.rules_db()) as store:
        decided = [r for r in store.list() if r.id in used and r.source == "prompt"
                   and r.created >= start]  # fmt: skip
    return [describe_rule(r) for r in append_rules(profile, decided)]


@click.group("profiles")
def profiles() -> None:
    """Executable profiles: a TOML file per sandboxed tool (docs/profiles.md)."""


@profiles.command("new")
@click.option("--image", default="bash", show_default=True, help="The sandbox's image.")
@click.option("-w", "--workdir", help="Mount the current folder here and work in it.")
@click.option("--mode", type=click.Choice(["ask", "enforce", "audit"]), default="ask",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: NAME.toml here).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def new_command(image: str, workdir: str | None, mode: str, output: Path | None, force: bool,
                name: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Write a starter profile NAME.toml that runs COMMAND (executable: ./NAME.toml ARGS)."""
    from sandbox.profiles import loads_profile

    path = output or Path(f"{name}{SUFFIX}")
    text = new_profile(image, list(command), name=name, workdir=workdir, mode=mode)
    try:
        loads_profile(text, path)
    except PolicyError as exc:
        raise BadProfile(str(exc)) from exc
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (--force to overwrite)")
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | EXECUTABLE)
    click.echo(f"wrote {path}: run it with ./{path.name} ARGS or `coderun exec {path}`")


@profiles.command("check")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))  # fmt: skip
def check_command(files: tuple[Path, ...]) -> None:
    """Check profiles whole; errors as FILE:LINE:COL: message (exit 2)."""
    bad = 0
    for path in files:
        try:
            profile = load_profile(path)
        except PolicyError as exc:
            click.echo(str(exc), err=True)
            bad += 1
            continue
        click.echo(f"{path}: ok ({profile.name}, {len(profile.rules)} rule(s))")
    if bad:
        raise SystemExit(BadProfile.exit_code)


@profiles.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def show_command(file: Path) -> None:
    """What a profile runs: image, command, mounts, limits and its rules."""
    profile = _load(_find(file))
    for key, value in describe(profile):
        click.echo(f"{key:<12} {value}")


@profiles.command("list")
def list_command() -> None:
    """The installed profiles (in coderun's bin folder)."""
    folder = bin_dir()
    found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not found:
        click.echo(f"no profiles in {folder} (coderun profiles install FILE)")
        return
    for path in found:
        try:
            profile = load_profile(path)
        except PolicyError as exc:
            click.echo(f"{path.name:<20} BROKEN {exc}")
            continue
        summary = profile.description or " ".join(profile.command)
        image = profile.options.get("image", "bash")
        click.echo(f"{path.name:<20} {image:<10} {summary}")
    if str(folder) not in os.environ.get("PATH", "").split(os.pathsep):
        click.echo(f"(add {folder} to PATH to run them by name)")


@profiles.command("install")
@click.option("--name", help="Command name (default: the file name without .toml).")
@click.option("--force", is_flag=True, help="Replace an installed profile of that name.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def install_command(name: str | None, force: bool, file: Path) -> None:
    """Copy a checked profile into coderun's bin folder, executable, to run by name."""
    _load(file)
    stem = file.name[: -len(SUFFIX)] if file.name.endswith(SUFFIX) else file.name
    target = bin_dir() / (name or stem)
    if "/" in (name or "") or target.name.startswith("."):
        raise click.BadParameter(f"{target.name!r} is no command name", param_hint="--name")
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists (--force to replace it)")
    text = file.read_text(encoding="utf-8")
    if not text.startswith("#!"):
        from sandbox.profiles import SHEBANG

        text = SHEBANG + "\n" + text
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o700)
    os.replace(tmp, target)
    click.echo(f"installed {target}")
    if str(target.parent) not in os.environ.get("PATH", "").split(os.pathsep):
        click.echo(f"add it to PATH to run `{target.name}`: export PATH=\"{target.parent}:$PATH\"")


def _find(file: Path) -> Path:
    """A file, or the name of an installed profile."""
    if file.exists() or "/" in str(file):
        return file
    installed = bin_dir() / file.name
    if not installed.exists():
        raise NotFound(f"no profile {file} (a file, or one in {bin_dir()})")
    return installed
