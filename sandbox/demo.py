"""``coderun demo``: an untrusted install script against a local demo internet.

With a terminal, the script runs in ask mode under the dashboard, so you decide each
connection yourself; without one, it runs in enforce mode with examples/demo-policy.toml
and the traffic log is printed. The demo keeps its own data dir
(``$CODERUN_HOME/demo``), so "always" decisions carry over to the next demo run and
nothing is added to your real rules. The demo internet is a container on a network of
its own; nothing leaves this machine. The script also tries to read a fake
``~/.aws/credentials`` (a --share of a file the demo makes): with a terminal the open
is held in the dashboard's Pending tab for you to decide, without one no file rule
allows it and it is refused; either way a ``file`` line. And it sends its token (a
placeholder) to a host it is not bound to (refused, a ``leak``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import docker

from sandbox import images, paths
from sandbox.config import SessionConfig
from sandbox.data import examples_dir
from sandbox.internet import start_internet
from sandbox.records import find_session, format_entry
from sandbox.runner import run_session
from sandbox.secrets import placeholder
from sandbox.shares.spec import Share, parse_share
from snitch.core.loglimit import LogLimits
from snitch.core.model import Mode
from snitch.core.session_dir import SessionDir
from snitch.core.settings import NetworkShape, RunSettings, SecretBinding


def run_demo(client: docker.DockerClient, terminal: bool | None = None) -> int:
    if terminal is None:
        terminal = sys.stdin.isatty() and sys.stdout.isatty()
    home = paths.data_dir() / "demo"
    os.environ["CODERUN_HOME"] = str(home)
    tags = images.build(client)
    examples = examples_dir()
    print("starting the demo internet (api/evil/tracker/exfil.example.test) ...", file=sys.stderr)
    internet = start_internet(client, tags["internet"])
    try:
        ca = paths.data_dir() / "demo-internet-ca.pem"
        paths.write_private(ca, internet.ca_pem())
        shares, secrets, values = demo_files(home)
        config = SessionConfig(
            image=tags["sandbox-bash"], script=examples / "install.sh",
            network=NetworkShape(gateway_image=tags["gateway"],
                                 egress_network=internet.network_name,
                                 dns_upstream=internet.ip, intercept_tls=True),
            run=RunSettings(image="bash", mode=Mode.ASK if terminal else Mode.ENFORCE,
                            log_limits=LogLimits.from_env(os.environ), secrets=secrets),
            policy_file=None if terminal else examples / "demo-policy.toml", upstream_ca=ca,
            shares=shares, secret_values=values,
            env={b.name: b.placeholder for b in secrets},
        )  # fmt: skip
        if terminal:
            # Start-up time: Textual loads only with a terminal.
            from sandbox.interactive import run_interactive

            status = run_interactive(client, config, "dashboard")
        else:
            status = run_session(client, config)
        print_summary()
        return status
    finally:
        internet.stop()


FAKE_CREDENTIALS = """[default]
aws_access_key_id = AKIADEMO0000NOTREAL
aws_secret_access_key = demo/only/not/a/real/key/0000000000
"""


def demo_files(home: Path) -> tuple[list[Share], tuple[SecretBinding, ...], dict[str, str]]:
    """A fake ~/.aws/credentials (made here, never the user's), shared when this machine
    has FUSE, and a fake API token bound to api.example.test (docs/files-and-secrets.md)."""
    shares: list[Share] = []
    if shutil.which("fusermount3") and Path("/dev/fuse").exists():
        fake = home / "demo-aws-credentials"
        home.mkdir(mode=paths.PRIVATE_DIR, parents=True, exist_ok=True)
        fake.write_text(FAKE_CREDENTIALS)
        shares.append(parse_share(f"{fake}:/home/coderun/.aws/credentials"))
    token = SecretBinding("FANCY_TOKEN", placeholder(), ("api.example.test",))
    return shares, (token,), {"FANCY_TOKEN": "demo-token-not-real"}


def print_summary() -> None:
    folder = find_session(paths.sessions_dir(), None)
    if folder is None:
        return
    print(f"\n--- what the script did (coderun log {folder.name}) ---")
    for entry in SessionDir(folder).read_log():
        if entry.kind != "event":
            print(format_entry(entry))
    print(
        f"\nRules and logs of the demo live in {paths.data_dir()}; "
        "run the demo again and your 'always' decisions apply."
    )
