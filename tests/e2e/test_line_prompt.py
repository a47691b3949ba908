"""The line prompt (``--prompt line``) against a real gateway, on a real pty (issue 4;
issue 12 item 3: the sandbox cannot overwrite, mimic or outlast the question)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import docker

from sandbox.internet import DemoInternet
from sandbox.line_prompt import SETTLE_SECONDS, TAG_OFF, TAG_ON
from snitch.core.model import Action, DecisionRequest, Pending
from snitch.core.store import RuleStore
from snitch.review.client import GatewayClient
from tests.approver.terminal import Terminal, cli_env, terminal_problems
from tests.e2e.conftest import coderun_cmd, latest_log, wait_for

PROBE = Path(__file__).with_name("probe.py")
HOSTILE = Path(__file__).with_name("hostile_prompt.py")
OURS = (TAG_ON.encode(), TAG_OFF.encode())  # the prompt's own tag: the only escapes allowed


def _line_run(internet: DemoInternet, *command: str, extra: tuple[str, ...] = ()) -> list[str]:
    return coderun_cmd("run", "--mode", "ask", "--prompt", "line", "--egress-network",
                       internet.network_name, "--dns-upstream", internet.ip, *extra,
                       "-v", f"{PROBE}:/probe.py:ro", "-v", f"{HOSTILE}:/hostile.py:ro",
                       "--", "python3", *command)  # fmt: skip


def _answer(term: Terminal, text: str) -> None:
    """Type an answer the way a person does: after reading the question (an answer
    typed within SETTLE_SECONDS of it is ignored by design)."""
    time.sleep(SETTLE_SECONDS + 0.15)
    term.type(text + "\n")


def _session_folder(home: Path) -> Path:
    return wait_for(lambda: next((home / "sessions").glob("*/api.sock"), None), "a session").parent  # type: ignore[union-attr]


def _stored_rules(home: Path) -> list[str]:
    if not (home / "rules" / "rules.db").exists():
        return []
    with RuleStore(home / "rules" / "rules.db") as store:
        return [r.describe() for r in store.list()]


def test_line_prompt_allows_and_denies(home: Path, internet: DemoInternet,
                                       tags: dict[str, str]) -> None:  # fmt: skip
    term = Terminal(_line_run(internet, "/probe.py", "http:http://api.example.test/asked",
                              "connect:evil.example.test:80"), cli_env(home))  # fmt: skip
    try:
        for name, answer, said in (("api.example.test", "a", "allowed once"),
                                   ("evil.example.test", "d", "denied once")):  # fmt: skip
            term.wait_for(f"Allow connection to {name}".encode())
            assert b"[a]llow once / [A]lways / [d]eny / [D]eny always" in term.shown()
            _answer(term, answer)
            term.wait_for(f"{said}: {name} 80/tcp".encode())
        assert term.wait(60) == 0
    finally:
        term.close()
    text = term.shown().decode()
    assert "hello from api.example.test /asked" in text
    assert "ConnectionRefusedError" in text
    verdicts = {e.names[0]: e.verdict for e in latest_log(home) if e.kind == "flow" and e.names}
    assert verdicts == {"api.example.test": "allow", "evil.example.test": "deny"}
    assert _stored_rules(home) == []  # once is once


def test_sandbox_cannot_overwrite_the_question_and_always_needs_the_name(
    home: Path, internet: DemoInternet, client: docker.DockerClient, tags: dict[str, str]
) -> None:
    """The reproduced attack: the sandbox repaints the question as one about pypi.test; a
    person answering "always" stored a rule for the attacker's host on 4444."""
    term = Terminal(_line_run(internet, "/hostile.py", "overwrite", "evil-dash.example.test",
                              "4444"), cli_env(home))  # fmt: skip
    question = b"Allow connection to evil-dash.example.test"
    try:
        term.wait_for(question)
        sid = _session_folder(home).name
        (sandbox,) = client.containers.list(
            filters={"label": [f"coderun.session={sid}", "coderun.role=sandbox"]}
        )

        def fakes() -> int:
            return sandbox.logs().count(b"Allow connection to pypi.test")

        # While the question is open the sandbox goes on printing its fake question
        # (its own log shows it) and the terminal shows none of it.
        before = fakes()
        wait_for(lambda: fakes() >= before + 5, "the sandbox to print 5 more fakes")
        after_question = term.shown()[term.shown().rfind(question) :]
        assert b"pypi.test" not in after_question
        assert "Allow connection to evil-dash.example.test 4444/tcp" in term.cursor_line()
        assert "pypi.test" not in term.cursor_line()

        # "always" shows what it stores and needs the name typed: the name the fake
        # question showed (or a stray key) stores nothing.
        for typed in ("pypi.test", "A", "y"):
            _answer(term, "A")
            term.wait_for(b"this stores a lasting rule: allow evil-dash.example.test:4444/tcp")
            wanted = b"type evil-dash.example.test to store it"
            term.wait_for(wanted, count=("pypi.test", "A", "y").index(typed) + 1)
            _answer(term, typed)
            term.wait_for(b"not stored: that is not evil-dash.example.test",
                          count=("pypi.test", "A", "y").index(typed) + 1)  # fmt: skip
            assert _stored_rules(home) == []
        _answer(term, "A")
        term.wait_for(b"type evil-dash.example.test to store it", count=4)
        _answer(term, "evil-dash.example.test")
        term.wait_for(b"allowed always: evil-dash.example.test 4444/tcp (stored rule")
        # The held output follows the answer, inert: its escapes shown, not acted on.
        term.wait_for(b"\\x0d\\x1b[2K\\x1b[1A\\x1b[2K\\x1b]0;pypi.test\\x07")
        assert term.wait(60) == 0
    finally:
        term.close()
    assert _stored_rules(home) == ["allow evil-dash.example.test:4444/tcp"]
    assert terminal_problems(term.shown(), allowed=OURS) == []
    assert b"result: " in term.shown()


def test_run_ending_while_asking_exits_at_once(home: Path, internet: DemoInternet,
                                               tags: dict[str, str]) -> None:  # fmt: skip
    term = Terminal(_line_run(internet, "/hostile.py", "linger", "evil.example.test", "4444",
                              "3"), cli_env(home))  # fmt: skip
    try:
        term.wait_for(b"Allow connection to evil.example.test")
        asked = time.monotonic()
        term.wait_for(b"leaving with the connection still held", timeout=30)
        # Nobody types anything: the run's end withdraws the question and coderun exits.
        assert term.wait(timeout=20) == 0
        took = time.monotonic() - asked
    finally:
        term.close()
    assert b"the run ended: question about evil.example.test 4444/tcp withdrawn" in term.shown()
    assert took < 15, f"coderun took {took:.1f}s to exit after the command ended"


def test_item_decided_elsewhere_is_withdrawn_and_not_asked_again(
    home: Path, internet: DemoInternet, tags: dict[str, str]
) -> None:
    term = Terminal(_line_run(internet, "/probe.py", "http:http://tracker.example.test/api",
                              extra=("-e", "PROBE_TIMEOUT=90")), cli_env(home))  # fmt: skip
    question = b"Allow connection to tracker.example.test"
    try:
        term.wait_for(question)
        folder = _session_folder(home)
        api = GatewayClient(folder / "api.sock", (home / "api-token").read_text().strip())

        def held() -> Pending | None:
            items = asyncio.run(api.pending())
            return next((p for p in items if p.attempts >= 2), None)

        # Let a retransmitted SYN update the item (a "pending" event for the same id)
        # while it is asked, then decide it through the API.
        item = wait_for(held, "a retransmitted SYN of the held connection")
        assert isinstance(item, Pending)
        asyncio.run(api.decide(DecisionRequest(Action.ALLOW, pending_id=item.id)))
        term.wait_for(b"question withdrawn: tracker.example.test 80/tcp was decided "
                      b"elsewhere: allow by api")  # fmt: skip
        term.wait_for(b"hello from tracker.example.test /api")
        assert term.wait(60) == 0
    finally:
        term.close()
    # Asked once: the only repeat allowed is the question shown again under a late
    # "(asked by PROGRAM)" line (attribution), never a new question for the update.
    late = term.shown().count(b"(asked by ")
    assert late <= 1 and term.shown().count(question) == 1 + late
    assert terminal_problems(term.shown(), allowed=OURS) == []


def test_line_prompt_with_piped_stdin_answers_and_ends(home: Path, internet: DemoInternet,
                                                       tags: dict[str, str]) -> None:  # fmt: skip
    """Not a terminal: answers come from a pipe; its end stops the asking, not the run."""
    proc = subprocess.Popen(_line_run(internet, "/probe.py", "connect:evil.example.test:80"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=cli_env(home, ))  # fmt: skip
    seen = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.stdin is not None
    try:
        wait_for(lambda: b"Allow connection to evil.example.test" in seen, "the question")
        time.sleep(SETTLE_SECONDS + 0.15)
        proc.stdin.write(b"d\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    reader.join(timeout=5)
    assert b"denied once: evil.example.test 80/tcp" in seen
    step = json.loads(next(line for line in seen.decode().splitlines() if '"step"' in line))
    assert step["ok"] is False and "ConnectionRefused" in step["detail"]
