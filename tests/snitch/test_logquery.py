"""Log filters, summaries, CSV/JSON output, name -> address maps, follow and prune."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import time
from pathlib import Path

import pytest

from sandbox.records import follow
from snitch.core.logentry import EntryKind, LogEntry
from snitch.review.logquery import (
    CSV_FIELDS,
    CsvRows,
    Filter,
    csv_row,
    filter_entries,
    parse_when,
    prune,
    resolutions,
    summarize,
)

T0 = 1_700_000_000.0

LOG = [
    LogEntry(EntryKind.DNS, time=T0, proto="dns", qname="api.example.test", qtype="A",
             answers=["198.51.100.7", "CNAME lb.cdn.test"], names=["api.example.test"],
             verdict="allow"),
    LogEntry(EntryKind.FLOW, time=T0 + 1, proto="tcp", src="10.0.0.2", sport=40000,
             dst="198.51.100.7", dport=443, names=["api.example.test"], verdict="allow"),
    LogEntry(EntryKind.FLOW, time=T0 + 2, proto="tcp", src="10.0.0.2", sport=40001,
             dst="203.0.113.5", dport=22, verdict="deny", reason="no rule matched"),
    LogEntry(EntryKind.FLOW, time=T0 + 3, proto="udp", src="10.0.0.2", sport=40002,
             dst="192.0.2.9", dport=123, verdict="allow", reason="ask: allow once by tui"),
    LogEntry(EntryKind.DNS, time=T0 + 4, proto="dns", qname="held.test", qtype="A",
             answers=["198.18.0.5"], names=["held.test"], verdict="ask"),
    LogEntry(EntryKind.HTTP, time=T0 + 5, method="GET", url="https://api.example.test:8443/v1",
             status=200, bytes_out=120, bytes_in=3400, verdict="allow"),
    LogEntry(EntryKind.EVENT, time=T0 + 6, message="gateway stopped"),
]  # fmt: skip


def pick(**kw: object) -> list[float]:
    return [e.time - T0 for e in filter_entries(LOG, Filter(**kw))]  # type: ignore[arg-type]


def test_filters() -> None:
    assert pick() == [0, 1, 2, 3, 4, 5, 6]
    assert pick(verdicts=frozenset({"deny"})) == [2]
    assert pick(verdicts=frozenset({"allow", "ask"})) == [0, 1, 3, 4, 5]
    assert pick(hosts=("*.example.test",)) == [0, 1, 5]  # names, qname and URL host
    assert pick(hosts=("203.0.113.*", "held.*")) == [2, 4]  # dst and qname
    assert pick(hosts=("API.EXAMPLE.TEST",)) == [0, 1, 5]
    assert pick(proto="tcp") == [1, 2]
    assert pick(proto="dns") == [0, 4]
    assert pick(proto="http") == [5]
    assert pick(port=443) == [1]
    assert pick(port=8443) == [5]
    assert pick(port=53) == [0, 4]
    assert pick(since=T0 + 2, until=T0 + 4) == [2, 3, 4]
    assert pick(kinds=frozenset({"flow"}), verdicts=frozenset({"allow"})) == [1, 3]


def test_parse_when() -> None:
    now = T0
    assert parse_when("10m", now) == now - 600
    assert parse_when("1h30m", now) == now - 5400
    assert parse_when("1700000123", now) == 1700000123.0
    assert parse_when("2024-05-01T12:00:00+00:00", now) == 1714564800.0
    local_noon = dt.datetime.combine(dt.datetime.fromtimestamp(now).date(), dt.time(12, 0))
    assert parse_when("12:00", now) == local_noon.timestamp()
    assert parse_when("2024-05-01", now) == dt.datetime(2024, 5, 1).timestamp()
    with pytest.raises(ValueError, match="bad time"):
        parse_when("yesterday", now)


def test_summary_by_host() -> None:
    rows = {s.host: s for s in summarize(LOG)}
    api = rows["api.example.test"]
    assert (api.hits, api.allow, api.deny, api.dns, api.http) == (3, 3, 0, 1, 1)
    assert (api.bytes_out, api.bytes_in) == (120, 3400)
    assert api.ports == {"443/tcp", "8443/http"}
    assert (api.first, api.last) == (T0, T0 + 5)
    assert rows["203.0.113.5"].deny == 1
    assert rows["held.test"].other == 1
    assert "gateway stopped" not in rows and "" not in rows
    assert summarize(LOG)[0].host == "api.example.test"  # most hits first
    assert set(api.to_dict()) == {
        "host", "hits", "allow", "deny", "other", "dns", "http", "bytes_out", "bytes_in",
        "ports", "first", "last",
    }  # fmt: skip


def test_csv_round_trip() -> None:
    out = io.StringIO()
    rows_out = CsvRows(out)  # as coderun log --csv writes them
    rows_out.writerow(CSV_FIELDS)
    for e in LOG:
        rows_out.writerow(csv_row(e))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_FIELDS
    flow = rows[1]
    assert flow["kind"] == "flow" and flow["dst"] == "198.51.100.7" and flow["dport"] == "443"
    assert flow["time"] == "2023-11-14T22:13:21+00:00"
    assert flow["names"] == "api.example.test" and flow["rule_id"] == ""
    assert rows[0]["answers"] == "198.51.100.7 CNAME lb.cdn.test"
    assert rows[5]["bytes_in"] == "3400"


def test_json_lines_are_compact_and_round_trip() -> None:
    for e in LOG:
        d = json.loads(json.dumps(e.to_dict(), sort_keys=True))
        assert {"kind", "time"} <= set(d)
        assert LogEntry.from_dict(d) == e


def test_resolutions_use_real_answers_and_flows() -> None:
    seen = resolutions(LOG)
    assert seen == {"api.example.test": ["198.51.100.7"]}  # no CNAME text, no synthetic
    more = resolutions([*LOG, LogEntry(EntryKind.FLOW, proto="tcp", dst="2001:db8::1",
                                       names=["V6.test"], verdict="deny")])  # fmt: skip
    assert more["v6.test"] == ["2001:db8::1"]


# -- sessions ------------------------------------------------------------------------------


def make_session(
    root: Path, sid: str, start: float, end: float | None, size: int = 0, state: str = ""
) -> Path:
    folder = root / sid
    folder.mkdir(parents=True)
    rec = {"id": sid, "command": ["true"], "image": "bash", "mode": "audit", "start": start,
           "end": end, "exit": None if end is None else 0}  # fmt: skip
    (folder / "session.json").write_text(json.dumps(rec))
    (folder / "flows.jsonl").write_text("x" * size)
    if state:
        (folder / "gateway.json").write_text(json.dumps({"state": state}))
    return folder


def test_prune_by_age_and_size_never_running(tmp_path: Path) -> None:
    now = T0 + 30 * 86400
    day = 86400.0
    make_session(tmp_path, "old", T0, T0 + 10, size=1000)
    make_session(tmp_path, "crashed", T0 + 1, None, size=1000, state="stopped")
    make_session(tmp_path, "running", T0 + 2, None, size=5000, state="ready")
    make_session(tmp_path, "mid", now - 5 * day, now - 5 * day + 1, size=3000)
    make_session(tmp_path, "new", now - day, now - day + 1, size=3000)
    (tmp_path / "starting").mkdir()  # no session.json yet, just created: left alone
    assert prune(tmp_path, keep_days=7, now=now, dry_run=True) == ["crashed", "old"]
    assert (tmp_path / "old").exists()
    assert prune(tmp_path, keep_days=7, now=now) == ["crashed", "old"]
    assert not (tmp_path / "old").exists() and not (tmp_path / "crashed").exists()
    # ended sessions: 6 kB (mid 3 + new 3 + small json files); the running one's 5 kB
    # count against nobody: a cap of 9 kB removes nothing, 4 kB removes mid
    assert prune(tmp_path, max_bytes=9000, now=now) == []
    assert prune(tmp_path, max_bytes=4000, now=now) == ["mid"]
    # even a tiny cap never removes the running session or the one being created
    assert prune(tmp_path, max_bytes=1, now=now) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["running", "starting"]


def test_a_running_sessions_flood_never_prunes_an_older_session(tmp_path: Path) -> None:
    now = T0 + 86400
    make_session(tmp_path, "older", T0, T0 + 10, size=1000)
    make_session(tmp_path, "flooding", T0 + 100, None, size=50_000, state="ready")
    assert prune(tmp_path, max_bytes=2000, now=now) == []
    assert (tmp_path / "older").exists()
    # once it ended, it is an ordinary (capped) session: the oldest goes first
    make_session(tmp_path, "later", T0 + 200, T0 + 300, size=500)
    (tmp_path / "flooding" / "session.json").write_text(json.dumps(
        {"id": "flooding", "start": T0 + 100, "end": T0 + 150}))  # fmt: skip
    assert prune(tmp_path, max_bytes=51_000, now=now) == ["older"]


def test_prune_leaves_unknown_fresh_folders_but_removes_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / "junk"
    stale.mkdir()
    old = time.time() - 10 * 86400
    os.utime(stale, (old, old))
    assert prune(tmp_path, keep_days=7) == ["junk"]
    assert prune(tmp_path / "missing", keep_days=1) == []


def test_follow_reads_until_the_session_ends(tmp_path: Path) -> None:
    folder = make_session(tmp_path, "live", T0, None, state="ready")
    log = folder / "flows.jsonl"
    lines = [json.dumps(e.to_dict()) for e in LOG[:4]]
    log.write_text(lines[0] + "\n" + lines[1][:10])  # the second line is torn
    steps = iter(range(10))

    def sleep(_: float) -> None:
        step = next(steps)
        if step == 0:
            log.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n")
        elif step == 1:
            with open(log, "a") as f:
                f.write(lines[3] + "\n")
            rec = json.loads((folder / "session.json").read_text())
            rec["end"] = T0 + 10
            (folder / "session.json").write_text(json.dumps(rec))

    got = list(follow(folder, poll=0.01, sleep=sleep))
    assert got == LOG[:4]
    assert next(steps) == 2  # it stopped right after seeing the end


def test_file_lines_are_filtered_by_path_and_carry_their_fields_in_csv() -> None:
    from snitch.core.logentry import EntryKind, LogEntry
    from snitch.review.logquery import Filter, filter_entries

    opened = LogEntry(EntryKind.FILE, names=["/home/coderun/.aws/credentials"],
                      path="~/.aws/credentials", access="read", verdict="deny",
                      origin="default", pid=12)  # fmt: skip
    other = LogEntry(EntryKind.FILE, names=["/s/a.txt"], path="/tmp/x/a.txt", access="read")
    flow = LogEntry(EntryKind.FLOW, dst="192.0.2.1", names=["api.example.test"])
    entries = [opened, other, flow]
    assert list(filter_entries(entries, Filter(paths=("~/.aws/*",)))) == [opened]
    assert list(filter_entries(entries, Filter(paths=("/s/**",)))) == [other]
    assert list(filter_entries(entries, Filter(paths=("/home/**",)))) == [opened]
    row = dict(zip(CSV_FIELDS, csv_row(opened), strict=True))
    assert row["path"] == "~/.aws/credentials" and row["access"] == "read"
    assert row["origin"] == "default" and row["verdict"] == "deny"
