"""Blocklist parsing and lookups at their edges: adblock options, trailing comments,
skipped counts, name lengths, networks written with host bits."""

from __future__ import annotations

from snitch.core.blocklist import Blocklist, normalize_domain, parse_blocklist


def test_adblock_lines_lose_their_options_and_anchors() -> None:
    p = parse_blocklist(["||x.test$script", "||y.test$a,b$c", "||z.test^a^", "||w.test^$x^y"])
    assert p.domains == ["x.test", "y.test", "z.test", "w.test"] and p.skipped == 0


def test_only_the_text_before_the_first_hash_counts() -> None:
    p = parse_blocklist(["a.test # note # more", "0.0.0.0 b.test #c.test # d.test"])
    assert p.domains == ["a.test", "b.test"] and p.skipped == 0


def test_every_skipped_line_and_name_is_counted() -> None:
    lines = ["not an address x.test", "also bad y.test", "0.0.0.0 localhost.localdomain bad_", "??"]
    p = parse_blocklist(lines)
    assert p.domains == [] and p.skipped == 5


def test_domain_length_limit() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert normalize_domain(name) == name and normalize_domain(name + ".") == name
    assert normalize_domain("c" + name) is None


def test_networks_with_host_bits_and_odd_names() -> None:
    bl = Blocklist(["10.1.2.3/8", "ads.example.test"])
    assert bl.match_ip("10.9.9.9") == "10.0.0.0/8" and len(bl) == 2
    assert bl.match_name(".ads.example.test") == "ads.example.test"
    assert bl.match_name("x.ads.example.test..") == "ads.example.test"
