"""A session log for the report tests: allowed HTTPS with bytes, a denied flow, a lookup
refused, a request the proxy refused, an inbound forward, a --share file, a dropped-lines
event, and hostile names (controls, markup, a pipe, backticks, a look-alike)."""

from __future__ import annotations

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.session_dir import SessionRecord

T0 = 1_780_000_000.0
SRC = "10.0.0.2"
HOSTILE = "x\x1b]0;pwned\x07<img src=x onerror=alert(1)>|`a``b`*[c](javascript:d)\u202e.test"


def flow(t: float, dst: str, dport: int, names: list[str], verdict: str, sport: int,
         rule: str = "", proto: str = "tcp", reason: str = "") -> LogEntry:  # fmt: skip
    return LogEntry(EntryKind.FLOW, "s1", T0 + t, proto, SRC, sport, dst, dport, names,
                    verdict, 1 if rule else None, rule, reason)  # fmt: skip


def sample_entries() -> list[LogEntry]:
    return [
        LogEntry(EntryKind.DNS, "s1", T0 + 1, "udp", verdict="allow", qname="API.example.test.",
                 qtype="A", answers=["198.51.100.7"]),
        flow(2, "198.51.100.7", 443, ["api.example.test"], "allow", 40000,
             "allow api.example.test/any"),
        LogEntry(EntryKind.HTTP, "s1", T0 + 3, "tcp", SRC, 40000, "198.51.100.7", 443,
                 ["api.example.test"], method="GET", url="https://api.example.test/x",
                 status=200, bytes_out=10, bytes_in=99),
        flow(4, "198.51.100.7", 443, ["api.example.test"], "allow", 40001,
             "allow api.example.test/any"),
        LogEntry(EntryKind.TLS, "s1", T0 + 5, "tcp", SRC, 40001, "198.51.100.7", 443,
                 ["api.example.test"], sni="api.example.test", bytes_out=5, bytes_in=7),
        LogEntry(EntryKind.FLOW, "s1", T0 + 6, "tcp", SRC, 40002, "203.0.113.5", 22, [], "deny",
                 pid=31, exe="/usr/bin/ssh", cmdline="ssh -p 22 x", parents=["/bin/sh"]),
        flow(7, "203.0.113.6", 80, ["evil.example.test"], "rebind", 40003,
             "deny evil.example.test/any"),
        LogEntry(EntryKind.DNS, "s1", T0 + 8, "udp", verdict="deny", qname=HOSTILE, qtype="A"),
        LogEntry(EntryKind.HTTP, "s1", T0 + 9, "tcp", SRC, 40004, "198.51.100.8", 80,
                 ["blocked.example.test"], method="POST", url="http://blocked.example.test/up",
                 status=403, verdict="deny", rule="deny blocked.example.test/any"),
        flow(10, "192.0.2.9", 123, [], "allow", 40005, proto="udp"),
        flow(11, SRC, 8080, [], "allow", 5555, reason="inbound: forwarded from 127.0.0.1:9000"),
        LogEntry(EntryKind.FILE, "s1", T0 + 12, names=["/shares/data/a.txt"], method="read",
                 verdict="allow", src="4242", message="cat /shares/data/a.txt"),
        LogEntry(EntryKind.FILE, "s1", T0 + 13, names=["/shares/data/a.txt"], method="close",
                 bytes_in=321),
        LogEntry(EntryKind.FILE, "s1", T0 + 13.5, names=["/home/coderun/.ssh/id_rsa"],
                 path="~/.ssh/id_rsa", method="read", access="read", verdict="deny",
                 rule="deny-file ~/.ssh/*", exe="/usr/bin/cat", cmdline="cat id_rsa"),
        LogEntry(EntryKind.EVENT, "s1", T0 + 14, message="log limit", dropped=4),
        flow(15, "198.51.100.9", 443, ["pаypal.example.test"], "allow", 40006),
    ]  # fmt: skip


def sample_record() -> SessionRecord:
    return SessionRecord("s1", ["sh", "build.sh", "|x|"], "bash", "enforce", T0, T0 + 20, 0)
