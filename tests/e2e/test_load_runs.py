"""Load (loadkit.py): many runs in a row, some ended by SIGINT, SIGTERM or SIGKILL, leave
nothing behind; and a run's clean-up survives another's removing containers under it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from sandbox.internet import DemoInternet
from tests.e2e.conftest import coderun_cmd, wait_for
from tests.e2e.loadkit import own_leftovers, run_cmd
from tests.escape.helpers import objects_of

pytestmark = pytest.mark.docker


PATTERN = [
    None,
    signal.SIGINT,
    None,
    signal.SIGKILL,
    None,
    signal.SIGTERM,
    signal.SIGKILL,
    signal.SIGKILL,
    None,
    signal.SIGKILL,
]
EXPECTED = {None: 0, signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}


def sandbox_of(client: docker.DockerClient, pid: int) -> str:
    """The session id of the running sandbox whose CLI is ``pid`` ('' if none yet)."""
    for c in client.containers.list(
        sparse=True,
        filters={
            "label": ["coderun.role=sandbox", f"coderun.owner-pid={pid}"],
            "status": "running",
        },
    ):
        return str(c.attrs["Labels"]["coderun.session"])
    return ""


def default_sigint() -> None:
    """In the child: SIGINT as a terminal would send it, even when this process was
    started in the background (where the shell ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def runs_in_a_row(
    home: Path, internet: DemoInternet, client: docker.DockerClient, n: int
) -> dict[str, Any]:
    """``n`` runs one after another; PATTERN says which are interrupted, and how."""
    statuses, stale_after_kill, cleaned_by_next = [], 0, 0
    errors: list[str] = []
    start = time.monotonic()
    killed_before: list[str] = []
    for i in range(n):
        sig = PATTERN[i % len(PATTERN)]
        command = ["--", "true"] if sig is None else ["--", "sleep", "60"]
        proc = subprocess.Popen(
            run_cmd(internet, *command),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=default_sigint,
        )
        if killed_before:  # the previous run was SIGKILLed: this run's gc cleans it up
            wait_for(
                lambda old=killed_before: not objects_of(client, old),  # type: ignore[misc]
                "the next run to remove a killed run's leftovers",
                timeout=60,
            )
            cleaned_by_next += 1
            killed_before = []
        session = ""
        if sig is not None:
            found = wait_for(
                lambda p=proc: sandbox_of(client, p.pid) or p.poll() is not None,  # type: ignore[misc]
                "the sandbox (or the run's end)",
                timeout=120,
            )
            if isinstance(found, str):
                session = found
                proc.send_signal(sig)
            else:  # the run ended before its sandbox ran: a failure
                assert proc.stderr is not None
                errors.append(f"run {i}: {proc.stderr.read().decode(errors='replace')[-500:]}")
        proc.wait(timeout=120)
        statuses.append((None if sig is None else sig.name, proc.returncode))
        if proc.returncode != EXPECTED[sig] and proc.stderr is not None:
            errors.append(
                f"run {i} ({sig}): exit {proc.returncode}: "
                f"{proc.stderr.read().decode(errors='replace')[-500:]}"
            )
        if sig is signal.SIGKILL and session:
            if objects_of(client, [session]):
                stale_after_kill += 1  # positive control: something was left to clean
            killed_before = [session]
    gc = subprocess.run(coderun_cmd("gc"), capture_output=True, text=True, timeout=120)
    return {
        "n": n,
        "seconds": time.monotonic() - start,
        "statuses": statuses,
        "stale_after_kill": stale_after_kill,
        "cleaned_by_next": cleaned_by_next,
        "gc_status": gc.returncode,
        "gc_output": gc.stdout,
        "left": own_leftovers(client, home),
        "errors": errors,
    }


def check_runs(stats: dict[str, Any]) -> None:
    assert stats["errors"] == [], stats["errors"]
    for i, (_name, status) in enumerate(stats["statuses"]):
        assert status == EXPECTED[PATTERN[i % len(PATTERN)]], stats["statuses"]
    kills = sum(1 for name, _ in stats["statuses"] if name == "SIGKILL")
    assert stats["stale_after_kill"] == kills  # each SIGKILL really left something ...
    assert stats["gc_status"] == 0
    assert stats["left"] == []  # ... and nothing is left now


def test_many_runs_some_interrupted_leave_nothing(
    home: Path,
    internet: DemoInternet,
    tags: dict[str, str],
    client: docker.DockerClient,
) -> None:
    stats = runs_in_a_row(home, internet, client, n=10)
    check_runs(stats)
    # The last run was SIGKILLed: its leftovers were there (stale_after_kill) and are gone.
    assert stats["statuses"][-1] == ("SIGKILL", -9)


def test_gc_survives_a_container_removed_while_it_lists(
    client: docker.DockerClient, tags: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from docker.models.containers import ContainerCollection

    from sandbox.cleanup import gc
    from tests.escape.helpers import helper_labels, new_ident

    ident = new_ident("gc-race")
    # A coderun-labelled container of a live owner (this process): gc lists it, keeps it.
    doomed = client.containers.create(
        tags["sandbox-bash"], ["true"], labels=helper_labels(ident, "gc-race")
    )
    real_get = ContainerCollection.get

    def get(self: ContainerCollection, container_id: str, **kw: Any) -> Any:
        if container_id == doomed.id:  # another run removes it just now
            client.api.remove_container(doomed.id, force=True)
        return real_get(self, container_id, **kw)

    monkeypatch.setattr(ContainerCollection, "get", get)
    try:
        gc(client)  # a run's first step: must not fail because of someone else's clean-up
    finally:
        monkeypatch.undo()
        with contextlib.suppress(docker.errors.NotFound):
            doomed.remove(force=True)
