"""``coderun run -i/-t``: what is refused before anything starts, and the front's parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli import main
from sandbox.terminal import TerminalFront, dashboard_command


@pytest.fixture()
def no_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path / "home"))

    def docker_client() -> None:
        raise AssertionError("reached Docker")

    monkeypatch.setattr("sandbox.cli.run.docker_client", docker_client)


def test_tty_needs_a_terminal(no_docker: None) -> None:
    out = CliRunner().invoke(main, ["run", "-t", "--", "bash"], input="")
    assert out.exit_code == 2
    assert "-t: the input is not a terminal" in out.output


def test_the_terminal_is_the_sandboxs_so_no_prompt_in_it(no_docker: None) -> None:
    out = CliRunner().invoke(main, ["run", "-i", "--prompt", "line", "--", "cat"], input="")
    assert out.exit_code == 2
    assert "coderun dashboard" in out.output


def test_output_of_a_tty_run_is_filtered_and_bells_are_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = TerminalFront(tty_mode=True, split=False)
    out_file = (tmp_path / "out").open("wb+")
    err_file = (tmp_path / "err").open("wb+")
    front.out_fd, front.err_fd = out_file.fileno(), err_file.fileno()
    front.output("stdout", b"a\x1b]0;title\x07b\x1b[1mc")
    front.bell()
    front.bell()  # within BELL_INTERVAL: no second bell
    out_file.seek(0)
    err_file.seek(0)
    assert out_file.read() == b"ab\x1b[1mc"
    assert err_file.read() == b"\a"


def test_the_split_runs_this_coderun_with_this_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERUN_HOME", "/tmp/some home")
    command = dashboard_command()
    assert "'CODERUN_HOME=/tmp/some home'" in command
    assert command.endswith("-m sandbox.cli dashboard")


def test_ctrl_c_goes_to_the_sandbox_and_three_stop_the_run() -> None:
    sent: list[str] = []

    class Sandbox:
        def kill(self, signal: str) -> None:
            sent.append(signal)

    class Session:
        sandbox = Sandbox()

    front = TerminalFront(tty_mode=False)
    front.session = Session()  # type: ignore[assignment]
    front._forward_interrupt(2, None)
    front._forward_interrupt(2, None)
    assert sent == ["SIGINT", "SIGINT"]
    with pytest.raises(KeyboardInterrupt):
        front._forward_interrupt(2, None)
