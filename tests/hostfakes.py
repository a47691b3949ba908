"""The tests' stand-ins for what lies outside the gateway and the dashboard: a real
decision service on loopback (``FleetService``), a ``/proc`` tree on disk (``FakeProc``)
and a Docker client's networks (``FakeDockerNetworks``). The gateway's and the
dashboard's are in tests/fakes.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# -- the decision service ----------------------------------------------------------------------


class FleetService:
    """A real decision service (``coderun serve``'s server) on 127.0.0.1, its own
    certificate, token and rule store in ``tmp``; ``client()`` is a gateway's or a
    dashboard's client of it."""

    def __init__(self, tmp: Path) -> None:
        from snitch.core.store import RuleStore
        from snitch.fleet.hub import Fleet
        from snitch.fleet.rules import FleetRules
        from snitch.fleet.server import FleetServer
        from snitch.fleet.tls import ensure_certificate, server_context

        self.cert, key = ensure_certificate(tmp / "tls", ["127.0.0.1"])
        self.token = "fleet-token-" + "x" * 20
        self.store = RuleStore(tmp / "fleet-rules.db")
        self.fleet = Fleet(FleetRules(self.store))
        self.server = FleetServer(self.fleet, self.token, server_context(self.cert, key))
        self.url = ""

    async def start(self) -> FleetService:
        port = await self.server.start("127.0.0.1", 0)
        self.url = f"https://127.0.0.1:{port}"
        return self

    def client(self, token: str | None = None) -> Any:
        from snitch.core.fleetclient import ServiceClient

        return ServiceClient(self.url, token or self.token, self.cert.read_text())

    async def close(self) -> None:
        await self.server.close()
        self.store.close()


# -- process attribution: a /proc tree on disk (sandbox/attribution/finder.py) -----------------


class FakeProc:
    """A ``/proc`` folder with the entries attribution reads: pid namespaces, socket
    tables, fd links, status, exe, cmdline (links need not lead anywhere)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def process(
        self, pid: int, ns: str, nspid: int, ppid: int, exe: str, argv: list[bytes],
        sockets: tuple[int, ...] = (), uid: int = 1000,
    ) -> None:  # fmt: skip
        p = self.root / str(pid)
        (p / "ns").mkdir(parents=True)
        (p / "fd").mkdir()
        (p / "net").mkdir()
        (p / "ns" / "pid").symlink_to(f"pid:[{ns}]")
        (p / "exe").symlink_to(exe)
        (p / "cmdline").write_bytes(b"\0".join(argv) + b"\0")
        (p / "status").write_text(
            f"Name:\tx\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
            f"NSpid:\t{pid}\t{nspid}\n"
        )
        (p / "fd" / "0").symlink_to("/dev/null")
        for n, inode in enumerate(sockets, start=3):
            (p / "fd" / str(n)).symlink_to(f"socket:[{inode}]")

    def table(self, pid: int, name: str, text: str) -> None:
        (self.root / str(pid) / "net" / name).write_text(text)


class FakeNetworks:
    """A Docker client's ``networks`` for sandbox/egress.py: by name, with labels; a
    ``race`` makes the next create fail as if another run had made the network first."""

    def __init__(self) -> None:
        self.by_name: dict[str, Any] = {}
        self.race = False
        self.in_use: set[str] = set()
        self.created = 0

    def _network(self, name: str, labels: dict[str, str]) -> Any:
        outer = self

        class Net:
            def __init__(self) -> None:
                self.name = name
                self.attrs = {"Name": name, "Labels": labels}

            def remove(self) -> None:
                import docker.errors

                if name in outer.in_use:
                    raise docker.errors.APIError("network has active endpoints")
                del outer.by_name[name]

        return Net()

    def get(self, name: str) -> Any:
        import docker.errors

        if name not in self.by_name:
            raise docker.errors.NotFound(f"network {name} not found")
        return self.by_name[name]

    def create(self, name: str, labels: dict[str, str] | None = None, **_: Any) -> Any:
        import docker.errors
        import requests

        if self.race:
            self.race = False
            self.by_name[name] = self._network(name, {"coderun.shared": "egress"})
        if name in self.by_name:
            response = requests.Response()
            response.status_code = 409
            raise docker.errors.APIError("conflict", response=response)
        self.created += 1
        self.by_name[name] = self._network(name, dict(labels or {}))
        return self.by_name[name]

    def list(self, filters: dict[str, str] | None = None) -> list[Any]:
        key, _, value = (filters or {}).get("label", "").partition("=")
        return [n for n in self.by_name.values()
                if not key or n.attrs["Labels"].get(key) == value]  # fmt: skip


class FakeDockerNetworks:
    """A Docker client with only ``networks`` (FakeNetworks)."""

    def __init__(self) -> None:
        self.networks = FakeNetworks()
