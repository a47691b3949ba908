"""A real session in ask mode, driven through the real dashboard in tmux (issue 4), and
the sandbox's output trying to take over that terminal (issue 12, item 2)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.store import RuleStore
from tests.e2e.conftest import coderun_cmd, latest_log, wait_for
from tests.needs import need_tool
from tui.widgets.pending import SETTLE_SECONDS

PROBE = Path(__file__).with_name("probe.py")

pytestmark = pytest.mark.usefixtures("tmux_installed")


@pytest.fixture(scope="module")
def tmux_installed() -> None:
    need_tool("tmux")


class Tmux:
    """A terminal of its own: a tmux server on a private socket (its buffers, titles and
    options are this test's), which takes OSC 52 clipboard writes as paste buffers."""

    def __init__(self, command: str, width: int = 100, height: int = 30) -> None:
        self.name = f"coderun-test-{uuid.uuid4().hex[:8]}"
        self._conf = tempfile.NamedTemporaryFile("w", suffix=".tmux.conf")  # noqa: SIM115
        self._conf.write("set -g set-clipboard on\nset -g allow-rename on\n")
        self._conf.flush()
        self.tmux(["-f", self._conf.name, "new-session", "-d", "-s", self.name, "-x",
                   str(width), "-y", str(height), command])  # fmt: skip
        self._socket = Path(self.tmux(["display-message", "-p", "#{socket_path}"]).strip())

    def tmux(self, args: list[str], check: bool = True) -> str:
        proc = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True,
                              check=check)  # fmt: skip
        return proc.stdout

    def screen(self) -> str:
        return self.tmux(["capture-pane", "-p", "-t", self.name], check=False)

    def screen_with_attributes(self) -> str:
        """``capture-pane -e``: the text with the attributes tmux holds for every cell."""
        return self.tmux(["capture-pane", "-p", "-e", "-t", self.name], check=False)

    def buffers(self) -> str:
        """tmux's paste buffers: an OSC 52 clipboard write from the pane makes one."""
        return self.tmux(["list-buffers"], check=False)

    def title(self) -> str:
        return self.tmux(["display-message", "-p", "-t", self.name, "#{pane_title}"])

    def wait_screen(self, text: str, timeout: float = 40) -> str:
        return str(wait_for(lambda: text in (s := self.screen()) and s, f"{text!r} on screen",
                            timeout))  # fmt: skip

    def wait_row(self, name: str, timeout: float = 40) -> str:
        """A pending row for ``name`` (the title bar also holds names: rows have /tcp),
        once keys act on it: the dashboard ignores them for SETTLE_SECONDS after the rows
        changed under the cursor (a known timer, not a guess)."""

        def row() -> str:
            screen = self.screen()
            return screen if any(name in ln and "/tcp" in ln for ln in screen.splitlines()) else ""

        found = str(wait_for(row, f"a pending row for {name}", timeout))
        time.sleep(SETTLE_SECONDS + 0.2)
        return found

    def keys(self, *keys: str) -> None:
        self.tmux(["send-keys", "-t", self.name, *keys])

    def kill(self) -> None:
        self.tmux(["kill-server"], check=False)
        self._conf.close()
        self._socket.unlink(missing_ok=True)


def start_run(home: Path, internet: DemoInternet, exit_file: Path, *args: str) -> Tmux:
    """``coderun run --mode ask ARGS`` in a new terminal; its status goes to exit_file."""
    run = coderun_cmd("run", "--mode", "ask", "--egress-network", internet.network_name,
                      "--dns-upstream", internet.ip, *args)  # fmt: skip
    shell = (f"cd {shlex.quote(str(Path.cwd()))} && CODERUN_HOME={shlex.quote(str(home))} "
             f"{' '.join(shlex.quote(a) for a in run)}; "
             f"echo $? > {exit_file}")  # fmt: skip
    return Tmux(f"bash -c {shlex.quote(shell)}")


@pytest.fixture()
def tmux_run(home: Path, internet: DemoInternet, tags: dict[str, str],
             tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:  # fmt: skip
    exit_file = tmp_path / "exit"
    tmux = start_run(home, internet, exit_file, "-v", f"{PROBE}:/probe.py:ro",
                     "-e", "PROBE_TIMEOUT=120", "--",
                     "python3", "/probe.py", "http:http://api.example.test/dashboard",
                     "connect:evil.example.test:80")  # fmt: skip
    try:
        yield tmux, exit_file
    finally:
        tmux.kill()


def test_dashboard_allows_always_and_denies(
    tmux_run: tuple[Tmux, Path], home: Path, internet: DemoInternet,
) -> None:
    tmux, exit_file = tmux_run
    tmux.wait_row("api.example.test")
    tmux.keys("A")  # allow always: this host, this port; the rule is shown first
    tmux.wait_screen("allow api.example.test:80/tcp")
    tmux.keys("y")
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


# The sandbox holds a connection to evil-dash.example.test:4444 and meanwhile prints, on
# both streams, what would repaint that row as pypi.test 443/tcp, retitle the terminal and
# write the clipboard, until its connection is decided.
HOSTILE_SCRIPT = r"""
import socket, sys, threading, time
ESC = "\x1b"
ATTACK = (ESC + "]0;pwned-title\x07" + ESC + "]52;c;cHlwaS50ZXN0\x07" + ESC + "[2J" + ESC + "[H"
          + ESC + "[6;1H     30s  pypi.test                      443/tcp" + ESC + "[K"
          + ESC + "]2;pwned-title2\x07" + "\x9b" + "1;1H" + ESC + "[8mhidden" + ESC + "[0m\n")
done = threading.Event()
def hold():
    try:
        socket.create_connection(("evil-dash.example.test", 4444), timeout=150)
    except OSError as exc:
        print("connect:", type(exc).__name__, flush=True)
    done.set()
threading.Thread(target=hold, daemon=True).start()
while not done.wait(0.5):
    sys.stdout.write(ATTACK); sys.stdout.flush()
    sys.stderr.write(ATTACK); sys.stderr.flush()
print("hostile script done", flush=True)
"""
SGR = re.compile(r"\x1b\[[0-9;:]*m")


def test_output_pane_cannot_take_over_the_terminal(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE_SCRIPT)
    exit_file = tmp_path / "exit"
    tmux = start_run(home, internet, exit_file, "-v", f"{script}:/hostile.py:ro", "--",
                     "python3", "/hostile.py")  # fmt: skip
    try:
        tmux.wait_row("evil-dash.example.test")
        tmux.wait_screen("pypi.test")  # the attack has been printed (twice a second)
        tmux.wait_screen("pypi.test")
        assert tmux.buffers() == ""  # no clipboard write reached the terminal
        assert "pwned" not in tmux.title()
        tmux.wait_screen("\\x1b]52;c;cHlwaS50ZXN0")  # the attack, shown as text in the pane
        tmux.wait_screen("\\x1b]0;pwned-title")
        lines = [SGR.sub("", line) for line in tmux.screen_with_attributes().splitlines()]
        assert not [line for line in lines if "\x1b" in line or "\x9b" in line], lines
        border = next(i for i, line in enumerate(lines) if "output" in line and "──" in line)
        rows = [line for line in lines[:border] if "4444/tcp" in line]
        assert rows and all("evil-dash.example.test" in row for row in rows), lines
        assert not [line for line in lines[:border] if "pypi.test" in line], lines
        tmux.keys("d")  # deny it: the script ends
        tmux.wait_screen("hostile script done", timeout=60)
        assert tmux.buffers() == "" and "pwned" not in tmux.title()
        tmux.keys("q")
        wait_for(exit_file.exists, "coderun to exit")
        assert exit_file.read_text().strip() == "0"
    finally:
        tmux.kill()
