"""``coderun run -it`` (issue 16): an interactive bash in the sandbox, driven through
tmux, while its flow is approved from ``coderun dashboard`` in a second tmux window.

The terminal is the sandbox's: keys, Ctrl-C and the window size reach bash; the run
rings the bell when something waits; the exit status is bash's; nothing is left behind.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from sandbox.internet import DemoInternet
from tests.e2e.conftest import Result, coderun_cmd, latest_log, leftovers, wait_for
from tests.e2e.test_dashboard_tmux import Tmux
from tests.needs import need_tool
from tui.widgets.pending import SETTLE_SECONDS

PROBE = Path(__file__).with_name("probe.py")

pytestmark = pytest.mark.usefixtures("tmux_installed")


@pytest.fixture(scope="module")
def tmux_installed() -> None:
    need_tool("tmux")


class Windows(Tmux):
    """The Tmux terminal with more windows: ``win`` 0 is the first."""

    def target(self, win: int) -> str:
        return f"{self.name}:{win}"

    def screen_of(self, win: int) -> str:
        return self.tmux(["capture-pane", "-p", "-t", self.target(win)], check=False)

    def wait_in(self, win: int, text: str, timeout: float = 60, count: int = 1) -> str:
        def seen() -> str:
            screen = self.screen_of(win)
            return screen if screen.count(text) >= count else ""

        return str(wait_for(seen, f"{text!r} (x{count}) in window {win}", timeout))

    def keys_to(self, win: int, *keys: str) -> None:
        self.tmux(["send-keys", "-t", self.target(win), *keys])

    def line(self, win: int, text: str) -> None:
        self.tmux(["send-keys", "-t", self.target(win), "-l", text])
        self.tmux(["send-keys", "-t", self.target(win), "Enter"])


def _shell(home: Path, command: list[str], then: str = "") -> str:
    line = (f"cd {shlex.quote(str(Path.cwd()))} && CODERUN_HOME={shlex.quote(str(home))} "
            f"{shlex.join(command)}{then}")  # fmt: skip
    return f"bash -c {shlex.quote(line)}"


@pytest.fixture()
def terminal(home: Path, internet: DemoInternet, tags: dict[str, str],
             tmp_path: Path) -> Iterator[tuple[Windows, Path, Path]]:  # fmt: skip
    exit_file, raw = tmp_path / "exit", tmp_path / "raw"
    run = coderun_cmd("run", "-it", "--no-split", "--mode", "ask", "--image", "python",
                      "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
                      "-v", f"{PROBE}:/probe.py:ro", "-e", "PROBE_TIMEOUT=120", "-e", "PS1=sbx$ ",
                      "--", "bash", "--norc", "-i")  # fmt: skip
    term = Windows(_shell(home, run, f"; echo $? > {exit_file}"), width=100, height=30)
    # Every byte the pane gets, for the bell (a screen does not show it).
    term.tmux(["pipe-pane", "-o", "-t", term.target(0), f"cat >> {shlex.quote(str(raw))}"])
    try:
        yield term, exit_file, raw
    finally:
        term.kill()


def test_interactive_bash_with_a_flow_approved_from_a_second_window(
    terminal: tuple[Windows, Path, Path], home: Path, client: docker.DockerClient,
) -> None:  # fmt: skip
    term, exit_file, raw = terminal
    term.wait_in(0, "coderun dashboard")  # the run says where ask mode asks
    term.wait_in(0, "sbx$")
    # Keys reach bash, and its answers come back.
    term.line(0, "echo $((6 * 7)) $(id -u)")
    term.wait_in(0, "42 1000")
    # The window size follows the terminal's.
    term.tmux(["resize-window", "-t", term.target(0), "-x", "120", "-y", "40"])
    wait_for(lambda: (term.line(0, "stty size") or True) and "40 120" in term.screen_of(0),
             "the sandbox's tty to be 40x120", timeout=20)  # fmt: skip
    # Ctrl-C goes to the sandboxed program (bash's child), not to coderun.
    term.line(0, "sleep 60; echo slept-$((1 + 1))")
    time.sleep(1)
    term.keys_to(0, "C-c")
    term.line(0, "echo status=$?")
    term.wait_in(0, "status=130")
    assert "slept-2" not in term.screen_of(0)

    # A connection from the sandbox waits for a decision: the bell rings in this
    # terminal, and the dashboard in a second window decides it.
    term.line(0, "python3 /probe.py http:http://api.example.test/interactive")
    wait_for(lambda: raw.exists() and b"\a" in raw.read_bytes(), "the bell", timeout=60)
    dashboard = coderun_cmd("dashboard")
    term.tmux(["new-window", "-t", term.name, _shell(home, dashboard)])
    wait_for(lambda: any("api.example.test" in ln and "/tcp" in ln
                         for ln in term.screen_of(1).splitlines()),
             "a pending row in the dashboard", timeout=60)  # fmt: skip
    time.sleep(SETTLE_SECONDS + 0.2)
    term.keys_to(1, "a")  # allow once
    term.wait_in(0, "hello from api.example.test /interactive")
    term.keys_to(1, "q")

    # What reaches beyond the sandbox's screen is dropped: no new title for the pane.
    term.line(0, "printf '\\033]2;pwned-%s\\007done-%s\\n' 1 2")
    term.wait_in(0, "done-2")
    assert "pwned" not in term.title()

    term.line(0, "exit 7")
    wait_for(exit_file.exists, "coderun to exit", timeout=60)
    assert exit_file.read_text().strip() == "7"
    flows = [e for e in latest_log(home) if e.kind == "flow" and "api.example.test" in e.names]
    assert [e.verdict for e in flows][-1] == "allow"
    wait_for(lambda: leftovers(client) == [], "the session to be removed", timeout=30)


def test_piped_stdin_reaches_the_sandbox_and_its_end_too(
    run_coderun: Callable[..., Result], client: docker.DockerClient,
) -> None:  # fmt: skip
    result = run_coderun("-i", "--mode", "enforce", "--", "sh", "-c", "tr a-z A-Z; exit 4",
                         input="hello\nsandbox\n")  # fmt: skip
    assert result.status == 4, result.stderr
    assert result.stdout == "HELLO\nSANDBOX\n"
    assert leftovers(client) == []


def test_inside_tmux_the_dashboard_opens_in_a_split_and_closes_with_the_run(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path,
    client: docker.DockerClient,
) -> None:  # fmt: skip
    exit_file = tmp_path / "exit"
    run = coderun_cmd("run", "-it", "--split", "--mode", "ask", "--image", "python",
                      "--egress-network", internet.network_name, "--dns-upstream", internet.ip,
                      "-v", f"{PROBE}:/probe.py:ro", "-e", "PROBE_TIMEOUT=120", "-e", "PS1=sbx$ ",
                      "--", "bash", "--norc", "-i")  # fmt: skip
    term = Windows(_shell(home, run, f"; echo $? > {exit_file}; sleep 30"), width=220, height=40)
    try:

        def panes() -> list[str]:
            return term.tmux(["list-panes", "-t", term.target(0), "-F", "#{pane_id}"],
                             check=False).split()  # fmt: skip

        wait_for(lambda: len(panes()) == 2, "the dashboard's pane", 60)
        sandbox_pane, dashboard_pane = panes()
        term.wait_in(0, "sbx$")
        term.tmux(["send-keys", "-t", sandbox_pane, "-l",
                   "python3 /probe.py http:http://api.example.test/split"])  # fmt: skip
        term.tmux(["send-keys", "-t", sandbox_pane, "Enter"])

        def pane(pane_id: str) -> str:
            return term.tmux(["capture-pane", "-p", "-t", pane_id], check=False)

        def both() -> str:
            return (f"panes {panes()}\n-- sandbox pane --\n{pane(sandbox_pane)}\n"
                    f"-- dashboard pane --\n{pane(dashboard_pane)}")  # fmt: skip

        def row() -> bool:
            screen = pane(dashboard_pane)
            return any("api.example.test" in ln and "/tcp" in ln for ln in screen.splitlines())

        # a loaded machine starts Textual slowly
        wait_for(row, "a pending row in the split", 120, seen=both)
        time.sleep(SETTLE_SECONDS + 0.2)
        term.tmux(["send-keys", "-t", dashboard_pane, "a"])

        def answered() -> bool:
            return "hello from api.example.test /split" in pane(sandbox_pane)

        wait_for(answered, "the answer", 120, seen=both)
        term.tmux(["send-keys", "-t", sandbox_pane, "-l", "exit 5"])
        term.tmux(["send-keys", "-t", sandbox_pane, "Enter"])
        wait_for(exit_file.exists, "coderun to exit", 60)
        assert exit_file.read_text().strip() == "5"
        assert panes() == [sandbox_pane]  # the run closed the pane it opened
    finally:
        term.kill()
    wait_for(lambda: leftovers(client) == [], "the session to be removed", timeout=30)
