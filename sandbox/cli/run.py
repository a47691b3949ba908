"""``coderun run``: a command in a new sandbox session."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sandbox import paths
from sandbox.cli.options import network_options, run_options, take_settings
from sandbox.cli.run_outputs import RUN_OPTIONS, RunOutputs, report_options
from sandbox.engine import docker_client
from snitch.core.model import Mode
from snitch.core.settings import NetworkShape, RunSettings, Topology

if TYPE_CHECKING:
    from docker import DockerClient

    from sandbox.config import SessionConfig
    from sandbox.session import Session


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--image", default="bash", show_default=True,
              help="Sandbox runtime: bash, python, node, go, ruby, rails, or a local "
              "image name.")
@click.option("--policy", "policy_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A policy file (TOML) whose rules apply to this run only.")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=None,
              help="ask: hold what no rule decides (default with a terminal); enforce: rules "
              "decide, the rest is denied (default without one); audit: allow and log all.")
@click.option("--prompt", type=click.Choice(["dashboard", "line", "none"]), default=None,
              help="How ask mode asks: the dashboard (default with a terminal), a line "
              "prompt, or not at all (wait for `coderun dashboard` or the deadline).")
@click.option("--upstream-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An extra CA the gateway trusts for upstream servers when intercepting.")
@network_options
@run_options
@click.option("--decision-service", "decision_service", metavar="URL",
              help="Ask this decision service (https://HOST:PORT, `coderun serve`) about "
              "flows no rule of this run decides; when it cannot be reached they are denied "
              "(docs/scale.md). Implies ask mode.")
@click.option("--decision-token-file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="The decision service's bearer token.")
@click.option("--decision-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The decision service's certificate (default: the one `coderun serve` "
              "made on this machine).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="A label of this session (rules scoped label:KEY=VALUE apply; the fleet "
              "dashboard shows them). Repeatable.")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for the sandbox.")
@click.option("--share", "share", multiple=True, metavar="PATH[:CONTAINER_PATH][:ro|rw]",
              help="Show a host file or folder in the sandbox through coderun's FUSE "
              "filesystem (read-only by default; at /shares/NAME without CONTAINER_PATH); "
              "every open is logged. Repeatable.")
@click.option("--share-max-mb", type=click.IntRange(min=1), default=100, show_default=True,
              help="A file of a writable --share cannot grow past this.")
@click.option("--secret", "secret", multiple=True, metavar="NAME[=@FILE]",
              help="A credential from this environment (or FILE): the sandbox's NAME is a "
              "placeholder the gateway replaces only in requests to the --secret-host hosts "
              "(see docs/files-and-secrets.md). Repeatable.")
@click.option("--secret-host", "secret_host", multiple=True, metavar="NAME=HOST[,HOST]",
              help="Hosts (names, * globs) a --secret's real value may be sent to.")
@click.option("--secret-file", "secret_file", multiple=True,
              metavar="PATH[:CONTAINER_PATH]=HOST[,HOST]",
              help="Share a credentials file read-only with placeholders where its secrets "
              "are (token, password, auth, ... values); the gateway releases them only to "
              "HOST. Repeatable.")
@click.option("-v", "--volume", "volumes", multiple=True, help="HOST:CONTAINER[:ro] bind mount.")
@click.option("-w", "--workdir", help="Working directory inside the sandbox (a fresh tmpfs "
              "unless a -v mount covers it).")
@click.option("--user", default=None, metavar="root|UID[:GID]",
              help="Run the sandbox as this user (default: uid 1000, the images' coderun).")
@click.option("--cpus", type=click.FloatRange(min=0.01), default=None,
              help="CPU quota of the sandbox (default: half of this machine's, at least 1).")
@click.option("--memory", default="2g", show_default=True,
              help="Memory limit of the sandbox (no swap beyond it).")
@click.option("--pids", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Most processes and threads the sandbox may have.")
@click.option("--tmpfs-size", default="1g", show_default=True,
              help="Size of each writable place of the read-only root (/tmp, /var/tmp, "
              "home, workdir); counts against --memory.")
@click.option("--runtime", default=None,
              help="Container runtime of the sandbox, e.g. runsc (gVisor) where the engine has it.")
@click.option("-p", "--publish", multiple=True, metavar="[BIND:]HOSTPORT:PORT",
              help="Forward 127.0.0.1:HOSTPORT (or BIND:HOSTPORT) to the sandbox's TCP PORT; "
              "each connection is logged as an inbound flow.")
@click.option("-i", "--interactive", is_flag=True,
              help="Give the sandbox this stdin (its end is passed on).")
@click.option("-t", "--tty", is_flag=True,
              help="Give the sandbox this terminal: keys, Ctrl-C and the window size go to "
              "it; ask mode then asks in `coderun dashboard` (another terminal).")
@click.option("--split/--no-split", default=None,
              help="With -t in ask mode inside tmux: open the dashboard in a split beside "
              "(default: ask).")
@report_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(**options: Any) -> None:
    """Run COMMAND (or ./script.sh, mounted read-only) in a new sandbox session."""
    outputs = RunOutputs.take(options)
    client, config, prompt = build_config(**options)
    sessions: list[Session] = []
    status = launch(client, config, prompt, started=sessions.append)
    finish(outputs.after(sessions, status), config, prompt)


def run_defaults() -> dict[str, Any]:
    """Every option of ``coderun run`` at its default (for runs made from a profile)."""
    with run.make_context("run", ["--", "true"]) as ctx:
        return {k: v for k, v in ctx.params.items() if k != "command" and k not in RUN_OPTIONS}


def build_config(
    image: str, policy_file: Path | None, mode: str | None, prompt: str | None,
    upstream_ca: Path | None, env: tuple[str, ...], volumes: tuple[str, ...],
    workdir: str | None, user: str | None, cpus: float | None, memory: str, pids: int,
    tmpfs_size: str, runtime: str | None, command: tuple[str, ...],
    policy_text: str | None = None, interactive: bool = False, tty: bool = False,
    split: bool | None = None, publish: tuple[str, ...] = (),
    secret: tuple[str, ...] = (), secret_host: tuple[str, ...] = (),
    secret_file: tuple[str, ...] = (), share: tuple[str, ...] = (), share_max_mb: int = 100,
    decision_service: str | None = None,
    decision_token_file: Path | None = None, decision_ca: Path | None = None,
    labels: tuple[str, ...] = (), **settings: Any,
) -> tuple[DockerClient, SessionConfig, str]:  # fmt: skip
    """Check the options and build the session's config (images built if needed);
    click errors for bad input, before any container starts. ``settings`` are the
    options of the settings model (sandbox/cli/options.py), by field name."""
    # Start-up time: `coderun run --help` loads neither Docker nor the session.
    from sandbox import gateway_pyc, images
    from sandbox.config import DEFAULT_USER, SessionConfig
    from sandbox.sandbox_container import parse_user
    from snitch.core.loglimit import LogLimits

    network = take_settings(NetworkShape, settings)
    run_settings = take_settings(RunSettings, settings)
    if settings:
        raise TypeError(f"unknown options of coderun run: {', '.join(settings)}")
    try:
        shape = NetworkShape(**network)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        log_limits = LogLimits.from_env(os.environ)
    except ValueError as exc:
        raise click.ClickException(f"bad CODERUN_LOG_* setting: {exc}") from exc

    if policy_file is not None:
        from snitch.core.policyfile import PolicyError, load_policy_file

        try:
            wanted = load_policy_file(policy_file).secrets  # [[secret]]: as --secret
        except PolicyError as exc:
            raise click.ClickException(str(exc)) from exc
        given = {spec.partition("=")[0] for spec in secret}
        for named in wanted:
            if named.name in given:
                raise click.UsageError(f"secret {named.name} is named by --secret and by "
                                       f"{policy_file}: name it once")  # fmt: skip
            if named.file is not None:  # relative to the policy file's folder
                where = policy_file.parent / Path(named.file).expanduser()
                named = replace(named, file=str(where))
            secret += (named.secret_spec(),)
            hosts = named.host_spec()
            secret_host += (hosts,) if hosts else ()
    try:
        parse_user(user or DEFAULT_USER)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from exc
    if shape.topology is Topology.POD:
        from sandbox.config import SessionError
        from sandbox.pod import check_user

        try:
            check_user(user or DEFAULT_USER)
        except SessionError as exc:
            raise click.BadParameter(str(exc), param_hint="--user") from exc
    for value, hint in ((memory, "--memory"), (tmpfs_size, "--tmpfs-size")):
        if not re.fullmatch(r"[1-9][0-9]*[kmgKMG]?", value):
            raise click.BadParameter(f"{value!r}: a size like 512m or 2g", param_hint=hint)
    from sandbox.ports import parse_publish

    for item in publish:
        try:
            parse_publish(item)
        except (ValueError, OSError) as exc:
            raise click.BadParameter(str(exc), param_hint="-p") from exc
    from sandbox.secrets import SecretSpecError, parse_secrets

    try:
        bindings, secret_values = parse_secrets(secret, secret_host, os.environ)
    except SecretSpecError as exc:
        raise click.UsageError(str(exc)) from exc
    from sandbox.shares.spec import ShareSpecError, parse_share

    try:
        shares = [parse_share(item) for item in share]
    except ShareSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--share") from exc
    from sandbox.shares.secretfile import secret_file_shares

    try:
        masked, file_bindings, file_values = secret_file_shares(
            secret_file, shares, set(secret_values)
        )
    except SecretSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--secret-file") from exc
    shares += masked
    bindings += file_bindings
    secret_values.update(file_values)
    paths.data_dir()  # a data dir that is not this user's is refused before anything starts
    from sandbox.decision import DecisionError, check_labels, credentials

    try:
        decision = credentials(decision_service, decision_token_file, decision_ca)
        labels = check_labels(labels)
    except (DecisionError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    if decision_service and mode not in (None, "ask"):
        raise click.BadParameter("a decision service decides held flows: ask mode only",
                                 param_hint="--mode")  # fmt: skip
    envs: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        envs[key] = value if sep else os.environ.get(key, "")
    args = list(command)
    script: Path | None = None
    first = Path(args[0])
    if ("/" in args[0] or first.suffix in (".sh", ".py")) and first.is_file():
        script, args = first, args[1:]
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if tty and not sys.stdin.isatty():
        raise click.UsageError("-t: the input is not a terminal (use -i alone for a pipe)")
    mode = mode or ("ask" if terminal or decision_service else "enforce")
    if (interactive or tty) and prompt in ("dashboard", "line"):
        raise click.BadParameter("the terminal is the sandbox's with -i/-t: ask mode asks in "
                                 "`coderun dashboard` (another terminal)", param_hint="--prompt")
    prompt = "none" if interactive or tty else prompt or ("dashboard" if terminal else "none")
    client = docker_client()
    if runtime and runtime not in (client.info().get("Runtimes") or {}):
        raise click.BadParameter(
            f"the Docker engine has no runtime {runtime!r} (for gVisor: install runsc and "
            "register it in /etc/docker/daemon.json, see docs/install.md)",
            param_hint="--runtime",
        )
    # The images this run needs, not every one `coderun images build` makes.
    tags = images.build(client, ("gateway", *images.runtime_images(image)))
    gateway_pyc.prepare(client, tags["gateway"])  # once per code: the gateway starts sooner
    run_part = RunSettings(command=tuple(args), image=image, mode=Mode(mode),
                           log_limits=log_limits, secrets=bindings,
                           decision_service=decision_service, labels=labels,
                           **run_settings)  # fmt: skip
    config = SessionConfig(
        image=images.resolve_runtime(client, image, tags),
        network=replace(shape, gateway_image=tags["gateway"]), run=run_part,
        policy_file=policy_file, policy_text=policy_text, upstream_ca=upstream_ca, env=envs,
        volumes=list(volumes), workdir=workdir, script=script, user=user or DEFAULT_USER,
        cpus=cpus, memory=memory, pids=pids, tmpfs_size=tmpfs_size, runtime=runtime,
        tty=tty, stdin=interactive or tty, split=split, publish=list(publish),
        secret_values=secret_values, shares=shares, share_max_mb=share_max_mb,
        decision_credentials=decision,
    )  # fmt: skip
    return client, config, prompt


def launch(
    client: DockerClient,
    config: SessionConfig,
    prompt: str,
    started: Callable[[Session], None] | None = None,
) -> int:
    """Run the session to its end (with the dashboard or line prompt in ask mode)."""
    # Start-up time: the session's modules (and Textual, a terminal) load only to run.
    from sandbox.runner import run_session

    if config.stdin:
        from sandbox.terminal import TerminalFront

        front = TerminalFront(config.tty, config.split)
        return run_session(client, config, front, started=started)
    if config.run.mode == Mode.ASK and prompt != "none":
        from sandbox.cli.dashboard import dashboard_keymap
        from sandbox.interactive import run_interactive

        keymap = dashboard_keymap() if prompt == "dashboard" else {}
        return run_interactive(client, config, prompt, started, keymap)
    return run_session(client, config, started=started)


def finish(status: int, config: SessionConfig, prompt: str) -> None:
    """Leave with ``status`` (a dashboard run leaves the ordinary way: its terminal)."""
    if config.run.mode == Mode.ASK and prompt != "none":
        sys.exit(status)
    _exit_now(status)


def _exit_now(status: int) -> None:
    """Leave at once: the session is cleaned up and its output written; tearing the
    interpreter down (a tenth of a second with the Docker SDK loaded) adds nothing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
