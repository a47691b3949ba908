"""The line prompt's output holding and its input reader, without a gateway."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import pytest

from sandbox.line_prompt import LinePrompt
from sandbox.stdin_lines import Line, StdinLines
from tests.approver.terminal import terminal_problems


def test_output_is_inert_and_held_while_a_question_is_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    prompt = LinePrompt()
    prompt.output("stdout", b"before\r\x1b[2K\n")
    prompt._hold()
    prompt.output("stdout", b"\r\x1b[2Kfake question? ")
    prompt.output("stderr", "\u202eoops\n".encode()[:3])  # a character cut in two
    assert out.getvalue() == "before\\x0d\\x1b[2K\n"  # nothing while asking
    prompt._release()
    prompt.output("stderr", "\u202eoops\n".encode()[3:])
    assert out.getvalue() == "before\\x0d\\x1b[2K\n\\x0d\\x1b[2Kfake question? "
    assert err.getvalue() == "\\u202eoops\n"
    assert terminal_problems((out.getvalue() + err.getvalue()).encode()) == []


def test_the_input_reader_never_holds_the_process() -> None:
    """It polls: told to stop, it ends within its poll interval, even mid-line."""
    read_fd, write_fd = os.pipe()
    lines: list[Line] = []
    stop = threading.Event()
    reader = StdinLines(read_fd, lines.append, stop)
    assert reader.daemon
    reader.start()
    os.write(write_fd, b"a\nhalf a li")
    deadline = time.monotonic() + 5
    while not lines and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(timeout=1)
    assert not reader.is_alive()
    assert [line[1] for line in lines if line] == ["a"]
    os.close(read_fd)
    os.close(write_fd)


def test_end_of_input_is_reported() -> None:
    read_fd, write_fd = os.pipe()
    lines: list[Line] = []
    reader = StdinLines(read_fd, lines.append, threading.Event())
    reader.start()
    os.write(write_fd, b"d\n")
    os.close(write_fd)
    reader.join(timeout=2)
    assert [line[1] if line else None for line in lines] == ["d", None]
    os.close(read_fd)


def test_the_question_names_the_asking_program_escaped() -> None:
    from sandbox.prompt_text import question_text
    from snitch.core.model import Pending

    item = Pending("s-1", "s", "flow", "tcp", "10.0.0.2", 40000, "198.51.100.7", 443,
                   names=["api.example.test"])  # fmt: skip
    assert " by " not in question_text(item)  # its process is not known yet
    item.pid, item.exe, item.parents = 7, "/tmp/\x1b]0;x\x07/curl", ["/usr/bin/dash"]
    text = question_text(item)
    assert text.endswith("by /tmp/\\x1b]0;x\\x07/curl (pid 7) ← /usr/bin/dash? ")
    assert terminal_problems(text.encode()) == []


def test_a_late_line_shows_the_open_question_again(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    prompt = LinePrompt()
    prompt._tag = False
    prompt._hold()
    prompt._say("Allow connection to api.example.test 80/tcp? ", question=True)
    prompt._say_again("(asked by /usr/bin/curl (pid 7))")
    lines = out.getvalue().split("\n")
    assert lines[-2].endswith("(asked by /usr/bin/curl (pid 7))")
    assert lines[-1].endswith("Allow connection to api.example.test 80/tcp? ")  # cursor here
    prompt._release()
    prompt._say("allowed once: api.example.test 80/tcp")
    prompt._say_again("(asked by …)")  # no question open: nothing shown again
    assert out.getvalue().count("Allow connection") == 2
