"""``coderun serve``: the decision service for many gateways (docs/scale.md)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sandbox import paths

if TYPE_CHECKING:
    import ssl

    from snitch.core.store import RuleStore

DEFAULT_PORT = 8743


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); click's error when bad."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"want HOST:PORT, not {text!r}", param_hint="--listen")
    return host, int(port)


@click.command("serve")
@click.option(
    "--listen",
    default=f"127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (HTTPS only).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The bearer token every client must send (made, 0600, if missing).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Certificate (PEM); without it one is made for HOST in the data dir.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM).",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rule store (default: this machine's, $CODERUN_HOME/rules/rules.db).",
)
def serve_command(listen: str, token_file: Path, tls_cert: Path | None, tls_key: Path | None,
                  rules_path: Path | None) -> None:  # fmt: skip
    """Decide for many gateways: one rule store, pending decisions streamed to dashboards.

    Gateways join with `coderun run --decision-service https://HOST:PORT
    --decision-token-file F [--label K=V]`; dashboards with `coderun dashboard --server
    https://HOST:PORT --token-file F`. Clients trust only this service's certificate.
    """
    # Start-up time: the service's modules load only when it runs.
    from snitch.core.store import RuleStore, StoreError
    from snitch.fleet.tls import TlsError, ensure_certificate, read_token, server_context

    host, port = parse_listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        token = read_token(token_file, create=True)
        if tls_cert is None or tls_key is None:
            tls_cert, tls_key = ensure_certificate(paths.fleet_tls_dir(), [host])
        context = server_context(tls_cert, tls_key)
    except TlsError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        store = RuleStore(rules_path or paths.rules_db())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    with contextlib.closing(store):
        asyncio.run(_serve(store, token, context, host, port, tls_cert))


async def _serve(store: RuleStore, token: str, context: ssl.SSLContext, host: str, port: int,
                 cert: Path) -> None:  # fmt: skip
    from snitch.fleet.hub import Fleet
    from snitch.fleet.rules import FleetRules
    from snitch.fleet.server import FleetServer

    server = FleetServer(Fleet(FleetRules(store)), token, context)
    try:
        bound = await server.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"decision service on https://{shown}:{bound} (certificate {cert}; "
               f"rules {store.path}); Ctrl-C stops it", err=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        click.echo("decision service stopped", err=True)
