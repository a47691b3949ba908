"""The order of a session's removal (sandbox/cleanup.py ``remove_session``): a container
that joined another's network namespace goes before it; once the sandbox no longer runs
(its command ended) the gateway's stop (its log's flush, the longest step) begins at
once, beside the sandbox's removal, but a sandbox still running (an interrupted run) is
removed before the gateway stops judging. A fake engine records the steps; events, not
sleeps, decide the interleaving."""

from __future__ import annotations

import threading
from typing import Any

from sandbox.cleanup import remove_session
from sandbox.labels import LABEL, ROLE

WAIT = 10.0  # seconds: a step that waits longer failed


class FakeContainer:
    def __init__(self, cid: str, role: str, mode: str, log: list[str],
                 state: str = "running") -> None:  # fmt: skip
        self.id = cid
        self.attrs = {"Names": [f"/{role}"], "Labels": {LABEL: "s1", ROLE: role},
                      "HostConfig": {"NetworkMode": mode}, "State": state}  # fmt: skip
        self.role = role
        self.log = log
        self.removing = threading.Event()
        self.may_go = threading.Event()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeContainer) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def remove(self, force: bool = False) -> None:
        self.removing.set()
        assert self.may_go.wait(WAIT), f"{self.role} was never let go"
        self.log.append(f"removed {self.role}")


class FakeEngine:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self.networks = self.volumes = self
        self.items = containers

    def list(self, **kw: Any) -> list[Any]:
        return list(self.items) if "sparse" in kw else []


def _session(log: list[str], sandbox_state: str) -> tuple[FakeContainer, ...]:
    holder = FakeContainer("h" * 64, "holder", "default", log)
    sandbox = FakeContainer("s" * 64, "sandbox", f"container:{holder.id}", log, sandbox_state)
    gateway = FakeContainer("g" * 64, "gateway", "default", log)
    return holder, sandbox, gateway


def _remove(containers: tuple[FakeContainer, ...], stop: Any, done: list[list[str]]) -> Any:
    worker = threading.Thread(
        target=lambda: done.append(
            remove_session(FakeEngine(list(containers)), "s1", stop_gateway=stop)
        )
    )  # type: ignore[arg-type]
    worker.start()
    return worker


def test_the_gateway_stops_beside_an_ended_sandbox_the_holder_waits_for_it() -> None:
    log: list[str] = []
    holder, sandbox, gateway = _session(log, "exited")
    stopping = threading.Event()

    def stop(container: Any) -> None:
        assert container is gateway
        log.append("stop gateway")
        stopping.set()

    done: list[list[str]] = []
    holder.may_go.set()
    worker = _remove((holder, sandbox, gateway), stop, done)
    # the gateway stops and goes while the sandbox's removal has not ended
    assert sandbox.removing.wait(WAIT) and stopping.wait(WAIT)
    gateway.may_go.set()
    assert gateway.removing.wait(WAIT)
    assert not holder.removing.is_set()  # its joiner is still there
    sandbox.may_go.set()
    worker.join(WAIT)
    assert log.index("removed sandbox") < log.index("removed holder")
    assert log.index("stop gateway") < log.index("removed sandbox")
    assert sorted(done[0]) == ["container gateway", "container holder", "container sandbox"]


def test_a_sandbox_still_running_goes_before_the_gateway_stops_judging() -> None:
    log: list[str] = []
    holder, sandbox, gateway = _session(log, "running")
    for container in (holder, gateway):
        container.may_go.set()
    done: list[list[str]] = []
    worker = _remove((holder, sandbox, gateway), lambda c: log.append("stop gateway"), done)
    assert sandbox.removing.wait(WAIT)
    assert not gateway.removing.is_set() and "stop gateway" not in log
    sandbox.may_go.set()
    worker.join(WAIT)
    assert log[0] == "removed sandbox" and log.index("stop gateway") > 0
    assert len(done[0]) == 3
