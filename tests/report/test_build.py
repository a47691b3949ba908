"""The report model from a session log: what counts under which endpoint."""

from __future__ import annotations

from snitch.review.report.build import build_report, session_info
from snitch.review.report.model import EndpointKey, Report

from .samples import T0, sample_entries, sample_record


def report() -> Report:
    return build_report(sample_entries(), session_info(sample_record(), "s1"))


def by_key(rows: list, name: str) -> list:  # type: ignore[type-arg]
    return [r for r in rows if r.key.name == name]


def test_allowed_flows_gather_their_proxied_bytes() -> None:
    r = report()
    (api,) = [e for e in r.endpoints if e.key == EndpointKey("api.example.test", 443, "tcp")]
    assert api.connections == 2 and api.requests == 1
    assert (api.bytes_out, api.bytes_in) == (15, 106)  # the HTTP request and the TLS relay
    assert api.rule == "allow api.example.test/any" and api.verdict == "allow"
    assert api.addresses == ["198.51.100.7"]
    assert (api.first, api.last) == (T0 + 2, T0 + 5)


def test_lookups_are_endpoints_of_their_own_normalised() -> None:
    r = report()
    (dns,) = [e for e in r.endpoints if e.key.proto == "dns"]
    assert dns.key == EndpointKey("api.example.test", 53, "dns")
    assert dns.addresses == ["198.51.100.7"]


def test_denied_attempts_include_rebinds_refused_lookups_and_requests() -> None:
    r = report()
    keys = {str(e.key) for e in r.denied}
    assert "203.0.113.5:22/tcp" in keys  # no name: the address
    assert "evil.example.test:80/tcp" in keys  # a rebind is a refusal
    assert "blocked.example.test:80/tcp" in keys  # the proxy refused the request
    (blocked,) = by_key(r.denied, "blocked.example.test")
    assert blocked.requests == 1 and blocked.rule == "deny blocked.example.test/any"
    assert all(e.verdict == "deny" for e in r.denied)
    assert not any(e.verdict == "deny" for e in r.endpoints)


def test_inbound_forwards_are_not_contacts() -> None:
    r = report()
    assert not [e for e in r.endpoints if e.key.port == 8080]


def test_udp_and_icmp_ports() -> None:
    r = report()
    assert EndpointKey("192.0.2.9", 123, "udp") in r.endpoint_keys()


def test_files_opened_and_their_bytes() -> None:
    (refused, f) = report().files
    assert (f.path, f.access, f.opens, f.bytes_read) == ("/shares/data/a.txt", "read", 1, 321)
    assert f.processes == ["cat /shares/data/a.txt"] and f.verdict == "allow"
    assert (refused.path, refused.verdict, refused.rule) == (
        "/home/coderun/.ssh/id_rsa", "deny", "deny-file ~/.ssh/*")  # fmt: skip
    assert refused.processes == ["cat id_rsa"] and refused.bytes_read == 0


def test_dropped_lines_are_counted() -> None:
    assert report().log_dropped == 4


def test_hostile_text_is_made_safe() -> None:
    r = report()
    for e in (*r.endpoints, *r.denied):
        for text in (e.key.name, *e.addresses, e.rule, e.reason):
            assert text.isprintable() and "\u202e" not in text
    hostile = [e for e in r.denied if e.key.proto == "dns"]
    assert hostile and "\\x1b" in hostile[0].key.name


def test_session_info_from_the_record_or_the_id() -> None:
    info = session_info(sample_record(), "s1")
    assert info.command == ("sh", "build.sh", "|x|") and info.exit == 0
    assert session_info(None, "abc\x1b").id == "abc\\x1b"


def test_an_empty_log_is_an_empty_report() -> None:
    r = build_report([], session_info(None, "s9"))
    assert (r.endpoints, r.denied, r.files, r.log_dropped) == ([], [], [], 0)


def test_two_programs_to_one_endpoint_are_two_rows_with_their_process() -> None:
    from snitch.core.logentry import EntryKind, LogEntry

    def made_by(t: float, exe: str, pid: int, sport: int) -> LogEntry:
        return LogEntry(EntryKind.FLOW, "s", T0 + t, "tcp", "10.0.0.2", sport, "198.51.100.7",
                        443, ["api.example.test"], "allow", pid=pid, exe=exe,
                        cmdline=f"{exe} x", parents=["/bin/sh", "/usr/bin/npm\x1b"])  # fmt: skip

    entries = [made_by(1, "/usr/bin/curl", 7, 1), made_by(2, "/usr/bin/python3", 8, 2),
               made_by(3, "/usr/bin/curl", 9, 3)]  # fmt: skip
    r = build_report(entries, session_info(None, "s"))
    rows = {e.process.exe: e for e in r.endpoints}
    assert set(rows) == {"/usr/bin/curl", "/usr/bin/python3"}
    curl = rows["/usr/bin/curl"]
    assert curl.connections == 2 and curl.process.pid == 7
    assert curl.process.cmdline == "/usr/bin/curl x"
    assert curl.process.parents == ("/bin/sh", "/usr/bin/npm\\x1b")


def test_file_lines_with_path_and_access() -> None:
    from snitch.core.logentry import EntryKind, LogEntry

    entries = [
        LogEntry(EntryKind.FILE, "s", T0, path="/w/.env", access="write", verdict="allow",
                 cmdline="node evil.js"),
        LogEntry(EntryKind.FILE, "s", T0 + 1, path="/w/.env", method="close", bytes_out=12),
    ]  # fmt: skip
    (f,) = build_report(entries, session_info(None, "s")).files
    assert (f.path, f.access, f.opens, f.bytes_written, f.processes) == (
        "/w/.env", "write", 1, 12, ["node evil.js"])  # fmt: skip


def test_a_close_adds_its_bytes_to_the_allowed_open_only() -> None:
    from snitch.core.logentry import EntryKind, LogEntry

    def line(t: float, **kw: object) -> LogEntry:
        return LogEntry(EntryKind.FILE, "s", T0 + t, names=["/s/f"], **kw)  # type: ignore[arg-type]

    entries = [line(0, method="read", access="read", verdict="allow"),
               line(1, method="read", access="read", verdict="deny", rule="deny-file /s/*"),
               line(2, method="close", bytes_in=5)]  # fmt: skip
    files = build_report(entries, session_info(None, "s")).files
    assert [(f.verdict, f.bytes_read) for f in files] == [("allow", 5), ("deny", 0)]


def test_a_flow_line_written_after_its_requests_still_gathers_them() -> None:
    """A flow's line waits for its process (attribution) and may follow its requests'
    http lines in the file; its time is the verdict's, before theirs."""
    entries = sample_entries()
    late = sorted(entries, key=lambda e: (e.kind.value != "http", e.time))  # http lines first
    assert [e.kind for e in late] != [e.kind for e in entries]
    r = build_report(late, session_info(sample_record(), "s1"))
    assert r.endpoints == report().endpoints
