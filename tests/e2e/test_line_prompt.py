"""Issue 4: the plain line prompt for terminals without the dashboard."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from sandbox.internet import DemoInternet
from tests.e2e.conftest import coderun_cmd, latest_log

PROBE = Path(__file__).with_name("probe.py")


def test_line_prompt_allows_and_denies(home: Path, internet: DemoInternet,
                                       tags: dict[str, str]) -> None:
    proc = subprocess.Popen(
        coderun_cmd("run", "--mode", "ask", "--prompt", "line", "--egress-network",
                    internet.network_name, "--dns-upstream", internet.ip,
                    "-v", f"{PROBE}:/probe.py:ro", "--", "python3", "/probe.py",
                    "http:http://api.example.test/asked", "connect:evil.example.test:80"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    seen = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.stdin is not None
    try:
        for name, answer in (("api.example.test", b"a\n"), ("evil.example.test", b"d\n")):
            question = f"Allow connection to {name} (".encode()
            deadline = time.monotonic() + 30
            while question not in seen:
                assert time.monotonic() < deadline, f"no prompt for {name}: {seen.decode()}"
                time.sleep(0.05)
            assert b"[a]llow once / [A]lways / [d]eny / [D]eny always" in seen
            proc.stdin.write(answer)
            proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    reader.join(timeout=5)
    text = seen.decode()
    assert "hello from api.example.test /asked" in text
    assert "ConnectionRefusedError" in text
    verdicts = {e.names[0]: e.verdict for e in latest_log(home) if e.kind == "flow" and e.names}
    assert verdicts == {"api.example.test": "allow", "evil.example.test": "deny"}
