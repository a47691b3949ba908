"""Issue 4: a real session in ask mode, driven through the real dashboard in tmux."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.store import RuleStore
from tests.e2e.conftest import coderun_cmd, latest_log, wait_for

PROBE = Path(__file__).with_name("probe.py")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, command: str, width: int = 100, height: int = 30) -> None:
        self.name = f"coderun-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width),
                        "-y", str(height), command], check=True)  # fmt: skip

    def screen(self) -> str:
        proc = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True)  # fmt: skip
        return proc.stdout

    def wait_screen(self, text: str, timeout: float = 40) -> str:
        return str(wait_for(lambda: text in (s := self.screen()) and s, f"{text!r} on screen",
                            timeout))  # fmt: skip

    def wait_row(self, name: str, timeout: float = 40) -> str:
        """A pending row for ``name`` (the title bar also holds names: rows have /tcp)."""

        def row() -> str:
            screen = self.screen()
            return screen if any(name in ln and "/tcp" in ln for ln in screen.splitlines()) else ""

        return str(wait_for(row, f"a pending row for {name}", timeout))

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture()
def tmux_run(home: Path, internet: DemoInternet, tags: dict[str, str],
             tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:  # fmt: skip
    exit_file = tmp_path / "exit"
    run = coderun_cmd("run", "--mode", "ask", "--egress-network", internet.network_name,
                      "--dns-upstream", internet.ip, "-v", f"{PROBE}:/probe.py:ro",
                      "-e", "PROBE_TIMEOUT=120", "--",
                      "python3", "/probe.py", "http:http://api.example.test/dashboard",
                      "connect:evil.example.test:80")  # fmt: skip
    shell = (f"cd {shlex.quote(str(Path.cwd()))} && CODERUN_HOME={shlex.quote(str(home))} "
             f"{' '.join(shlex.quote(a) for a in run)}; "
             f"echo $? > {exit_file}")  # fmt: skip
    tmux = Tmux(f"bash -c {shlex.quote(shell)}")
    try:
        yield tmux, exit_file
    finally:
        tmux.kill()


def test_dashboard_allows_always_and_denies(
    tmux_run: tuple[Tmux, Path], home: Path, internet: DemoInternet,
) -> None:
    tmux, exit_file = tmux_run
    tmux.wait_row("api.example.test")
    tmux.keys("A")  # allow always: this host, this port
    tmux.wait_row("evil.example.test")
    tmux.keys("d")  # deny once
    # The script finishes; its output is in the dashboard's output pane.
    tmux.wait_screen("hello from api.example.test /dashboard")
    screen = tmux.wait_screen("ConnectionRefused")
    assert "evil.example.test" in screen
    tmux.keys("q")
    wait_for(exit_file.exists, "coderun to exit")
    assert exit_file.read_text().strip() == "0"
    verdicts = {e.names[0]: e.verdict for e in latest_log(home) if e.kind == "flow" and e.names}
    assert verdicts == {"api.example.test": "allow", "evil.example.test": "deny"}
    rules = RuleStore(home / "rules" / "rules.db").list()
    assert [(r.action, r.host, r.port_lo) for r in rules] == [("allow", "api.example.test", 80)]
    # The next run asks nothing: the stored rule decides.
    again = subprocess.run(
        coderun_cmd("run", "--mode", "ask", "--prompt", "none", "--ask-timeout", "5",
                    "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
                    "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
                    "http:http://api.example.test/again"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert '"ok": true' in again.stdout, (again.stdout, again.stderr)
    assert not [e for e in latest_log(home) if e.kind == "flow" and "ask" in e.reason]
