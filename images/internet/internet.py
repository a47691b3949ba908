"""The demo internet: one container that plays every outside server a test needs.

- DNS (UDP and TCP 53): every name under ``example.test`` resolves to this container's
  address, except the names in ``HOSTS`` which get addresses of their own (added to
  this container's interface at the top of its subnet, so a flow's address tells the
  names apart); anything else is NXDOMAIN.
  Every query is logged as ``DNS <qname> <qtype> id=<id>`` on stdout (the name as it
  arrived), so a test can prove a lookup never arrived, or arrived lower-cased.
- Hostile DNS (``rb.example.test``, as a name's owner could answer): names that point
  inside the asker's world (``REBIND``: the host's bridge, loopback, cloud metadata,
  private, CGNAT and synthetic ranges, the asking gateway's own address), a CNAME chain
  that ends at the host, and ``poison.rb.example.test``, whose reply also carries
  ``api.example.test A <evil.example.test's address>`` outside its chain.
- HTTP (80) and HTTPS (443, certificate for ``example.test`` and ``*.example.test``
  signed by a CA made at start, published at ``/ca/ca.pem`` and over HTTP at
  ``/ca.pem``): answers ``hello from HOST PATH``; ``/bytes/N`` answers N bytes; a POST
  body is counted and acknowledged; a request saying ``Connection: keep-alive`` keeps
  its connection open for the next one (the others are answered ``Connection: close``).
- UDP echo (7). Ping is answered by the kernel.
- Other servers on this network (the package registries of ``sandbox/registry.py``)
  get names outside the zone by writing ``{"name": "address"}`` to ``NAMES_FILE``
  (read again when it changes); nothing else outside the zone resolves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import subprocess
import sys
from pathlib import Path

from dnslib import (  # type: ignore[import-untyped]
    AAAA,
    CNAME,
    QTYPE,
    RCODE,
    RR,
    A,
    DNSRecord,
)

CA_DIR = Path("/ca")
NAMES_FILE = Path("/etc/internet/names.json")
ZONE = "example.test"
# name -> offset of its own address from the top of the subnet (.254 - n on a /24).
HOSTS = {"evil.example.test": 1, "tracker.example.test": 2, "other.example.test": 3}
REBIND_ZONE = "rb." + ZONE
# <label>.rb.example.test -> its A answers; "bridge" is this network's gateway (the
# host), "self" the demo internet's address, "asker" the address the query came from.
REBIND = {
    "host": ["bridge"],
    "loopback": ["127.0.0.1"],
    "metadata": ["169.254.169.254"],
    "private": ["10.11.12.13"],
    "cgnat": ["100.64.1.2"],
    "bench": ["198.18.0.1"],
    "gateway": ["asker"],
    "mixed": ["bridge", "self"],
    "public": ["self"],
}
REBIND_AAAA = {"loopback": "::1", "mapped": "::ffff:7f00:1", "public": "64:ff9b::1"}


def default_gateway() -> str:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "default"], check=True, capture_output=True, text=True
    ).stdout
    return str(json.loads(out)[0]["gateway"])


def own_address() -> tuple[str, int]:
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", "eth0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]["addr_info"][0]
    return str(info["local"]), int(info["prefixlen"])


def add_host_addresses(address: str, prefix: int) -> dict[str, str]:
    """Give each name in HOSTS an address of its own on eth0 (top of the subnet)."""
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    table = {}
    for name, offset in HOSTS.items():
        ip = str(net.broadcast_address - 1 - offset)
        subprocess.run(["ip", "addr", "add", f"{ip}/{prefix}", "dev", "eth0"], check=True)
        table[name] = ip
    return table


def make_ca() -> None:
    """Create a CA and a server certificate for the zone with the openssl CLI."""
    CA_DIR.mkdir(exist_ok=True)
    ext = CA_DIR / "san.ext"
    # Extensions strict verifiers (Python >= 3.13) insist on.
    ext.write_text(
        f"subjectAltName=DNS:{ZONE},DNS:*.{ZONE}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    cmds = [
        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=coderun-demo-ca "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
        "-keyout /ca/ca.key -out /ca/ca.pem",
        f"openssl req -newkey rsa:2048 -nodes -subj /CN={ZONE} -keyout /ca/server.key "
        "-out /ca/server.csr",
        "openssl x509 -req -in /ca/server.csr -CA /ca/ca.pem -CAkey /ca/ca.key "
        "-CAcreateserial -days 30 -out /ca/server.pem -extfile /ca/san.ext",
    ]
    for cmd in cmds:
        subprocess.run(cmd.split(), check=True, capture_output=True)


class DNSServer(asyncio.DatagramProtocol):
    def __init__(self, address: str, hosts: dict[str, str], bridge: str = "") -> None:
        self.address = address
        self.hosts = hosts
        self.bridge = bridge
        self.transport: asyncio.DatagramTransport | None = None
        self.extra: dict[str, str] = {}
        self.extra_stamp: tuple[float, int] | None = None

    def extra_names(self) -> dict[str, str]:
        """Names other servers on this network registered (NAMES_FILE), lower-cased."""
        try:
            st = NAMES_FILE.stat()
            stamp = (st.st_mtime, st.st_ino)
            if stamp != self.extra_stamp:
                table = json.loads(NAMES_FILE.read_text())
                self.extra = {str(k).lower(): str(v) for k, v in table.items()}
                self.extra_stamp = stamp
        except (OSError, ValueError, AttributeError):
            pass
        return self.extra

    def answer(self, data: bytes, asker: str = "") -> bytes:
        request = DNSRecord.parse(data)
        wire = str(request.q.qname).rstrip(".")
        qname = wire.lower()
        qtype = QTYPE[request.q.qtype]
        print(f"DNS {wire} {qtype} id={request.header.id}", flush=True)
        reply = request.reply()
        known = qname == ZONE or qname.endswith("." + ZONE)
        extra = self.extra_names()
        if qname in extra:
            if qtype == "A":
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(extra[qname]), ttl=60))
        elif not known:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qname.endswith("." + REBIND_ZONE):
            self.hostile(reply, qname, qtype, asker)
        elif qtype == "A":
            ip = self.hosts.get(qname, self.address)
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=60))
        return bytes(reply.pack())

    def hostile(self, reply: DNSRecord, qname: str, qtype: str, asker: str) -> None:
        """Answers a name's owner could give: pointing inside, or poisoning others."""
        label = qname[: -len(REBIND_ZONE) - 1]
        values = {"bridge": self.bridge, "self": self.address, "asker": asker}
        if label == "chain":  # chain -> host.rb -> the host's bridge
            target = "host." + REBIND_ZONE
            reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME(target), ttl=60))
            if qtype == "A":
                reply.add_answer(RR(target, QTYPE.A, rdata=A(self.bridge), ttl=60))
        elif label == "poison" and qtype == "A":
            evil = self.hosts["evil.example.test"]
            poison = RR("api." + ZONE, QTYPE.A, rdata=A(evil), ttl=60)
            reply.add_answer(poison)
            reply.add_answer(RR(qname, QTYPE.A, rdata=A(self.address), ttl=60))
            reply.add_auth(poison)
            reply.add_ar(poison)
        elif qtype == "A":
            for value in REBIND.get(label, ["self"]):
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(values.get(value, value)), ttl=60))
        elif qtype == "AAAA" and label in REBIND_AAAA:
            reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(REBIND_AAAA[label]), ttl=60))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.answer(data, addr[0])
        except Exception as exc:  # garbage in: log and carry on
            print(f"DNS bad query from {addr[0]}: {exc}", flush=True)
            return
        assert self.transport is not None
        self.transport.sendto(out, addr)


async def dns_tcp(
    server: DNSServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        size = int.from_bytes(await reader.readexactly(2), "big")
        peer = writer.get_extra_info("peername") or ("", 0)
        out = server.answer(await reader.readexactly(size), str(peer[0]))
        writer.write(len(out).to_bytes(2, "big") + out)
        await writer.drain()
    except Exception as exc:
        print(f"DNS/TCP error: {exc}", flush=True)
    finally:
        writer.close()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        print(f"ECHO {addr[0]}:{addr[1]} {len(data)}", flush=True)
        self.transport.sendto(data, addr)


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers requests until one does not ask ``Connection: keep-alive``."""
    try:
        while await answer_http(reader, writer):
            pass
    except Exception as exc:
        print(f"HTTP error: {exc!r}", flush=True)
    finally:
        writer.close()


async def answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """One request and its answer; True to read another on the same connection."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return False  # the client closed between requests
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    length = int(headers.get("content-length", "0") or 0)
    if length:
        body = await reader.readexactly(length)
    host = headers.get("host", "")
    print(f"HTTP {method} {host} {path} {len(body)}", flush=True)
    if path.startswith("/record"):  # what arrived, for tests (placeholder secrets)
        seen = {"path": path, "headers": headers, "body": body.decode("latin-1")}
        print(f"RECORD {json.dumps(seen, sort_keys=True)}", flush=True)
    if path.startswith("/bytes/"):
        payload = b"x" * min(int(path.split("/")[2]), 100_000_000)
    elif path == "/ca.pem":
        payload = (CA_DIR / "ca.pem").read_bytes()
    elif method == "POST":
        payload = f"received {len(body)} bytes\n".encode()
    else:
        payload = f"hello from {host} {path}\n".encode()
    keep = headers.get("connection", "").lower() == "keep-alive"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + (b"Connection: keep-alive\r\n" if keep else b"Connection: close\r\n")
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
    )
    writer.write(payload)
    await writer.drain()
    return keep


async def main() -> None:
    make_ca()
    address, prefix = own_address()
    hosts = add_host_addresses(address, prefix)
    loop = asyncio.get_running_loop()
    dns = DNSServer(address, hosts, default_gateway())
    await loop.create_datagram_endpoint(lambda: dns, local_addr=("0.0.0.0", 53))
    await asyncio.start_server(lambda r, w: dns_tcp(dns, r, w), "0.0.0.0", 53)
    # One echo socket per address, so each reply leaves from the address it was sent to.
    for ip in [address, *hosts.values()]:
        await loop.create_datagram_endpoint(Echo, local_addr=(ip, 7))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(CA_DIR / "server.pem", CA_DIR / "server.key")
    servers = [
        await asyncio.start_server(http, "0.0.0.0", 80),
        await asyncio.start_server(http, "0.0.0.0", 443, ssl=tls),
    ]
    print(f"HOSTS {json.dumps(hosts)}", flush=True)
    print(f"BRIDGE {dns.bridge}", flush=True)
    print(f"READY {address}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
