"""Issue 15: every first open of a shared file is a decision, end to end on a real FUSE
mount, a real gateway and a real sandbox. Enforce opens what a file rule allows and
refuses the rest (``EACCES``); audit opens everything and logs what enforce would have
done; ask holds the open until a person answers on the line prompt or in the dashboard
(tmux): allowed, denied, and "always" stored as a file rule the next run obeys."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.internet import DemoInternet
from sandbox.line_prompt import SETTLE_SECONDS
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore
from tests.approver.terminal import Terminal, cli_env
from tests.e2e.conftest import Result, coderun_cmd, wait_for
from tests.e2e.test_dashboard_tmux import start_run
from tests.needs import need_tool
from tui.widgets.pending import FILE_MARK
from tui.widgets.pending import SETTLE_SECONDS as DASH_SETTLE

pytestmark = pytest.mark.docker
READ_BOTH = "cat /s/a.txt; echo; cat /s/b.txt 2>&1 || echo b-refused"
READ_C_TWICE = "; echo; cat /s/c.txt; echo; cat /s/c.txt 2>&1 || echo c-refused"


@pytest.fixture()
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "b.txt").write_text("beta")
    (root / "c.txt").write_text("gamma")
    os.chmod(tmp_path, 0o755)
    return root


def opens(home: Path) -> list[dict[str, Any]]:
    sessions = sorted((home / "sessions").iterdir(), key=lambda p: p.stat().st_mtime)
    path = sessions[-1] / "files.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line.get("method") != "close"]


def verdicts(home: Path) -> list[tuple[str, str, str]]:
    return [(Path(o["path"]).name, o["verdict"], o["origin"]) for o in opens(home)]


def add_rule(home: Path, rule: Rule) -> None:
    (home / "rules").mkdir(mode=0o700, exist_ok=True)
    with RuleStore(home / "rules" / "rules.db") as store:
        store.add(rule)


def test_enforce_opens_what_a_rule_allows_and_refuses_the_rest(
    run_coderun: Callable[..., Result], shared: Path, home: Path
) -> None:
    add_rule(home, Rule(Action.ALLOW, proto=Proto.FILE, file=f"{shared}/a.*", access="read"))
    result = run_coderun("--mode", "enforce", "--share", f"{shared}:/s", "--", "sh", "-c",
                         READ_BOTH)  # fmt: skip
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines()[0] == "alpha"
    assert "Permission denied" in result.stdout and "b-refused" in result.stdout
    assert "beta" not in result.stdout
    assert verdicts(home) == [("a.txt", "allow", "rule"), ("b.txt", "deny", "default")]
    first = opens(home)[0]
    assert first["names"] == ["/s/a.txt"] and first["access"] == "read" and first["pid"] > 0
    assert "cat" in first["cmdline"] and first["rule"].startswith("allow-file")


def test_audit_opens_everything_and_logs_what_enforce_would_do(
    run_coderun: Callable[..., Result], shared: Path, home: Path
) -> None:
    result = run_coderun("--mode", "audit", "--share", f"{shared}:/s", "--", "sh", "-c",
                         READ_BOTH)  # fmt: skip
    assert result.status == 0, result.stderr
    assert result.stdout.split() == ["alpha", "beta"]
    assert verdicts(home) == [("a.txt", "allow", "audit"), ("b.txt", "allow", "audit")]
    assert all(o["reason"] == "audit (enforce would deny)" for o in opens(home))
    # `coderun log` shows them with the path and the verdict.
    log = subprocess.run(coderun_cmd("log", "--kind", "file"), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert log.returncode == 0, log.stderr
    assert f"{shared}/b.txt" in log.stdout and "allow" in log.stdout


def _answer(term: Terminal, text: str) -> None:
    time.sleep(SETTLE_SECONDS + 0.15)  # after reading the question, as a person does
    term.type(text + "\n")


def test_line_prompt_holds_opens_stores_always_and_the_next_run_obeys(
    home: Path, internet: DemoInternet, shared: Path, tags: dict[str, str]
) -> None:
    run = coderun_cmd("run", "--mode", "ask", "--prompt", "line", "--egress-network",
                      internet.network_name, "--dns-upstream", internet.ip, "--share",
                      f"{shared}:/s", "--", "sh", "-c", READ_BOTH + READ_C_TWICE)  # fmt: skip
    term = Terminal(run, cli_env(home))
    try:
        term.wait_for(f"Allow read of {shared}/a.txt (/s/a.txt in the sandbox)".encode())
        assert b"[a]llow once / [s]ession / [A]lways / [d]eny / [D]eny always" in term.shown()
        _answer(term, "A")
        term.wait_for(f"allow-file {shared}/a.txt (read)".encode())
        _answer(term, f"{shared}/a.txt")
        term.wait_for(b"allowed always")
        term.wait_for(f"Allow read of {shared}/b.txt".encode())
        _answer(term, "d")
        term.wait_for(b"denied once")
        term.wait_for(f"Allow read of {shared}/c.txt".encode())
        _answer(term, "s")  # for the session: the second open is not asked
        term.wait_for(b"allowed for this session")
        assert term.wait(90) == 0
    finally:
        term.close()
    text = term.shown().decode(errors="replace")
    assert "alpha" in text and "b-refused" in text and "beta" not in text
    assert text.count("gamma") == 2 and text.count("Allow read of") == 3
    assert verdicts(home) == [("a.txt", "allow", "rule"), ("b.txt", "deny", "person"),
                              ("c.txt", "allow", "rule"), ("c.txt", "allow", "rule")]  # fmt: skip
    with RuleStore(home / "rules" / "rules.db") as store:
        stored = [(r.action, r.file, r.access, r.session is not None) for r in store.list()]
    assert stored == [("allow", f"{shared}/a.txt", "read", False),
                      ("allow", f"{shared}/c.txt", "read", True)]  # fmt: skip
    # The next run (enforce: nothing is asked) obeys the stored rule; the session's is over.
    again = subprocess.run(
        coderun_cmd("run", "--mode", "enforce", "--egress-network", internet.network_name,
                    "--dns-upstream", internet.ip, "--share", f"{shared}:/s", "--", "sh", "-c",
                    READ_BOTH + READ_C_TWICE),
        capture_output=True, text=True, timeout=120, env=cli_env(home),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "alpha" and "b-refused" in again.stdout
    assert "gamma" not in again.stdout and "c-refused" in again.stdout


def test_dashboard_allows_one_held_open_and_denies_another(
    home: Path, internet: DemoInternet, shared: Path, tags: dict[str, str], tmp_path: Path
) -> None:
    need_tool("tmux")
    exit_file = tmp_path / "exit"
    tmux = start_run(home, internet, exit_file, "--share", f"{shared}:/s", "--", "sh", "-c",
                     f"{READ_BOTH}; echo script-done")  # fmt: skip
    try:
        for name, key in (("a.txt", "a"), ("b.txt", "d")):
            wait_for(lambda n=name: any(FILE_MARK.strip() in ln and n in ln  # type: ignore[misc]
                                        for ln in tmux.screen().splitlines()),
                     f"a pending row for {name}", 60)  # fmt: skip
            time.sleep(DASH_SETTLE + 0.2)  # keys act once the rows settled (a known timer)
            tmux.keys(key)
        tmux.wait_screen("script-done", timeout=60)
        tmux.wait_screen("b-refused")
        tmux.keys("q")
        wait_for(exit_file.exists, "coderun to exit", 60)
        assert exit_file.read_text().strip() == "0"
    finally:
        tmux.kill()
    assert verdicts(home) == [("a.txt", "allow", "person"), ("b.txt", "deny", "person")]


def test_an_open_nobody_answers_is_refused_at_its_deadline(
    run_coderun: Callable[..., Result], shared: Path, home: Path
) -> None:
    """Ask mode with nobody to ask (--prompt none): the open waits for its deadline and is
    refused then, whatever --ask-default says (a file is never handed over by default)."""
    started = time.monotonic()
    result = run_coderun("--mode", "ask", "--prompt", "none", "--ask-timeout", "2",
                         "--ask-default", "allow", "--share", f"{shared}:/s", "--", "sh", "-c",
                         "cat /s/a.txt 2>&1 || echo a-refused")  # fmt: skip
    assert result.status == 0, result.stderr
    assert "alpha" not in result.stdout and "a-refused" in result.stdout
    assert time.monotonic() - started >= 2
    assert verdicts(home) == [("a.txt", "deny", "deadline")]
