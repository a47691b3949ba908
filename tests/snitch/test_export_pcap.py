"""``coderun log --pcap``: one synthesised packet per flow, read back with scapy."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.utils import rdpcap

from snitch.core.logentry import EntryKind, LogEntry
from snitch.review.pcap import write_pcap


def flow(proto: str, src: str, sport: int, dst: str, dport: int, t: float) -> LogEntry:
    return LogEntry(EntryKind.FLOW, time=t, proto=proto, src=src, sport=sport, dst=dst,
                    dport=dport, verdict="allow")  # fmt: skip


def test_first_packets_carry_the_five_tuples(tmp_path: Path) -> None:
    entries = [
        flow("tcp", "10.0.0.2", 40000, "198.51.100.7", 443, 1_700_000_000.25),
        flow("udp", "10.0.0.2", 40001, "192.0.2.9", 123, 1_700_000_001.0),
        flow("icmp", "10.0.0.2", 0, "192.0.2.10", 0, 1_700_000_002.0),
        flow("tcp", "fd00::2", 40002, "2001:db8::7", 80, 1_700_000_003.0),
        flow("icmp", "fd00::2", 0, "2001:db8::8", 0, 1_700_000_004.0),
        flow("tcp", "10.0.0.2", 1, "not-an-address", 2, 1_700_000_005.0),  # skipped, no DNS
        flow("udp", "10.0.0.2", 1, "2001:db8::9", 2, 1_700_000_006.0),  # mixed: skipped
        LogEntry(EntryKind.DNS, qname="x.test", verdict="allow"),
    ]
    path = tmp_path / "flows.pcap"
    assert write_pcap(entries, path) == 5
    pkts = rdpcap(str(path))
    assert len(pkts) == 5
    tcp = pkts[0]
    assert tcp[IP].src == "10.0.0.2" and tcp[IP].dst == "198.51.100.7"
    assert (tcp[TCP].sport, tcp[TCP].dport, str(tcp[TCP].flags)) == (40000, 443, "S")
    assert abs(float(tcp.time) - 1_700_000_000.25) < 1e-5
    udp = pkts[1]
    assert (udp[IP].dst, udp[UDP].sport, udp[UDP].dport) == ("192.0.2.9", 40001, 123)
    assert pkts[2][ICMP].type == 8 and pkts[2][IP].dst == "192.0.2.10"
    v6 = pkts[3]
    assert (v6[IPv6].src, v6[IPv6].dst, v6[TCP].dport) == ("fd00::2", "2001:db8::7", 80)
    assert pkts[4].haslayer(ICMPv6EchoRequest)


def test_no_flows_gives_an_empty_but_valid_pcap(tmp_path: Path) -> None:
    path = tmp_path / "none.pcap"
    assert write_pcap([], path) == 0
    assert len(rdpcap(str(path))) == 0
