"""Blocklist parsing (hosts, domain, adblock and CIDR lists), lookups, and the bench smoke."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from snitch.core.blocklist import Blocklist, load_blocklist_file, normalize_entry, parse_blocklist

ROOT = Path(__file__).resolve().parents[2]

HOSTS = """\
# Title: a Pi-hole style hosts list
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
::1 ip6-localhost ip6-loopback
255.255.255.255 broadcasthost
0.0.0.0 ads.example.com
0.0.0.0 Tracker.Example.NET.   # trailing comment
127.0.0.1 a.test b.test
:: six.example.org
"""

DOMAINS = """\
! an adblock-style comment
metrics.example.com
*.wild.example.com
||pixel.example.com^
||opts.example.com^$third-party
not a valid line at all
bad_domain..com
"""

CIDRS = """\
# OpenSnitch-style network list
203.0.113.0/24
198.51.100.7
2001:db8:bad::/48
10.1.2.3/8
"""


def test_hosts_format() -> None:
    p = parse_blocklist(HOSTS.splitlines())
    assert p.domains == [
        "ads.example.com", "tracker.example.net", "a.test", "b.test", "six.example.org",
    ]  # fmt: skip
    assert p.networks == []
    assert p.skipped == 5  # localhost(.localdomain), ip6-localhost, ip6-loopback, broadcasthost


def test_domain_and_adblock_lists() -> None:
    p = parse_blocklist(DOMAINS.splitlines())
    assert p.domains == [
        "metrics.example.com", "wild.example.com", "pixel.example.com", "opts.example.com",
    ]  # fmt: skip
    assert p.skipped == 2


def test_network_lists() -> None:
    p = parse_blocklist(CIDRS.splitlines())
    assert p.networks == ["203.0.113.0/24", "198.51.100.7/32", "2001:db8:bad::/48", "10.0.0.0/8"]
    assert p.domains == [] and p.skipped == 0


def test_normalize_entry() -> None:
    assert normalize_entry("Ads.Example.COM.") == "ads.example.com"
    assert normalize_entry("1.2.3.4") == "1.2.3.4/32"
    assert normalize_entry("::1") == "::1/128"
    assert normalize_entry("com") is None
    assert normalize_entry("a b.com") is None
    assert normalize_entry("") is None
    assert normalize_entry("1.2.3") is None and normalize_entry("10.0.0.0/33") is None
    assert normalize_entry("123.example.com") == "123.example.com"


def test_lookup_covers_subdomains_not_parents() -> None:
    bl = Blocklist(["ads.example.com", "example.net", "203.0.113.0/24", "2001:db8::/32"])
    assert bl.match_name("ads.example.com") == "ads.example.com"
    assert bl.match_name("X.Y.ADS.example.com.") == "ads.example.com"
    assert bl.match_name("example.com") is None
    assert bl.match_name("badads.example.com") is None
    assert bl.match_name("a.example.net") == "example.net"
    assert bl.match_ip("203.0.113.77") == "203.0.113.0/24"
    assert bl.match_ip("203.0.114.1") is None
    assert bl.match_ip("2001:db8::5") == "2001:db8::/32"
    assert bl.match_ip("not-an-ip") is None
    assert len(bl) == 4


def test_longest_network_wins() -> None:
    bl = Blocklist(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32"])
    assert bl.match_ip("10.1.2.3") == "10.1.2.3/32"
    assert bl.match_ip("10.1.9.9") == "10.1.0.0/16"
    assert bl.match_ip("10.9.9.9") == "10.0.0.0/8"


def test_empty_blocklist() -> None:
    bl = Blocklist()
    assert bl.match_name("a.test") is None and bl.match_ip("10.0.0.1") is None and len(bl) == 0


def test_load_file_tolerates_bad_bytes(tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_bytes(b"0.0.0.0 ok.example.com\n0.0.0.0 \xff\xfe.example.com\n")
    p = load_blocklist_file(f)
    assert p.domains == ["ok.example.com"] and p.skipped == 1


def test_bench_smoke() -> None:
    """The benchmark still runs (10,000 domains, no timing asserts, docs untouched)."""
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_blocklist.py"), "--smoke"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "## Blocklist" in res.stdout and "load 10,000 domains" in res.stdout
    assert (docs.read_bytes() if docs.exists() else None) == before
