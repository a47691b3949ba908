"""Issue 17, request-level decisions: a method/path rule allows GET and refuses POST to
the same URL (plain HTTP and intercepted HTTPS) with a 403 an agent can read; a request
no rule decides is held in ask mode and allowed for its path prefix; refused flows stay
a fast RST and refused names NXDOMAIN."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from sandbox.internet import DemoInternet
from snitch.core.model import Action, DecisionRequest, Pending
from snitch.core.store import RuleStore
from snitch.review.client import ApiError
from tests.approver.terminal import Terminal, cli_env
from tests.e2e.conftest import Result, coderun_cmd, latest_log, wait_for
from tests.e2e.test_ask_mode import PROBE, LiveRun
from tests.e2e.test_line_prompt import _answer, _line_run

REQUEST_RULES = """
[[rule]]
action = "allow"
host = "api.example.test"
path = "/v1/*"
method = "GET,HEAD"

[[rule]]
action = "deny"
host = "api.example.test"
path = "/v1/"
"""

WORKLOAD = """
for u in http://api.example.test https://api.example.test; do
  curl -sS -o /dev/null -w "get=%{http_code}\\n" $u/v1/items
  curl -sS -D /tmp/h -o /tmp/b -w "post=%{http_code}\\n" -X POST --data x \\
       -H 'Accept: application/json' $u/v1/items
  grep -i '^x-coderun-denied' /tmp/h | tr -d '\\r'; cat /tmp/b
  curl -sS -o /dev/null -w "other=%{http_code}\\n" $u/v2/
done
python3 /probe.py connect:api.example.test:9 resolve:other.example.test
"""


def test_a_method_rule_allows_get_and_refuses_post_with_the_reason(
    run_coderun: Callable[..., Result], internet: DemoInternet, tmp_path: Path, home: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    policy = tmp_path / "policy.toml"
    policy.write_text(REQUEST_RULES)
    result = run_coderun("--policy", str(policy), "--intercept-tls", "--upstream-ca", str(ca),
                         "-v", f"{PROBE}:/probe.py:ro", "--", "sh", "-c", WORKLOAD)  # fmt: skip
    assert result.status == 0, result.stderr
    out = result.stdout.splitlines()
    assert [line for line in out if "=" in line and line.split("=")[0] in
            ("get", "post", "other")] == ["get=200", "post=403", "other=403"] * 2, out  # fmt: skip
    # (the header's name is lower case over HTTP/2)
    headers = [line.split(": ", 1)[1] for line in out if line.lower().startswith("x-coderun-")]
    ask = "ask: coderun rules add allow api.example.test --port {} --method POST --path /v1/"
    assert headers == [
        f"rule -2: deny api.example.test/v1/; {ask.format(80)} --priority 1",
        f"rule -2: deny api.example.test/v1/; {ask.format(443)} --priority 1",
    ], out
    bodies = [json.loads(line) for line in out if line.startswith("{") and "denied" in line]
    assert [b["denied"] for b in bodies] == ["rule -2: deny api.example.test/v1/"] * 2
    # A refused flow is still a fast RST; a refused name still NXDOMAIN.
    probes = {p["step"]: p for p in map(json.loads, (x for x in out if x.startswith('{"step"')))}
    refused = probes["connect:api.example.test:9"]
    assert not refused["ok"] and "ConnectionRefused" in refused["detail"], refused
    assert refused["seconds"] < 2.0, refused
    nxdomain = probes["resolve:other.example.test"]
    assert not nxdomain["ok"] and "gaierror" in nxdomain["detail"], nxdomain
    # The log says the same, request by request; the connections went through for them.
    http = [(e.method, e.url, e.status, e.verdict, e.reason) for e in result.log
            if e.kind == "http"]  # fmt: skip
    for scheme in ("http", "https"):
        url = f"{scheme}://api.example.test"
        allowed = "allow api.example.test/any path /v1/ [GET,HEAD]"  # the rule's own words
        assert ("GET", f"{url}/v1/items", 200, "allow", allowed) in http, http
        denied = "rule -2: deny api.example.test/v1/"
        assert ("POST", f"{url}/v1/items", 403, "deny", denied) in http
        assert ("GET", f"{url}/v2/", 403, "deny", "no rule matched") in http
    through = [e for e in result.log if e.kind == "flow" and e.dport in (80, 443)]
    assert through and all(e.verdict == "allow" for e in through)
    assert all("its HTTP requests are decided one by one" in e.reason for e in through)
    shown = subprocess.run(coderun_cmd("log"), capture_output=True, text=True, timeout=60)
    [post] = [line for line in shown.stdout.splitlines()
              if "POST http://api.example.test/v1/items" in line]  # fmt: skip
    assert post.split()[1] == "deny" and post.endswith("(rule -2: deny api.example.test/v1/)")


def _pending(run: LiveRun) -> list[Pending] | None:
    """The held items once the gateway answers (its socket may exist a moment before it
    listens, on a loaded machine)."""
    try:
        return run.pending() or None
    except ApiError as exc:
        if exc.status != 503:
            raise
        return None


def test_a_held_request_is_allowed_for_its_path_prefix(
    home: Path, internet: DemoInternet, tmp_path: Path, tags: dict[str, str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(REQUEST_RULES)
    curl = "curl -sS -m 90 -o /dev/null -X POST --data hello -H 'Content-Type: text/plain'"
    run = LiveRun(home, internet, "--policy", str(policy), "--", "sh", "-c",
                  f'{curl} -w "first=%{{http_code}}\\n" http://api.example.test/v2/a/one; '
                  f'{curl} -w "second=%{{http_code}}\\n" http://api.example.test/v2/a/two',
                  timeout=90)  # fmt: skip
    try:
        [item] = wait_for(lambda: _pending(run), "a held request", 60)  # type: ignore[misc]
        assert (item.kind, item.method, item.url) == (
            "request",
            "POST",
            "http://api.example.test/v2/a/one",
        )
        assert (item.size, item.content_type) == (5, "text/plain")
        run.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="always"))
        status, _, err = run.finish(timeout=90)
    finally:
        run.kill()
    assert status == 0, err
    assert "first=200" in run.stdout and "second=200" in run.stdout, run.stdout
    with RuleStore(home / "rules" / "rules.db") as store:
        [rule] = store.list()
    assert (rule.action, rule.host, rule.port_lo, rule.path_prefix, rule.method) == (
        Action.ALLOW,
        "api.example.test",
        80,
        "/v2/a/",
        "POST",
    )
    http = [(e.url, e.verdict, e.origin) for e in latest_log(home) if e.kind == "http"]
    assert http[0] == ("http://api.example.test/v2/a/one", "allow", "rule"), http
    assert http[1][:2] == ("http://api.example.test/v2/a/two", "allow"), http


def test_a_held_request_is_answered_from_the_line_prompt(
    home: Path, internet: DemoInternet, tmp_path: Path, tags: dict[str, str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(REQUEST_RULES)
    term = Terminal(_line_run(internet, "/probe.py", "http:http://api.example.test/v2/no",
                              "http:http://api.example.test/v2/yes",
                              extra=("--policy", str(policy))), cli_env(home))  # fmt: skip
    try:
        for path, answer, said in (("no", "d", "denied once"), ("yes", "a", "allowed once")):
            term.wait_for(f"Allow request GET http://api.example.test/v2/{path} to "
                          "api.example.test 80/tcp?".encode())  # fmt: skip
            assert b"[A]llow this path prefix" in term.shown()
            _answer(term, answer)
            term.wait_for(f"{said}: api.example.test 80/tcp".encode())
        assert term.wait(60) == 0
    finally:
        term.close()
    text = term.shown().decode()
    assert "HTTPError 403" in text and "hello from api.example.test /v2/yes" in text, text
    http = [(e.url, e.verdict, e.reason) for e in latest_log(home) if e.kind == "http"]
    assert http == [
        ("http://api.example.test/v2/no", "deny", "ask: deny once by api"),
        ("http://api.example.test/v2/yes", "allow", "ask: allow once by api"),
    ], http
