"""The line prompt's words for a held open of a shared file: the path, the access and
the asking process, every part the sandbox controls escaped; the answers it takes."""

from __future__ import annotations

from sandbox.prompt_text import (
    answers,
    lasting_target,
    options_text,
    question_text,
    rule_preview,
    where,
)
from snitch.core.grammar import Lifetime
from snitch.core.model import Action, Pending, PendingKind
from tests.approver.terminal import terminal_problems


def _file_item(path: str = "~/.aws/credentials", cmdline: str = "cat x") -> Pending:
    return Pending(id="f1", session="s1", kind=PendingKind.FILE, proto="file", src="", sport=0,
                   dst="/home/coderun/.aws/credentials", dport=0, path=path, access="read",
                   pid=12, cmdline=cmdline)  # fmt: skip


def test_a_file_question_names_the_path_the_access_and_the_process() -> None:
    item = _file_item()
    question = question_text(item)
    assert question == ('Allow read of ~/.aws/credentials (/home/coderun/.aws/credentials in '
                        'the sandbox) by pid 12 "cat x"? ')  # fmt: skip
    assert "[s]ession" in options_text(item) and "[A]lways" in options_text(item)
    assert answers(item)["s"] == (Action.ALLOW, Lifetime.SESSION)
    assert where(item) == "~/.aws/credentials (read)"
    assert lasting_target(item) == "~/.aws/credentials"
    assert rule_preview(item, Action.DENY) == "deny-file ~/.aws/credentials (read)"


def test_hostile_names_and_command_lines_are_inert() -> None:
    item = _file_item("~/x\x1b]0;owned\x07\n[*]", "sh -c '\x1b[2J\rcoderun: allowed'" * 20)
    for text in (question_text(item), where(item), rule_preview(item, Action.ALLOW)):
        assert "\n" not in text and "\r" not in text and "\x1b" not in text
        assert terminal_problems(text.encode()) == []
    assert len(question_text(item)) < 300  # the command line is cut
    assert "[[][*]]" in rule_preview(item, Action.ALLOW)  # a glob for that name only


def test_a_network_item_takes_no_session_answer() -> None:
    item = Pending(id="n1", session="s1", kind="flow", proto="tcp", src="10.0.0.2", sport=1,
                   dst="203.0.113.9", dport=443, names=["api.example.test"])  # fmt: skip
    assert "s" not in answers(item) and "[s]" not in options_text(item)
