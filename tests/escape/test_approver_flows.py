"""Issue 12, items 4, 7, 8 and 12: the sandbox tries to fool, flood or go around the
person and the rules, on a real gateway against the demo internet.

- 4: a bare address on 443 with the SNI of a name the person trusts is shown as the
  address, the name marked unverified, and "always" stores the address;
- 7: a flood of connections becomes a few grouped items, the rest refused at once and
  counted;
- 8: an allow for a synthetic address, stored by an older coderun, does not let the
  next session's first undecided name through, and no new one is stored;
- 12: a deny rule for a name refuses plain HTTP to an allowed address with that Host
  (and, intercepting TLS, the inner Host).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.model import Action, DecisionRequest, PromptCounts, Target
from snitch.core.store import RuleStore
from tests.e2e.conftest import Result, latest_log, wait_for
from tests.e2e.test_ask_mode import LiveRun, by_label

pytestmark = pytest.mark.docker


def stored_rules(home: Path) -> list[str]:
    with RuleStore(home / "rules" / "rules.db") as store:
        return [r.describe() for r in store.list()]


# -- 4: an unverified SNI -------------------------------------------------------------------------


def test_an_sni_the_address_does_not_answer_to_is_not_shown_as_the_destination(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path
) -> None:
    evil = internet.hosts["evil.example.test"]
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    mark = len(internet.logs())
    run = LiveRun(home, internet, "-v", f"{ca}:/ca.pem:ro", "--", "sh", "-c",
                  f"curl -sS -m 60 --cacert /ca.pem --resolve api.example.test:443:{evil} "
                  "https://api.example.test/pretend; echo status=$?")  # fmt: skip
    try:
        [item] = run.wait_pending(1)
        assert (item.label, item.names, item.claimed) == (evil, [], "api.example.test")
        # What a fooled approver would press: allow "this host", always.
        run.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, target=Target.HOST,
                                   lifetime="always"))  # fmt: skip
        status, _, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    assert stored_rules(home) == [f"allow {evil}/32:443/tcp"]  # the address, never the name
    seen = internet.logs(mark)
    assert "DNS api.example.test" not in seen  # never looked up to check
    assert "HTTP GET api.example.test /pretend" in seen  # control: the log has this run
    [flow] = [e for e in latest_log(home) if e.kind == "flow" and e.dport == 443]
    assert (flow.dst, flow.names, flow.verdict) == (evil, [], "allow")
    assert "claimed SNI api.example.test, unverified" in flow.reason


# -- 7: a flood of connections --------------------------------------------------------------------

FLOOD = r"""
import json, socket, sys, threading, time
evil, out = sys.argv[1], {}
def connect(port, i):
    start = time.monotonic()
    try:
        socket.create_connection((evil, port), timeout=90).close(); result = "connected"
    except OSError as exc:
        result = type(exc).__name__
    out[f"{port}/{i}"] = (result, time.monotonic() - start)
threads = [threading.Thread(target=connect, args=(9000, i)) for i in range(8)]
for t in threads: t.start()
time.sleep(0.5)  # the same destination first: one item
more = [threading.Thread(target=connect, args=(9100 + i, 0)) for i in range(20)]
for t in more: t.start()
for t in threads + more: t.join()
print(json.dumps(out), flush=True)
"""


def test_a_flood_is_grouped_capped_and_counted(
    home: Path, internet: DemoInternet, tags: dict[str, str], tmp_path: Path
) -> None:
    evil = internet.hosts["evil.example.test"]
    script = tmp_path / "flood.py"
    script.write_text(FLOOD)
    run = LiveRun(home, internet, "--max-pending", "5", "-v", f"{script}:/flood.py:ro", "--",
                  "python3", "/flood.py", evil)  # fmt: skip

    def counts() -> PromptCounts:
        return asyncio.run(run.client.info()).prompts or PromptCounts()

    try:
        wait_for(lambda: counts().refused_full == 16 and counts().collapsed == 7, "the flood")
        items = run.pending()
        assert len(items) == 5
        assert sorted(p.flows for p in items) == [1, 1, 1, 1, 8]
        assert counts() == PromptCounts(max_pending=5, rate=counts().rate, pending=5, held=12,
                                        collapsed=7, refused_full=16)  # fmt: skip
        for item in items:
            run.decide(DecisionRequest(Action.DENY, pending_id=item.id, lifetime="once"))
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    [out] = results
    refused_at_once = [k for k, (r, s) in out.items() if r == "ConnectionRefusedError" and s < 5]
    assert len(refused_at_once) >= 16 and all(r == "ConnectionRefusedError" for r, _ in
                                              out.values())  # fmt: skip
    flows = [e for e in latest_log(home) if e.kind == "flow" and e.dst == evil]
    assert len(flows) == 28 and len([e for e in flows if "--max-pending" in e.reason]) == 16


# -- 8: a rule for a synthetic address ------------------------------------------------------------


def test_a_stored_rule_for_a_synthetic_address_lets_no_name_through(
    home: Path, internet: DemoInternet, tags: dict[str, str]
) -> None:
    RuleStore(home / "rules.db").close()
    with sqlite3.connect(home / "rules.db") as db:  # as an older coderun stored it
        db.execute(
            "INSERT INTO rules (action, cidr, port_lo, port_hi, proto, source, created) "
            "VALUES ('allow', '198.18.0.1', 80, 80, 'tcp', 'prompt', ?)",
            (time.time(),),
        )
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")  # fmt: skip
    mark = len(internet.logs())
    run = LiveRun(home, internet, "--", "python3", "/probe.py",
                  "http:http://evil.example.test/synthetic",
                  "http:http://api.example.test/control")  # fmt: skip
    try:
        item = by_label(run.wait_pending(1), "evil.example.test")  # asked, not let through
        assert item.dst == "198.18.0.1" and item.synthetic
        # The Decide dialog's "this IP, always": stored by name, not the synthetic address.
        run.decide(DecisionRequest(Action.DENY, pending_id=item.id, target=Target.IP,
                                   lifetime="always"))  # fmt: skip
        control = wait_for(lambda: next((p for p in run.pending() if p.label == "api.example.test"),
                                        None), "the control request's item")  # fmt: skip
        run.decide(DecisionRequest(Action.ALLOW, pending_id=control.id, lifetime="once"))  # type: ignore[attr-defined]
        status, results, err = run.finish()
    finally:
        run.kill()
    assert status == 0, err
    assert not results[0]["ok"]
    seen = internet.logs(mark)
    assert "/synthetic" not in seen
    assert results[1]["ok"] and "/control" in seen  # control: an allowed request arrives
    with RuleStore(home / "rules" / "rules.db") as store:
        rules = [(r.describe(), r.enabled) for r in store.list()]
    assert rules == [("allow 198.18.0.1:80/tcp", False), ("deny evil.example.test:80/tcp", True)]


# -- 12: Host-header fronting ---------------------------------------------------------------------

FRONTING = """
[[rule]]
action = "allow"
cidr = "{ip}"
port = 80
proto = "tcp"

[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "deny"
host = "evil.example.test"
"""


def test_a_denied_name_as_the_host_of_an_allowed_address_is_refused(
    run_coderun: Callable[..., Result], internet: DemoInternet, tmp_path: Path
) -> None:
    nonce = uuid.uuid4().hex[:8]
    policy = tmp_path / "policy.toml"
    policy.write_text(FRONTING.format(ip=internet.ip))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    mark = len(internet.logs())
    curl = "curl -sS -o /dev/null -m 10 -w '{0}=%{{http_code}}\\n' {1}; "
    plain = run_coderun("--policy", str(policy), "--", "sh", "-c",
                        curl.format("control", f"-H 'Host: api.example.test' "
                                    f"http://{internet.ip}/control-{nonce}")
                        + curl.format("front", f"-H 'Host: evil.example.test' "
                                      f"http://{internet.ip}/front-{nonce}"))  # fmt: skip
    inner = run_coderun("--policy", str(policy), "--intercept-tls", "--upstream-ca", str(ca),
                        "--", "sh", "-c",
                        curl.format("control", f"https://api.example.test/tls-control-{nonce}")
                        + curl.format("front", "-H 'Host: evil.example.test' "
                                      f"https://api.example.test/tls-front-{nonce}"))  # fmt: skip
    # Plain HTTP is read in passing (peeker.py): the request is refused before it leaves,
    # with a TCP reset (no proxy there to answer); through mitmproxy (interception) the
    # answer is a 403. Either way the line says which rule refused which Host.
    for result, answer in ((plain, "front=000"), (inner, "front=403")):
        assert "control=200" in result.stdout and answer in result.stdout, result
        [refused] = [e for e in result.log if e.kind == "http" and e.verdict == "deny"]
        assert "Host evil.example.test" in refused.reason
        assert refused.rule == "deny evil.example.test/any"
        assert refused.status == (403 if answer == "front=403" else 0)
    arrived = internet.logs(mark)
    assert f"/control-{nonce}" in arrived and f"/tls-control-{nonce}" in arrived
    assert f"front-{nonce}" not in arrived, "the denied Host reached the server"
