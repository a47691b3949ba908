"""``coderun k8s render``: the manifests that run a command sandboxed in a Kubernetes pod.

The options are ``coderun run``'s (made from the same settings model), or a profile's
(``--profile FILE``), never both; plus what only a cluster has (``--job``,
``--runtime-class``, ``--namespace``, ``--name``, ``--decision-service``,
``--gateway-image``, ``--output``). Everything is checked before anything is printed: a
bad option is a usage error (exit 2). It reads the profile, the policy file and the
session logs (for the addresses of names, as ``coderun export`` does); it starts
nothing and talks to no Docker engine or cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sandbox import paths
from sandbox.cli.options import EnumChoice, settings_options, take_settings
from sandbox.k8s.spec import (
    DNS_LABEL,
    DecisionService,
    Output,
    RenderSpec,
    SpecError,
    Workload,
)
from snitch.core.model import Mode, Rule
from snitch.core.policyfile import PolicyError
from snitch.core.settings import NetworkShape, RunSettings

# Options only a cluster has: they go with --profile as with run options.
CLUSTER_OPTIONS = ("profile_file", "job", "runtime_class", "namespace", "name",
                   "decision_service", "decision_secret", "labels", "gateway_image",
                   "output", "command")  # fmt: skip
# What a profile may say that a pod cannot do (a host's folders, its terminal, ports).
HOST_ONLY = {"volumes": "mounts", "publish": "publish", "secret": "secrets",
             "secret_host": "secret_hosts",
    "secret_file": "secret_files", "share": "shares", "interactive": "interactive",
             "tty": "tty", "intercept_tls": "intercept_tls",
             "egress_network": "egress_network"}  # fmt: skip
NETWORK_SKIP = ("egress_network", "intercept_tls", "topology")
GATEWAY_IMAGE = "coderun-gateway:latest"  # `coderun images build` tags it so


@click.group("k8s")
def k8s_group() -> None:
    """Kubernetes: the manifests that run a sandbox in a cluster (docs/scale.md)."""


@k8s_group.command("render", context_settings={"allow_interspersed_args": False})
@click.option(
    "--profile",
    "profile_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An executable profile (docs/profiles.md): its image, command, limits "
    "and rules. Excludes the run options.",
)
@click.option(
    "--image",
    default="bash",
    show_default=True,
    help="The workload's image: bash, python, node, go, ruby, rails (coderun's, "
    "as coderun-sandbox-NAME:latest) or an image reference.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A policy file (TOML) whose rules the pod's gateway applies.",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=None,
    help="enforce (the default): rules decide, the rest is denied; ask (the default with "
    "--decision-service): a person decides through the decision service; audit: allow "
    "and log all.",
)
@settings_options(NetworkShape, skip=NETWORK_SKIP)
@settings_options(RunSettings, skip=("profile",))
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE for the workload.")
@click.option("-w", "--workdir", help="Working directory of the workload (a fresh scratch volume).")
@click.option(
    "--user",
    default="1000",
    show_default=True,
    metavar="UID[:GID]",
    help="The workload's uid (non-root, not the gateway's).",
)
@click.option(
    "--cpus", type=click.FloatRange(min=0.01), default=None, help="CPU limit of the workload."
)
@click.option("--memory", default="2g", show_default=True, help="Memory limit of the workload.")
@click.option(
    "--tmpfs-size",
    default="1g",
    show_default=True,
    help="Size of each memory-backed scratch volume (/tmp, /var/tmp, home, workdir).",
)
@click.option("--job", is_flag=True, help="A batch/v1 Job that runs the pod once (not a Pod).")
@click.option(
    "--runtime-class",
    metavar="NAME",
    help="runtimeClassName of the pod, e.g. gvisor where the cluster has it.",
)
@click.option("--namespace", help="metadata.namespace of every object.")
@click.option(
    "--name", help="Name of the pod and its objects (default: the profile's name, or coderun)."
)
@click.option(
    "--decision-service",
    metavar="URL",
    help="https://HOST[:PORT] of the coderun decision service (`coderun serve`) the "
    "gateway asks about held flows.",
)
@click.option(
    "--decision-secret",
    metavar="NAME",
    help="The Secret with the decision service's token and certificate (key "
    'coderun-decision.json: {"token": ..., "ca": PEM}; docs/scale.md).',
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label of the pod and of its session (rules scoped label:KEY=VALUE apply).",
)
@click.option(
    "--gateway-image",
    default=GATEWAY_IMAGE,
    show_default=True,
    help="The gateway's image, with coderun's gateway code in it.",
)
@click.option(
    "--output",
    type=EnumChoice(Output),
    default=Output.KUBERNETES.value,
    show_default=True,
    help="kubernetes: a Pod or Job; agent-sandbox: "
    "kubernetes-sigs agent-sandbox Sandbox and SandboxTemplate.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def render_command(ctx: click.Context, /, **options: Any) -> None:
    """Print the manifests that run COMMAND in a pod: init step, gateway sidecar, workload,
    the policy's ConfigMap and the NetworkPolicies."""
    # Start-up time: PyYAML and the exporters load only to render.
    from sandbox.k8s.render import render

    try:
        rendered = render(build_spec(ctx, options))
    except SpecError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.option) from exc
    for warning in rendered.warnings:
        click.echo(f"coderun: warning: {warning}", err=True)
    click.echo(rendered.text, nl=False)


def _given(ctx: click.Context, options: dict[str, Any]) -> list[str]:
    """The flags of the run options given on the command line."""
    source = click.core.ParameterSource.COMMANDLINE
    flags = []
    for param in ctx.command.params:
        name = param.name or ""
        run_option = name in options and name not in CLUSTER_OPTIONS
        if run_option and ctx.get_parameter_source(name) is source:
            flags.append(param.opts[-1] if param.opts else name)
    return flags


def _from_profile(path: Path, options: dict[str, Any],
                  args: tuple[str, ...]) -> tuple[dict[str, Any], list[Rule], str]:  # fmt: skip
    """The options ``path`` says (over the defaults), its rules and its name."""
    from sandbox.profiles import load_profile

    try:
        profile = load_profile(path)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--profile") from exc
    said = profile.run_options(args)
    for key, word in HOST_ONLY.items():
        if said.get(key):
            raise click.BadParameter(f"{path}: {word!r} needs this machine; a pod cannot "
                                     "have it", param_hint="--profile")  # fmt: skip
    said.pop("prompt", None)  # no terminal in a pod: ask mode asks the decision service
    said.pop("pids", None)  # a cluster limits pids per node (podPidsLimit), not per container
    runtime = said.pop("runtime", None)
    if runtime is not None and runtime != "runsc":
        raise click.BadParameter(f"{path}: runtime {runtime!r}: give --runtime-class "
                                 "instead", param_hint="--profile")  # fmt: skip
    name = said.pop("profile")
    merged = {**options, **said}
    if runtime == "runsc":
        merged["runtime_class"] = "gvisor"
    return merged, list(profile.rules), name


def _user(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not uid.isdigit() or (sep and not gid.isdigit()):
        raise SpecError("--user", f"{text!r}: UID or UID:GID (numbers; non-root)")
    return int(uid), int(gid) if sep else int(uid)


def _image(name: str) -> str:
    # Start-up time (and no Docker for --help): the runtimes' names live with the images.
    from sandbox.images import RUNTIMES

    return f"coderun-{RUNTIMES[name]}:latest" if name in RUNTIMES else name


def _resolutions() -> dict[str, tuple[str, ...]]:
    """Name -> addresses the session logs saw (the exports write addresses for names)."""
    from sandbox.records import all_logs
    from snitch.review.logquery import resolutions

    seen = resolutions(all_logs(paths.sessions_dir()))
    return {name: tuple(addrs) for name, addrs in seen.items()}


def build_spec(ctx: click.Context, options: dict[str, Any]) -> RenderSpec:
    """The render the options (or the profile) ask for; click errors for bad ones."""
    cluster = {key: options.pop(key) for key in CLUSTER_OPTIONS}
    args: tuple[str, ...] = tuple(cluster["command"])
    rules: list[Rule] = []
    profile_name: str | None = None
    if cluster["profile_file"] is not None:
        given = _given(ctx, options)
        if given:
            raise click.UsageError(f"--profile FILE and {', '.join(given)}: the profile says "
                                   "the run's options; give one or the other")  # fmt: skip
        options, rules, profile_name = _from_profile(cluster["profile_file"], options, args)
        args = tuple(options.pop("command"))
        cluster["runtime_class"] = cluster["runtime_class"] or options.pop("runtime_class", None)
    if options.get("policy_file") is not None:
        from snitch.core.policyfile import load_policy

        try:
            rules += load_policy(options["policy_file"])
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from exc
    url = cluster["decision_service"]
    mode = options["mode"] or (Mode.ASK if url else Mode.ENFORCE)
    name = cluster["name"] or profile_name or "coderun"
    labels = [*cluster["labels"], f"pod={name}"]
    if cluster["namespace"]:
        labels.append(f"namespace={cluster['namespace']}")
    try:
        network = NetworkShape(**take_settings(NetworkShape, options))
        run = RunSettings(command=args, image=options["image"], mode=Mode(mode),
                          profile=profile_name, decision_service=url, labels=tuple(labels),
                          **take_settings(RunSettings, options))  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    uid, gid = _user(str(options["user"]))
    env = []
    for item in options["env"]:
        key, _, value = str(item).partition("=")
        env.append((key, value))
    service = DecisionService.parse(url, cluster["decision_secret"]) if url else None
    if url is None and cluster["decision_secret"]:
        raise SpecError("--decision-secret", "needs --decision-service")
    if cluster["name"] is None and profile_name and not DNS_LABEL.fullmatch(profile_name):
        raise SpecError("--name", f"the profile's name {profile_name!r} is no Kubernetes "
                        "name (lower-case letters, digits and '-'): give --name")  # fmt: skip
    return RenderSpec(
        name=name,
        workload=Workload(
            image=_image(options["image"]), command=args, uid=uid, gid=gid, env=tuple(env),
            workdir=options.get("workdir"), cpus=options.get("cpus"),
            memory=str(options["memory"]), tmpfs_size=str(options["tmpfs_size"]),
        ),
        gateway_image=cluster["gateway_image"],
        network=network,
        run=run,
        rules=tuple(rules),
        namespace=cluster["namespace"],
        job=cluster["job"],
        output=cluster["output"],
        runtime_class=cluster["runtime_class"],
        decision_service=service,
        pod_labels=tuple(label.partition("=")[::2] for label in cluster["labels"]),
        resolutions=_resolutions(),
    )  # fmt: skip
