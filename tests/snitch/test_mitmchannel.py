"""The gateway <-> mitmproxy worker channel (mitmwire.py, mitmchannel.py, mitmserve.py,
mitmproc.py): every message kind survives the wire, asks are answered by the gateway's
decision code on its own loop (a held one holds nothing else up), and each side goes
when the other does. mitmproxy itself runs only in the gateway image (tests/e2e)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snitch.core.logentry import EntryKind, LogEntry
from snitch.core.model import Action, Decision, DecisionRequest, FlowKey, Mode, Proto, Query, Rule
from snitch.gateway.mitmchannel import Channel, ChannelClosed
from snitch.gateway.mitmproc import MitmProcess, WorkerFailed
from snitch.gateway.mitmserve import MitmServer
from snitch.gateway.mitmwire import (
    MESSAGES,
    Address,
    AddressAnswer,
    Closed,
    Connection,
    ConnectionAnswer,
    Log,
    Message,
    Ready,
    Request,
    RequestAnswer,
    SecretValues,
    SecretValuesAnswer,
    Start,
    Verify,
    VerifyAnswer,
    WireError,
    decode,
    encode,
)
from snitch.gateway.mitmworker import GatewayClient
from snitch.gateway.proxyjudge import ProxyJudge
from snitch.gateway.refusal import Refusal
from snitch.gateway.requestgate import Outcome, SeenRequest
from tests.fakes import LogCollector
from tests.fakes import gate as fake_gate

SEEN = SeenRequest("10.0.0.2", 40001, "10.1.1.1", 80, "api.example.test", "POST",
                   "/upload?x=1", "http://api.example.test/upload?x=1", 12, "text/plain",
                   "application/json")  # fmt: skip
REFUSAL = Refusal(403, (("X-Coderun-Denied", "rule 3"), ("Content-Type", "text/plain")),
                  b"blocked \xff\n", "deny POST")  # fmt: skip
EXAMPLES: list[Message] = [
    Start("10.9.0.1", 8080, "/tmp/ca", True, "/ca.pem",
          [{"name": "TOKEN", "placeholder": "coderun-secret-x", "hosts": ["*.example.test"]}],
          [443, 8443]),
    Ready(),
    Connection(1, "10.0.0.2", 40000, "10.1.1.1", 443, True, "api.example.test"),
    Connection(9, "10.0.0.2", 40002, "10.1.1.1", 80, False, "", "other", "evil.example.test",
               False, 120),
    ConnectionAnswer(1, True, True),
    Closed("10.0.0.2", 40000),
    Request(2, SEEN),
    RequestAnswer(2, Outcome(Decision(Action.DENY, 3, "deny POST"), REFUSAL)),
    RequestAnswer(3, Outcome(Decision(Action.ALLOW, None, "asked"))),
    RequestAnswer(4, None),
    Address(5, "198.18.0.3"),
    AddressAnswer(5, "10.1.1.1"),
    AddressAnswer(6, None),
    Verify(7, "api.example.test", "10.1.1.1"),
    VerifyAnswer(7, False),
    SecretValues(8),
    SecretValuesAnswer(8, {"TOKEN": "s3cr3t"}),
    Log(LogEntry(EntryKind.HTTP, proto="tcp", src="10.0.0.2", names=["a.example.test"],
                 status=200, url="http://a.example.test/\x1b[31m")),
]  # fmt: skip


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: str(m.KIND))
def test_every_message_survives_the_wire(message: Message) -> None:
    frame = encode(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode(frame[4:]) == message


def test_every_kind_has_an_example() -> None:
    assert {m.KIND for m in EXAMPLES} == set(MESSAGES)


def test_the_values_are_never_in_a_messages_text() -> None:
    assert "s3cr3t" not in repr(SecretValuesAnswer(8, {"TOKEN": "s3cr3t"}))


@pytest.mark.parametrize("body", [b"", b"[]", b'{"kind":"nope"}', b'{"kind":"connection"}',
                                  b"\xff"])  # fmt: skip
def test_what_is_not_a_message_is_refused(body: bytes) -> None:
    with pytest.raises(WireError):
        decode(body)


async def pair(on_gateway: Channel, on_worker: Channel) -> None:
    a, b = socket.socketpair()
    await on_gateway.open(a)
    await on_worker.open(b)


async def test_an_ask_fails_when_the_other_end_goes() -> None:
    closed: list[bool] = []
    gateway = Channel(lambda m: None)
    worker = Channel(lambda m: None, lambda: closed.append(True))
    await pair(gateway, worker)
    ask = asyncio.create_task(worker.ask(Address(worker.next_id(), "198.18.0.1"), AddressAnswer))
    await asyncio.sleep(0.01)
    gateway.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(ask, 5)
    assert closed == [True]
    with pytest.raises(ChannelClosed):
        worker.send(Ready())


async def test_a_bad_frame_closes_the_channel() -> None:
    closed: list[bool] = []
    a, b = socket.socketpair()
    channel = Channel(lambda m: None, lambda: closed.append(True))
    await channel.open(a)
    b.sendall(b"\x00\x00\x00\x02{}")
    assert channel.task is not None
    await asyncio.wait_for(asyncio.shield(channel.task), 5)
    assert closed == [True]
    b.close()


def served(tmp_path: Path, mode: Mode, rules: list[Rule]) -> tuple[MitmServer, LogCollector]:
    gate, logged = fake_gate(tmp_path, mode, rules)
    return MitmServer(gate, ProxyJudge(gate), tmp_path / "secrets.json"), logged


async def connect(server: MitmServer) -> GatewayClient:
    gateway = Channel(server.on_message, server.close)
    server.channel = gateway
    worker = Channel(lambda m: None)
    await pair(gateway, worker)
    return GatewayClient(worker)


async def test_a_held_connection_holds_nothing_else_up(tmp_path: Path) -> None:
    server, logged = served(tmp_path, Mode.ASK, [])
    client = await connect(server)
    gate = server.gate
    key = FlowKey(Proto.TCP, "10.0.0.2", 40000, "10.66.0.9", 443)
    gate.deferred[key] = time.time()
    held = asyncio.create_task(client.connection(key.src, key.sport, key.dst, key.dport,
                                                 True, "pypi.test"))  # fmt: skip
    assert gate.asker is not None
    deadline = time.monotonic() + 5
    while not gate.asker.pending():
        assert time.monotonic() < deadline, "the connection was not held"
        await asyncio.sleep(0.01)
    # Meanwhile other asks are answered.
    assert await asyncio.wait_for(client.verified("api.example.test", "10.1.1.1"), 5) is False
    assert await asyncio.wait_for(client.connection("10.0.0.2", 40001, "10.1.1.1", 80, False,
                                                    ""), 5) == (True, False)  # fmt: skip
    [item] = gate.asker.pending()
    assert item.claimed == "pypi.test"
    gate.asker.decide(DecisionRequest(Action.ALLOW, pending_id=item.id))
    assert await asyncio.wait_for(held, 5) == (True, False)
    assert logged[-1]["verdict"] == "allow"


async def test_a_head_mitmproxy_would_relay_unread_is_refused(tmp_path: Path) -> None:
    """Bytes that are no request line this gateway reads but name a denied Host, or a
    head still cut short at the limit: refused and logged (peek.py reads them)."""
    from snitch.gateway import peek

    rules = [Rule(Action.ALLOW, cidr="10.1.1.1/32"), Rule(Action.DENY, host="evil.example.test")]
    server, logged = served(tmp_path, Mode.ENFORCE, rules)
    client = await connect(server)
    odd = peek.read(b"GET\t/ HTTP/1.1\r\nHost: evil.example.test\r\n\r\n")
    assert odd.kind == "other" and odd.host == "evil.example.test", odd
    refused = client.connection("10.0.0.2", 40003, "10.1.1.1", 80, False, "", odd, 40)
    assert await asyncio.wait_for(refused, 5) == (False, False)
    assert logged[-1]["verdict"] == "deny" and "does not parse" in logged[-1]["reason"]
    cut = peek.Seen("http", partial=True)
    assert await client.connection("10.0.0.2", 40004, "10.1.1.1", 80, False, "", cut,
                                   16384) == (False, False)  # fmt: skip
    assert "not complete after 16384 bytes" in logged[-1]["reason"]
    fine = peek.read(b"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
    assert await client.connection("10.0.0.2", 40005, "10.1.1.1", 80, False, "", fine,
                                   40) == (True, False)  # fmt: skip


async def test_a_request_rule_refusal_reaches_the_worker_whole(tmp_path: Path) -> None:
    rule = Rule(Action.DENY, cidr="10.1.1.1/32", path_prefix="/upload", method="POST", id=None)
    server, _ = served(tmp_path, Mode.ENFORCE, [rule])
    client = await connect(server)
    outcome = await asyncio.wait_for(client.request(SEEN), 5)
    assert outcome is not None and outcome.refusal is not None
    assert outcome.decision.action is Action.DENY and outcome.refusal.status == 403
    assert outcome.refusal.reason == outcome.decision.reason


async def test_log_lines_get_the_session_and_the_rules_words(tmp_path: Path) -> None:
    rule = Rule(Action.ALLOW, host="a.example.test")
    server, logged = served(tmp_path, Mode.ENFORCE, [rule])
    client = await connect(server)
    rules = server.gate.rules
    decided = rules.decide(Query(Proto.TCP, "10.1.1.1", 80, ("a.example.test",)))
    assert decided is not None and decided.rule_id is not None
    client.log(LogEntry(EntryKind.HTTP, session="forged", rule="forged",
                        rule_id=decided.rule_id, url="http://a.example.test/"))  # fmt: skip
    deadline = time.monotonic() + 5
    while not logged:
        assert time.monotonic() < deadline, "the log line did not arrive"
        await asyncio.sleep(0.01)
    assert logged[0]["session"] == "s1"
    assert logged[0]["rule"] == rules.describe(decided.rule_id) != "forged"


async def test_a_deferred_connection_closed_undecided_is_logged_denied(tmp_path: Path) -> None:
    server, logged = served(tmp_path, Mode.ENFORCE, [])
    client = await connect(server)
    server.gate.deferred[FlowKey(Proto.TCP, "10.0.0.2", 40000, "10.66.0.9", 443)] = 0.0
    client.closed("10.0.0.2", 40001)  # another connection: nothing to log
    client.closed("10.0.0.2", 40000)
    deadline = time.monotonic() + 5
    while not logged:
        assert time.monotonic() < deadline, "no line for the silent probe"
        await asyncio.sleep(0.01)
    assert logged[0]["verdict"] == "deny" and "ClientHello" in logged[0]["reason"]
    assert not server.gate.deferred


async def test_secret_values_come_from_the_hosts_file_once(tmp_path: Path) -> None:
    server, logged = served(tmp_path, Mode.ENFORCE, [])
    client = await connect(server)
    assert await client.secret_values() is None  # not there yet
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"TOKEN": "s3cr3t"}))
    assert await client.secret_values() == {"TOKEN": b"s3cr3t"}
    assert not path.exists()
    assert await client.secret_values() == {"TOKEN": b"s3cr3t"}
    assert not any("s3cr3t" in json.dumps(line) for line in logged)


def test_the_worker_exits_when_the_gateway_goes() -> None:
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", "snitch.gateway.mitmworker",
                             str(theirs.fileno())], pass_fds=(theirs.fileno(),))  # fmt: skip
    theirs.close()
    try:
        time.sleep(0.2)
        assert proc.poll() is None, "the worker did not wait for its start"
        ours.close()  # the gateway is gone
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_worker_that_fails_to_start_is_reported(tmp_path: Path) -> None:
    """Here mitmproxy is not installed: the worker dies before it listens."""
    server, _ = served(tmp_path, Mode.ENFORCE, [])
    exits: list[int] = []
    mitm = MitmProcess(server, exits.append)
    await mitm.start(Start("127.0.0.1", 0, str(tmp_path / "ca"), False))
    try:
        with pytest.raises(WorkerFailed):
            await mitm.listening(timeout=30)
        assert mitm.watcher is not None
        await asyncio.wait_for(mitm.watcher, 5)
        assert exits and exits[0] != 0
    finally:
        mitm.stop()
