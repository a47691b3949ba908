"""Process attribution on the host: /proc parsing on fixtures, the finder on a fake
/proc tree, and the service answering the gateway's client over a real unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sandbox.attribution.finder import ProcessFinder
from sandbox.attribution.procfs import (
    find_inode,
    kernel_hex,
    parse_cmdline,
    parse_socket_table,
    parse_status,
    search_socket_table,
    socket_inode,
)
from sandbox.attribution.service import Attribution, AttributionService
from snitch.core.model import FlowKey, Proto
from snitch.core.process import MAX_CMDLINE, ProcessInfo
from snitch.gateway.attribution import Attributor
from tests.hostfakes import FakeProc

FIXTURES = Path(__file__).with_name("fixtures") / "proc_net"

# /proc/net/tcp as the kernel writes it: a listener on 127.0.0.11:40181 and a flow
# 172.18.0.2:48334 -> 192.168.0.2:80 (SYN_SENT, inode 98765), plus a malformed line.
TCP = (FIXTURES / "tcp").read_text()
# /proc/net/tcp6: an IPv4-mapped flow ::ffff:172.18.0.2:40000 -> ::ffff:192.168.0.2:443
TCP6 = (FIXTURES / "tcp6").read_text()
# /proc/net/udp: an unconnected socket bound to 0.0.0.0:5353 (a sendto flow)
UDP = (FIXTURES / "udp").read_text()


def test_socket_tables_parse_ipv4_ipv6_and_mapped_addresses() -> None:
    tcp = parse_socket_table(TCP)
    assert tcp == {("127.0.0.11", 40181, "0.0.0.0", 0): 4242,
                   ("172.18.0.2", 48334, "192.168.0.2", 80): 98765}  # fmt: skip
    tcp6 = parse_socket_table(TCP6)
    assert tcp6[("172.18.0.2", 40000, "192.168.0.2", 443)] == 777
    assert tcp6[("::1", 53, "::", 0)] == 778
    assert find_inode(tcp, "172.18.0.2", 48334, "192.168.0.2", 80) == 98765
    assert find_inode(tcp, "172.18.0.2", 48335, "192.168.0.2", 80) is None
    udp = parse_socket_table(UDP)
    assert find_inode(udp, "172.18.0.2", 5353, "192.0.2.9", 53) == 5353  # unconnected
    assert parse_socket_table("header only\n") == {}


def test_the_table_search_reads_only_the_lines_of_the_flows_port() -> None:
    closed = "".join(
        f"  {i}: 020012AC:{i:04X} 0200A8C0:0050 06 00000000:00000000 03:00000064 00000000"
        "     0        0 0 3 0000000000000000\n"
        for i in range(1, 5000)
    )  # closed sockets (TIME_WAIT): inode 0, never a process's
    for table, flow, ipv6, inode in (
        (TCP + closed, ("172.18.0.2", 48334, "192.168.0.2", 80), False, 98765),
        (TCP6, ("172.18.0.2", 40000, "192.168.0.2", 443), True, 777),
        (UDP, ("172.18.0.2", 5353, "192.0.2.9", 53), False, 5353),
        (TCP + closed, ("172.18.0.2", 1000, "192.168.0.2", 80), False, None),  # closed
        (TCP, ("172.18.0.2", 48335, "192.168.0.2", 80), False, None),
        (TCP, ("not an address", 1, "192.168.0.2", 80), False, None),
    ):
        assert search_socket_table(table, *flow, ipv6_table=ipv6) == inode, flow
    assert kernel_hex("172.18.0.2", False) == "020012AC"
    assert kernel_hex("172.18.0.2", True) == "0000000000000000FFFF0000020012AC"


def test_fd_links_status_and_a_hostile_cmdline() -> None:
    assert socket_inode("socket:[12345]") == 12345
    assert socket_inode("pipe:[12345]") is None and socket_inode("socket:[x]") is None
    status = parse_status("Name:\tcurl\nPid:\t4242\nPPid:\t4200\nUid:\t1000\t1000\t1000\t1000\n"
                          "NSpid:\t4242\t7\n")  # fmt: skip
    assert status is not None and (status.nspid, status.ppid, status.uid) == (7, 4200, 1000)
    assert parse_status("Name:\tx\n") is None
    raw = b"curl\0-H\0X: \x1b]0;owned\x07\0\xff\xfe\0"
    assert parse_cmdline(raw) == "curl -H X: \x1b]0;owned\x07 \\xff\\xfe"
    long = ProcessInfo(1, 0, "/x", "a" * 5000).capped()
    assert len(long.cmdline) == MAX_CMDLINE


def sandbox_proc(root: Path) -> FakeProc:
    """Host pid 100 is the sandbox's init (sh, pid 1 inside), 101 its child curl (pid 7)
    holding socket 98765, 102 python; 50 is a host process holding another socket."""
    proc = FakeProc(root)
    proc.process(50, "host", 50, 1, "/usr/sbin/sshd", [b"sshd"], sockets=(4242,), uid=0)
    proc.process(100, "sbx", 1, 60, "/usr/bin/dash", [b"sh", b"-c", b"curl ..."])
    proc.process(101, "sbx", 7, 100, "/usr/bin/curl", [b"curl", b"http://a.example.test/"],
                 sockets=(98765,))  # fmt: skip
    proc.process(102, "sbx", 8, 100, "/usr/bin/python3.13", [b"python3"], sockets=(777,))
    proc.table(100, "tcp", TCP)
    proc.table(100, "tcp6", TCP6)
    return proc


def test_the_finder_names_the_process_its_parents_and_only_sandbox_processes(
    tmp_path: Path,
) -> None:
    sandbox_proc(tmp_path)
    finder = ProcessFinder(100, tmp_path)
    curl = finder.find("tcp", "172.18.0.2", 48334, "192.168.0.2", 80)
    assert curl == ProcessInfo(7, 1000, "/usr/bin/curl", "curl http://a.example.test/",
                               ("/usr/bin/dash",))  # fmt: skip
    python = finder.find("tcp", "172.18.0.2", 40000, "192.168.0.2", 443)
    assert python is not None and python.exe == "/usr/bin/python3.13"
    assert finder.scans == 1  # the second came from the cache of the first scan
    # the host's own socket (a listener in this table) is never a sandbox process's
    assert finder.find("tcp", "127.0.0.11", 40181, "0.0.0.0", 0) is None
    assert finder.find("tcp", "172.18.0.2", 1, "192.168.0.2", 80) is None  # no such socket


def test_the_service_answers_the_gateways_client(tmp_path: Path) -> None:
    sandbox_proc(tmp_path / "proc")
    pids = iter([0, 100])  # the sandbox is not running at the first question
    service = AttributionService(tmp_path / "a.sock",
                                 Attribution(lambda: next(pids), tmp_path / "proc"))  # fmt: skip
    service.start()

    async def ask() -> tuple[ProcessInfo | None, ...]:
        client = Attributor(tmp_path / "a.sock", deadline=5.0)
        client.run()
        while client._writer is None:  # noqa: SLF001 - wait for the connection
            await asyncio.sleep(0.01)
        flow = FlowKey(Proto.TCP, "172.18.0.2", 48334, "192.168.0.2", 80)
        before = await client.wait(flow)
        client._answers.clear()  # noqa: SLF001 - ask again, now that it runs
        found = await client.wait(flow)
        udp = await client.wait(FlowKey(Proto.UDP, "172.18.0.2", 9, "192.0.2.1", 53))
        client.close()
        return before, found, udp

    try:
        before, found, udp = asyncio.run(ask())
    finally:
        service.stop()
    assert before is None
    assert found is not None and found.exe == "/usr/bin/curl" and found.pid == 7
    assert udp is None
    assert not (tmp_path / "a.sock").exists()


def test_a_malformed_answer_is_no_process() -> None:
    assert ProcessInfo.from_dict({"id": 1}) is None
    assert ProcessInfo.from_dict({"pid": "1", "uid": 0, "exe": "/x"}) is None
    assert ProcessInfo.from_dict({"pid": 1, "uid": 0, "exe": "/x", "parents": [1]}) is None
    ok = ProcessInfo.from_dict({"pid": 1, "uid": 0, "exe": "/x" * 1000, "parents": ["/a"] * 50})
    assert ok is not None and len(ok.exe) == 512 and len(ok.parents) == 16


def test_sock_diag_finds_a_tcp_socket_in_a_namespace_by_its_4_tuple() -> None:
    """In this process's own namespace (the sandbox's works the same, by its init pid)."""
    import os
    import socket

    from sandbox.attribution.diag import TcpDiag
    from tests.needs import need_root

    need_root("joining a network namespace (setns)")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as conn:
            diag = TcpDiag(os.getpid())
            try:
                (src, sport), (dst, dport) = conn.getsockname(), conn.getpeername()
                link = os.readlink(f"/proc/self/fd/{conn.fileno()}")
                assert link == f"socket:[{diag.inode(src, sport, dst, dport)}]"
                assert diag.inode(src, sport + 1, dst, dport) is None  # no such socket
                assert diag.inode("not an address", sport, dst, dport) is None
            finally:
                diag.close()


def test_a_socket_held_by_two_programs_is_nobodys(tmp_path: Path) -> None:
    """python makes the socket, starts curl holding it too, then connects: naming curl
    would hand python curl's exe rule; the flow's program is unknown instead."""
    proc = sandbox_proc(tmp_path)
    proc.process(103, "sbx", 9, 102, "/usr/bin/curl", [b"curl", b"-T", b"-"], sockets=(777,))
    finder = ProcessFinder(100, tmp_path)
    assert finder.find("tcp", "172.18.0.2", 40000, "192.168.0.2", 443) is None
    # a forked child of the same program sharing it: that program
    proc.process(104, "sbx", 10, 101, "/usr/bin/curl", [b"curl"], sockets=(98765,))
    finder = ProcessFinder(100, tmp_path)
    found = finder.find("tcp", "172.18.0.2", 48334, "192.168.0.2", 80)
    assert found is not None and found.exe == "/usr/bin/curl" and found.pid == 10


def test_the_service_binds_in_a_folder_deeper_than_a_socket_path_may_be(tmp_path: Path) -> None:
    """A unix socket's path is at most 107 bytes; a deep data dir must not break a run."""
    import json
    import os
    import socket

    deep = tmp_path / ("d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    service = AttributionService(deep / "attribution.sock", Attribution(lambda: 0))
    service.start()
    try:
        folder = os.open(deep, os.O_RDONLY)
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(f"/proc/self/fd/{folder}/attribution.sock")
            os.close(folder)
            conn.sendall(b'{"id": 5, "proto": "tcp", "src": "10.0.0.2", "sport": 1, '
                         b'"dst": "192.0.2.1", "dport": 80}\n')  # fmt: skip
            assert json.loads(conn.makefile().readline()) == {"id": 5}
    finally:
        service.stop()
    assert not (deep / "attribution.sock").exists()
