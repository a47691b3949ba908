"""Issue 18: a web workload logs the same whether mitmproxy relays it or the gateway
reads its first packets in passing (snitch/gateway/peeker.py, peeklog.py): the same
requests (keep-alive ones too), statuses, and plausible byte counts and durations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.internet import DemoInternet
from snitch.core.logentry import EntryKind, LogEntry
from tests.e2e.conftest import Result

pytestmark = pytest.mark.docker

BIG = 100_000
STATS = "web flows read in passing: "  # the gateway's last word on them
POLICY = """
[[rule]]
action = "allow"
host = "api.example.test"

[[rule]]
action = "deny"
host = "evil.example.test"
"""


def workload(ip: str) -> str:
    curl = "curl -sS -o /dev/null --max-time 10"
    return "; ".join(
        [
            f"{curl} http://api.example.test/one",
            f"{curl} http://api.example.test/two?x=1",
            f"{curl} -X POST --data-binary @/etc/os-release http://api.example.test/up",
            f"{curl} --cacert /ca.pem https://api.example.test/three",
            f"{curl} --cacert /ca.pem https://api.example.test/four",
            # Sizes and durations: 100 kB down, over HTTP and HTTPS.
            f"{curl} http://api.example.test/bytes/{BIG}",
            f"{curl} --cacert /ca.pem https://api.example.test/bytes/{BIG}",
            # Two requests on one keep-alive connection (the server keeps it when asked).
            f"{curl} -o /dev/null -H 'Connection: keep-alive' http://api.example.test/five "
            f"http://api.example.test/bytes/{BIG + 1}",
            # A later request on a kept connection names a denied Host: refused (mitmproxy)
            # or logged and its connection cut (read in passing).
            f"{curl} -H 'Connection: keep-alive' http://api.example.test/six --next "
            "-sS --max-time 10 -o /dev/null -H 'Connection: keep-alive' "
            "-H 'Host: evil.example.test' http://api.example.test/later",
            # Names a deny rule refuses wherever they go: a Host, an SNI (fronting).
            f"{curl} -H 'Host: evil.example.test' http://api.example.test/fronted",
            f"{curl} --cacert /ca.pem --resolve evil.example.test:443:{ip} "
            "https://evil.example.test/sni",
            "true",
        ]
    )


def identity(entry: LogEntry) -> tuple[object, ...]:
    """What a line says about a request or a connection (not its timing or sizes, and
    not the client's source port, which differs from run to run). A refused request's
    status is not compared: mitmproxy answers it 403, read in passing it is reset."""
    if entry.kind is EntryKind.FLOW:
        return ("flow", entry.dst, entry.dport, tuple(entry.names), entry.verdict, entry.reason)
    status = entry.status if entry.verdict != "deny" else None
    return (str(entry.kind), entry.dst, entry.dport, tuple(entry.names), entry.sni,
            entry.method, entry.url, entry.verdict, entry.reason, status)  # fmt: skip


def lines(result: Result) -> list[tuple[object, ...]]:
    kinds = (EntryKind.FLOW, EntryKind.HTTP, EntryKind.TLS)
    return sorted((identity(e) for e in result.log if e.kind in kinds and e.dport in (80, 443)),
                  key=repr)  # fmt: skip


def test_the_log_of_a_web_workload_is_the_same_on_both_paths(
    run_coderun: Callable[..., Result],
    internet: DemoInternet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(internet.ca_pem())
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    args = ("--policy", str(policy), "-v", f"{ca}:/ca.pem:ro", "--", "sh", "-c",
            workload(internet.ip))  # fmt: skip
    monkeypatch.delenv("CODERUN_PEEK", raising=False)  # the default: read in passing
    read = run_coderun(*args)
    monkeypatch.setenv("CODERUN_PEEK", "0")  # every web flow through mitmproxy
    relayed = run_coderun(*args)
    assert read.status == 0 and relayed.status == 0, (read.stderr, relayed.stderr)
    assert lines(read) == lines(relayed)
    for result in (read, relayed):
        sizes_are_plausible(result)
    got = lines(read)
    # The workload did what it says, on both paths.
    http = {(line[5], line[6], line[7], line[9]) for line in got if line[0] == "http"}
    assert http == {
        ("GET", "http://api.example.test/one", "", 200),
        ("GET", "http://api.example.test/two?x=1", "", 200),
        ("POST", "http://api.example.test/up", "", 200),
        ("GET", f"http://api.example.test/bytes/{BIG}", "", 200),
        ("GET", "http://api.example.test/five", "", 200),
        ("GET", f"http://api.example.test/bytes/{BIG + 1}", "", 200),
        ("GET", "http://api.example.test/six", "", 200),
        ("GET", "http://evil.example.test/fronted", "deny", None),
        ("GET", "http://evil.example.test/later", "deny", None),
    }
    tls = [line for line in got if line[0] == "tls"]
    assert [line[4] for line in tls] == ["api.example.test"] * 3
    assert any(line[0] == "flow" and line[4] == "deny" and line[2] == 443 for line in got)
    # And the one path read its flows in passing, the other relayed them.
    [stats] = [e.message for e in read.log if e.message.startswith(STATS)]
    assert "web flows read in passing: 11" in stats, stats
    assert "later requests read: 2, cut: 1," in stats, stats
    [cut] = [e for e in read.log if e.url == "http://evil.example.test/later"]
    assert "connection cut" in cut.message, cut
    [stats] = [e.message for e in relayed.log if e.message.startswith(STATS)]
    assert "web flows read in passing: 0" in stats, stats


def sizes_are_plausible(result: Result) -> None:
    """Every allowed request or connection has a duration and bytes both ways; the
    100 kB downloads have at least 100 kB in (mitmproxy counts bodies, the kernel path
    TCP payloads: both are at least that)."""
    for entry in result.log:
        if entry.kind not in (EntryKind.HTTP, EntryKind.TLS) or entry.verdict == "deny":
            continue
        assert entry.duration_ms > 0, entry
        assert entry.bytes_in > 0, entry
        if entry.kind is EntryKind.TLS or entry.method == "POST":
            assert entry.bytes_out > 0, entry
        big = entry.url.startswith("http://api.example.test/bytes/")
        if big or (entry.kind is EntryKind.TLS and entry.bytes_in > BIG // 2):
            assert entry.bytes_in >= BIG, entry
    tls = sorted(e.bytes_in for e in result.log if e.kind is EntryKind.TLS and e.verdict != "deny")
    assert tls[-1] >= BIG and tls[0] < BIG, tls  # the HTTPS download, and the small ones
