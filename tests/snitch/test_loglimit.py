"""The log's limits: per-kind rates for noise, a size cap that noise cannot fill, and
the count of what was dropped (snitch/core/loglimit.py, snitch/gateway/flowlog.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from snitch.core import loglimit
from snitch.core.logentry import EntryKind
from snitch.core.logfile import read_log
from snitch.core.loglimit import MAX_KEYS, LogLimiter, LogLimits, line_kind
from snitch.gateway.flowlog import LogWriter

DNS_DENY = {"kind": "dns", "proto": "dns", "verdict": "deny", "qname": "x.example.test"}
FLOW_DENY = {"kind": "flow", "proto": "tcp", "verdict": "deny", "dst": "192.0.2.1"}
FLOW_ALLOW = {"kind": "flow", "proto": "tcp", "verdict": "allow", "dst": "192.0.2.2"}
HTTP = {"kind": "http", "proto": "tcp", "url": "http://api.example.test/"}
GARBAGE = {"kind": "event", "message": "dropped bad DNS query: DNSError('x')"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(loglimit.time, "monotonic", c)
    return c


def admitted(lim: LogLimiter, payload: dict[str, object], n: int, size: int = 100) -> int:
    return sum(lim.admit(payload, size) for _ in range(n))


def test_line_kinds() -> None:
    assert line_kind(DNS_DENY) == "dns deny"
    assert line_kind(FLOW_DENY) == "flow tcp deny"
    assert line_kind(GARBAGE) == "event dropped bad DNS query"
    assert line_kind(FLOW_ALLOW) == "flow tcp allow" and line_kind(HTTP) == "http tcp"
    assert line_kind({"kind": "dns", "proto": "dns"}) == "dns"
    assert line_kind({"proto": "udp", "verdict": "deny"}) == "udp deny" and line_kind({}) == ""
    assert (
        line_kind({"kind": "event", "message": "gateway ready: mode=ask"}) == "event gateway ready"
    )


def test_noise_is_limited_per_kind_and_refills(clock: Clock) -> None:
    lim = LogLimiter(LogLimits(max_bytes=None, rate=10.0, burst=50))
    assert admitted(lim, DNS_DENY, 80) == 50  # the burst, then nothing
    assert admitted(lim, FLOW_DENY, 80) == 50  # another kind: its own bucket
    assert admitted(lim, GARBAGE, 80) == 50
    clock.now += 2.0  # 2 s at 10 a second
    assert admitted(lim, DNS_DENY, 80) == 20
    assert lim.dropped == 30 + 30 + 30 + 60
    assert lim.unreported["dns deny"] == 90


def test_what_left_is_never_rate_limited(clock: Clock) -> None:
    lim = LogLimiter(LogLimits(max_bytes=None, rate=1.0, burst=1))
    assert admitted(lim, FLOW_ALLOW, 1000) == 1000
    assert admitted(lim, HTTP, 1000) == 1000
    assert admitted(lim, {"kind": "event", "message": "gateway stopped"}, 10) == 10


def test_noise_cannot_fill_the_cap(clock: Clock) -> None:
    lim = LogLimiter(LogLimits(max_bytes=10_000, rate=None))
    assert admitted(lim, DNS_DENY, 1000) == 75  # 3/4 of the cap
    assert admitted(lim, FLOW_ALLOW, 1000) == 25  # the rest is for what left
    assert lim.dropped_by_cap == 925 + 975 and lim.size <= 10_000
    assert lim.unreported["flow tcp allow"] == 975  # what left is dropped by its kind too


def test_too_many_kinds_share_one_bucket(clock: Clock) -> None:
    lim = LogLimiter(LogLimits(max_bytes=None, rate=1.0, burst=2))
    for i in range(MAX_KEYS + 20):
        lim.admit({"kind": "event", "message": f"kind{i}: x"}, 10)
    assert len(lim._buckets) == MAX_KEYS + 1  # and "other"
    assert admitted(lim, {"kind": "event", "message": "yet another: x"}, 5) == 0


def test_summary_says_what_was_dropped(clock: Clock) -> None:
    lim = LogLimiter(LogLimits(max_bytes=None, rate=1.0, burst=1))
    assert lim.summary("s1") is None
    admitted(lim, DNS_DENY, 11)
    clock.now += 0.5
    line = lim.summary("s1")
    assert line is not None and line["dropped"] == 10 and line["session"] == "s1"
    assert "dropped 10 lines in the last 0.5 s (dns deny: 10); 10 in all" in line["message"]
    assert lim.summary("s1") is None  # nothing new
    final = lim.summary("s1", final=True)  # the last one always comes when any were dropped
    assert final is not None and final["dropped"] == 0 and "10 in all" in final["message"]


def test_limits_from_the_environment() -> None:
    assert LogLimits.from_env({}) == LogLimits()
    got = LogLimits.from_env({"CODERUN_LOG_SESSION_MAX_MB": "0", "CODERUN_LOG_RATE": "0",
                              "CODERUN_LOG_BURST": "7"})  # fmt: skip
    assert got == LogLimits(None, None, 7)
    assert LogLimits.from_env({"CODERUN_LOG_SESSION_MAX_MB": "1.5"}).max_bytes == 1572864
    for bad in ({"CODERUN_LOG_RATE": "fast"}, {"CODERUN_LOG_BURST": "0"},
                {"CODERUN_LOG_SESSION_MAX_MB": "-1"}):  # fmt: skip
        with pytest.raises(ValueError):
            LogLimits.from_env(bad)


def test_writer_is_private_and_ends_with_the_count(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "flows.jsonl"
    writer = LogWriter(path, limits=LogLimits(max_bytes=None, rate=1.0, burst=3), session="s1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for i in range(10):
        writer.on_event("log", {**DNS_DENY, "time": float(i), "session": "s1"})
    writer.on_event("log", {**FLOW_ALLOW, "time": 11.0, "session": "s1"})
    writer.close()
    entries = list(read_log(path))
    assert [e.kind for e in entries] == [EntryKind.DNS] * 3 + [EntryKind.FLOW, EntryKind.EVENT]
    last = entries[-1]
    assert last.reason == "log-limit" and last.dropped == 7 and "7 in all" in last.message
    assert json.loads(path.read_text().splitlines()[-1])["dropped"] == 7
    assert writer.dropped == 7
