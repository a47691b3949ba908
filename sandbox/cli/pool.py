"""``coderun pool``: keep warm sessions so that runs start in a fraction of the time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import click

from sandbox.cli.options import network_options, take_settings
from sandbox.pool import daemon_info, entries, pool_dir
from snitch.core.settings import NetworkShape, Topology, to_json

WAIT_SECONDS = 120.0


@click.group("pool")
def pool() -> None:
    """Warm sessions: gateway + namespace pairs started ahead of runs (see docs)."""


@pool.command("start")
@click.option("--size", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Pairs kept ready.")
@click.option("--idle", type=float, default=900.0, show_default=True,
              help="Stop (and remove every pair) after this many seconds without a run.")
@network_options
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return once the pairs are ready.")
def pool_start(size: int, idle: float, wait: bool, **network: Any) -> None:
    """Start the pool daemon; runs with the same network options use its pairs."""
    # Start-up time: the Docker SDK loads only when a pool starts.
    from sandbox import gateway_pyc, images
    from sandbox.engine import docker_client

    if daemon_info() is not None:
        raise click.ClickException("a pool is running already (`coderun pool stop` first)")
    try:
        shape = NetworkShape(**take_settings(NetworkShape, network))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if shape.topology is not Topology.ROUTED:
        raise click.BadParameter("the pool keeps routed sessions only", param_hint="--topology")
    client = docker_client()
    tags = images.build(client)
    gateway_pyc.prepare(client, tags["gateway"])  # once per code: pairs start sooner
    shape = replace(shape, gateway_image=tags["gateway"])
    cmd = [sys.executable, "-m", "sandbox.pool", "--size", str(size), "--idle", str(idle),
           "--network", to_json(shape)]  # fmt: skip
    fd = os.open(pool_dir() / "daemon.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    log = os.fdopen(fd, "ab")  # handed to the daemon
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, env=dict(os.environ))  # fmt: skip
    log.close()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        info = daemon_info()
        if proc.poll() is not None:
            raise click.ClickException(f"the pool daemon exited; see {pool_dir() / 'daemon.log'}")
        if info is not None and (not wait or len(entries("ready")) >= size):
            ready = len(entries("ready"))
            click.echo(f"pool ready: {ready} warm session(s), daemon pid {proc.pid}")
            return
        time.sleep(0.05)
    raise click.ClickException("the pool did not get ready in time; see daemon.log")


@pool.command("stop")
def pool_stop() -> None:
    """Stop the daemon; it removes every pair no run holds."""
    info = daemon_info()
    if info is None:
        click.echo("no pool running")
        return
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + WAIT_SECONDS
    while daemon_info() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if daemon_info() is not None:
        raise click.ClickException(f"the pool daemon (pid {pid}) did not stop")
    click.echo("pool stopped")


@pool.command("status")
@click.option("--json", "as_json", is_flag=True)
def pool_status(as_json: bool) -> None:
    """The daemon and its pairs by state."""
    info = daemon_info()
    counts: dict[str, int] = {}
    for _, state, _ in entries():
        counts[state] = counts.get(state, 0) + 1
    if as_json:
        click.echo(json.dumps({"daemon": info, "pairs": counts}))
    elif info is None:
        click.echo("no pool running")
    else:
        pairs = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        click.echo(f"pool daemon pid {info['pid']}, size {info['size']}: {pairs}")
